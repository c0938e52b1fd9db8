//! The on-call directory through the console's API on a real Postgres: checked writes that
//! name the field at fault, the audit trail, the CSV import of people (all or nothing), a
//! rota's timeline, and the out-of-hours desk handing a job to whoever a rota has on call.

mod common;

use axum::http::StatusCode;
use common::App;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Adds a person reached by SMS; returns their id.
async fn person(app: &App, s: &common::Session, name: &str, phone: &str) -> i64 {
    app.post(
        s,
        "/api/v1/oncall/people",
        &json!({ "name": name, "contacts": [{ "kind": "sms", "address": phone, "verified": true }] }),
    )
    .await
    .expect(StatusCode::CREATED)
    .json()["id"]
        .as_i64()
        .expect("id")
}

/// The first line of a job's history: where it was routed and how.
async fn first_note(app: &App, job: &Value) -> String {
    sqlx::query_scalar("SELECT note FROM ooh_updates WHERE reference = $1 ORDER BY seq LIMIT 1")
        .bind(job["reference"].as_str().expect("reference"))
        .fetch_one(&app.pool)
        .await
        .expect("note")
}

fn always(person: i64) -> Value {
    json!([{ "name": "all", "participants": [person], "start": "2026-01-05T09:00:00",
             "shift": { "unit": "weeks", "count": 1 } }])
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn writes_are_checked_and_the_error_names_the_field(pool: PgPool) {
    let app = App::start(pool).await;
    let sup = app.login_as("supervisor").await;
    let bad = |body: Value, path: &'static str| {
        let (app, sup) = (&app, &sup);
        async move {
            let r = app.put(sup, path, &body).await;
            r.expect_error(StatusCode::BAD_REQUEST, "invalid_value")["message"]
                .as_str()
                .expect("message")
                .to_owned()
        }
    };
    let r = app
        .post(
            &sup,
            "/api/v1/oncall/people",
            &json!({ "name": "Ann", "contacts": [{ "kind": "email", "address": "not-an-address", "verified": true }] }),
        )
        .await;
    let m = r.expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    assert!(
        m["message"]
            .as_str()
            .is_some_and(|t| t.contains("contacts[0].address")),
        "{m}"
    );
    let r = app
        .post(
            &sup,
            "/api/v1/oncall/people",
            &json!({ "name": "Ann", "contacts": [{ "kind": "console", "verified": true }] }),
        )
        .await;
    let m = r.expect_error(StatusCode::BAD_REQUEST, "invalid_value");
    assert!(
        m["message"]
            .as_str()
            .is_some_and(|t| t.contains("console account")),
        "{m}"
    );
    let ann = person(&app, &sup, "Ann", "+447700900001").await;

    let m = bad(
        json!({ "name": "Nights", "zone": "Europe/Londres", "layers": always(ann) }),
        "/api/v1/oncall/rotas",
    )
    .await;
    assert!(m.contains("zone"), "{m}");
    let m = bad(
        json!({ "name": "Nights", "zone": "Europe/London", "layers": always(ann + 100) }),
        "/api/v1/oncall/rotas",
    )
    .await;
    assert!(
        m.contains("participants") && m.contains(&format!("no person {}", ann + 100)),
        "{m}"
    );
    let m = bad(json!({ "name": "Nights", "zone": "Europe/London", "bank_holidays": ["25/12/2026"], "layers": always(ann) }), "/api/v1/oncall/rotas").await;
    assert!(m.contains("bank_holidays"), "{m}");
    let m = bad(
        json!({ "name": "Nights", "zone": "Europe/London", "layers": [{ "name": "x" }] }),
        "/api/v1/oncall/rotas",
    )
    .await;
    assert!(m.starts_with("layers:"), "{m}");
    let m = bad(
        json!({ "name": "Alarms", "doc": { "steps": [{ "targets": [{ "kind": "rota", "id": 99 }], "wait": 60_000_000 }],
                                           "fallback": [ann], "ack_timeout": 1_800_000_000_i64 } }),
        "/api/v1/oncall/chains",
    )
    .await;
    assert!(m.contains("no rota 99"), "{m}");
    let m = bad(
        json!([{ "priority": "urgentish", "chain_id": 1 }]),
        "/api/v1/oncall/routes",
    )
    .await;
    assert!(m.contains("routes[0].priority"), "{m}");

    // What was refused left no trace; what was saved is audited with its actor.
    let audit: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT action, user_id FROM audit WHERE action LIKE 'oncall.%' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(
        audit,
        [("oncall.person.create".to_owned(), Some(sup.user_id()))]
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn on_call_staff_read_the_directory_and_operators_do_not(pool: PgPool) {
    let app = App::start(pool).await;
    let on_call = app.login_as("on_call").await;
    app.get(&on_call, "/api/v1/oncall")
        .await
        .expect(StatusCode::OK);
    app.put(&on_call, "/api/v1/oncall/routes", &json!([]))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let operator = app.login_as("operator").await;
    app.get(&operator, "/api/v1/oncall")
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_people_import_with_a_bad_row_imports_nobody(pool: PgPool) {
    let app = App::start(pool).await;
    let admin = app.login_as("admin").await;
    let header = "name,username,email,sms,verified,teams\n";
    let bad = format!(
        "{header}Ann Day,,ann@centre.example,+447700900001,yes,Ops;Managers\nBob Night,,bob@,,no,Ops\n"
    );
    let r = app
        .post_csv(&admin, "/api/v1/oncall/people/import", &bad)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(r["imported"], 0);
    assert_eq!(r["errors"][0]["row"], 3);
    assert_eq!(r["errors"][0]["column"], "email");
    let d = app
        .get(&admin, "/api/v1/oncall")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(d["people"], json!([]));

    let good = format!(
        "{header}Ann Day,adam,ann@centre.example,+447700900001,yes,Ops;Managers\nBob Night,,,+447700900002,no,Ops\n"
    );
    let r = app
        .post_csv(&admin, "/api/v1/oncall/people/import", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (r["imported"].as_u64(), r["updated"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );
    let d = app
        .get(&admin, "/api/v1/oncall")
        .await
        .expect(StatusCode::OK)
        .json();
    let ann = &d["people"][0];
    assert_eq!(ann["name"], "Ann Day");
    assert_eq!(ann["username"], "adam");
    let kinds: Vec<&str> = ann["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["console", "email", "sms"]);
    assert_eq!(d["people"][1]["contacts"][0]["verified"], false);
    let teams: Vec<(String, usize)> = d["teams"]
        .as_array()
        .expect("teams")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["members"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(teams, [("Managers".to_owned(), 1), ("Ops".to_owned(), 2)]);
    // Imported again: updated, not duplicated.
    let r = app
        .post_csv(&admin, "/api/v1/oncall/people/import", &good)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (r["imported"].as_u64(), r["updated"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_out_of_hours_desk_hands_a_job_to_whoever_the_rota_has_on_call(pool: PgPool) {
    let app = App::start(pool).await;
    let sup = app.login_as("supervisor").await;
    let dana = person(&app, &sup, "Dana Duty", "+447700900003").await;
    let eve = person(&app, &sup, "Eve Evening", "+447700900004").await;
    let rota = app
        .put(
            &sup,
            "/api/v1/oncall/rotas",
            &json!({ "name": "Repairs", "zone": "Europe/London", "layers": always(dana) }),
        )
        .await
        .expect(StatusCode::OK)
        .json()["id"]
        .as_i64()
        .expect("rota");
    let chain = app
        .put(
            &sup,
            "/api/v1/oncall/chains",
            &json!({ "name": "Repairs", "doc": { "steps": [{ "targets": [{ "kind": "rota", "id": rota }], "wait": 600_000_000 }],
                                                  "fallback": [eve], "ack_timeout": 1_800_000_000_i64 } }),
        )
        .await
        .expect(StatusCode::OK)
        .json()["id"]
        .as_i64()
        .expect("chain");
    // A catch-all route for incidents first: jobs still take the route naming their category.
    let incidents = app
        .put(
            &sup,
            "/api/v1/oncall/chains",
            &json!({ "name": "Alarms", "doc": { "steps": [{ "targets": [{ "kind": "person", "id": eve }], "wait": 600_000_000 }],
                                                 "fallback": [eve], "ack_timeout": 1_800_000_000_i64 } }),
        )
        .await
        .expect(StatusCode::OK)
        .json()["id"]
        .as_i64()
        .expect("chain");
    app.put(
        &sup,
        "/api/v1/oncall/routes",
        &json!([{ "priority": "life_critical", "chain_id": incidents },
                { "ooh_category": "other", "chain_id": chain },
                { "chain_id": incidents }]),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    for (routes, says) in [
        (
            json!([{ "chain_id": incidents }, { "ooh_category": "other", "chain_id": chain }, { "kind": "pendant", "chain_id": chain }]),
            "routes[2] would never be used: routes[0]",
        ),
        (
            json!([{ "ooh_category": "plumbing", "chain_id": chain }]),
            "routes[0].ooh_category: no out-of-hours category \"plumbing\"",
        ),
        (
            json!([{ "client_id": 4242, "chain_id": chain }]),
            "routes[0].client_id: no client 4242",
        ),
    ] {
        let r = app.put(&sup, "/api/v1/oncall/routes", &routes).await;
        let m = r.expect_error(StatusCode::BAD_REQUEST, "invalid_value");
        assert!(
            m["message"].as_str().is_some_and(|t| t.starts_with(says)),
            "{m}"
        );
    }
    let timeline = app
        .get(
            &sup,
            &format!("/api/v1/oncall/rotas/{rota}/timeline?days=2"),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(timeline[0]["person"], "Dana Duty", "{timeline}");

    let job = json!({ "category": "other", "caller_name": "Gina Caller", "description": "Boiler out", "urgency": "urgent" });
    let j = app
        .post(&sup, "/api/v1/ooh/jobs", &job)
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(j["status"], "routed");
    assert_eq!(
        j["routed_to"],
        json!({ "name": "Dana Duty", "phone": "+447700900003" })
    );
    assert_eq!(
        first_note(&app, &j).await,
        "routed to Dana Duty (+447700900003) by the on-call route (chain Repairs)"
    );

    // A category no route names keeps its fixed contact, and its history says so.
    let admin = app.login_as("admin").await;
    app.put(
        &admin,
        "/api/v1/ooh/categories/lifts",
        &json!({ "name": "Lifts", "oncall_name": "Lift Co", "oncall_phone": "0113 496 0002" }),
    )
    .await
    .expect(StatusCode::OK);
    let lifts = app
        .post(&sup, "/api/v1/ooh/jobs", &json!({ "category": "lifts", "caller_name": "Hal Caller", "description": "Stuck", "urgency": "urgent" }))
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(lifts["routed_to"]["name"], "Lift Co");
    assert_eq!(
        first_note(&app, &lifts).await,
        "routed to Lift Co (0113 496 0002) by the category's contact (no on-call route names it)"
    );

    // Dana leaves the directory: the chain's fallback takes the next job.
    app.put(
        &sup,
        &format!("/api/v1/oncall/people/{dana}"),
        &json!({ "name": "Dana Duty", "active": false, "contacts": [{ "kind": "sms", "address": "+447700900003", "verified": true }] }),
    )
    .await
    .expect(StatusCode::OK);
    let j = app
        .post(&sup, "/api/v1/ooh/jobs", &job)
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(j["routed_to"]["name"], "Eve Evening");
    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'oncall.person.update' AND before->>'active' = 'true' \
         AND after->>'active' = 'false'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert_eq!(audit, 1, "the change is audited with before and after");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_team_rota_or_chain_in_use_stays_and_says_what_uses_it(pool: PgPool) {
    let app = App::start(pool).await;
    let sup = app.login_as("supervisor").await;
    let ann = person(&app, &sup, "Ann", "+447700900001").await;
    let id = |r: common::Reply| r.expect(StatusCode::OK).json()["id"].as_i64().expect("id");
    let team = id(app
        .put(
            &sup,
            "/api/v1/oncall/teams",
            &json!({ "name": "Ops", "members": [ann] }),
        )
        .await);
    let rota = id(app
        .put(
            &sup,
            "/api/v1/oncall/rotas",
            &json!({ "name": "Nights", "zone": "Europe/London", "layers": always(ann) }),
        )
        .await);
    let chain = id(app
        .put(
            &sup,
            "/api/v1/oncall/chains",
            &json!({ "name": "Alarms", "doc": { "steps": [{ "targets": [{ "kind": "rota", "id": rota }, { "kind": "team", "id": team }], "wait": 60_000_000 }],
                                                 "fallback": [ann], "ack_timeout": 1_800_000_000_i64 } }),
        )
        .await);
    app.put(
        &sup,
        "/api/v1/oncall/routes",
        &json!([{ "chain_id": chain }]),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let delete = |path: String| {
        let (app, sup) = (&app, &sup);
        async move {
            app.call(axum::http::Method::DELETE, &path)
                .session(sup)
                .send()
                .await
        }
    };
    for (path, says) in [
        (
            format!("/api/v1/oncall/teams/{team}"),
            "is a step of chain \"Alarms\"",
        ),
        (
            format!("/api/v1/oncall/rotas/{rota}"),
            "is a step of chain \"Alarms\"",
        ),
        (
            format!("/api/v1/oncall/chains/{chain}"),
            "1 route(s) name it",
        ),
    ] {
        let m = delete(path)
            .await
            .expect_error(StatusCode::CONFLICT, "in_use");
        assert!(
            m["message"].as_str().is_some_and(|t| t.contains(says)),
            "{m}"
        );
    }
    // Routed elsewhere and taken out of no chain: each goes, audited with what it was.
    app.put(&sup, "/api/v1/oncall/routes", &json!([]))
        .await
        .expect(StatusCode::NO_CONTENT);
    for path in [
        format!("/api/v1/oncall/chains/{chain}"),
        format!("/api/v1/oncall/teams/{team}"),
        format!("/api/v1/oncall/rotas/{rota}"),
    ] {
        delete(path.clone()).await.expect(StatusCode::NO_CONTENT);
        delete(path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let d = app
        .get(&sup, "/api/v1/oncall")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (d["teams"].clone(), d["rotas"].clone(), d["chains"].clone()),
        (json!([]), json!([]), json!([]))
    );
    assert_eq!(
        d["people"][0]["name"], "Ann",
        "members stay in the directory"
    );
    let audit: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT action, before->>'name', user_id FROM audit WHERE action LIKE 'oncall.%.delete' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    let me = Some(sup.user_id());
    assert_eq!(
        audit,
        [
            (
                "oncall.chain.delete".to_owned(),
                Some("Alarms".to_owned()),
                me
            ),
            ("oncall.team.delete".to_owned(), Some("Ops".to_owned()), me),
            (
                "oncall.rota.delete".to_owned(),
                Some("Nights".to_owned()),
                me
            ),
        ]
    );
}
