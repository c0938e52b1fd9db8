//! The escalator against a real Postgres: an unanswered incident pages whoever is on call,
//! climbs its chain, stops at an acknowledgement and starts again when it runs out; a claimed
//! incident is never paged; nobody on call pages the fallback and records the gap; two
//! escalators on one database page once per step; an acknowledgement racing a pass never
//! lets another page through. Time is passed in, so chains run in milliseconds.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use warden_notify::{acknowledge, pass};
use warden_store::Store;

/// The channels these tests deliver through: the console inbox.
const CONSOLE: &[&str] = &["console"];

/// 2026-06-01 12:00 UTC, a Monday.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_315_200).expect("valid")
}

fn later(secs: i64) -> OffsetDateTime {
    t0() + Duration::from_secs(secs.unsigned_abs())
}

/// People 1 (on call, console login `oncall1`), 2 (duty manager), 3 (fallback), each with a
/// verified console method; rota 1 has person 1 on call all the time; chain 1 pages the rota,
/// waits 120 s, then person 2, waits 120 s; repeats once; ack timeout 30 min. Life-critical
/// incidents route to it. Returns the ids (people, rota, chain).
struct Setup {
    people: [i64; 3],
    user: i64,
    rota: i64,
}

async fn setup(pool: &PgPool, layers: serde_json::Value) -> Setup {
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, display_name, role, password_hash) \
         VALUES ('oncall1', 'On Call One', 'on_call', 'x') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("user");
    let mut people = [0; 3];
    for (n, name) in ["On Call One", "Duty Manager", "Director"]
        .iter()
        .enumerate()
    {
        let id: i64 =
            sqlx::query_scalar("INSERT INTO people (name, user_id) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind((n == 0).then_some(user))
                .fetch_one(pool)
                .await
                .expect("person");
        sqlx::query(
            "INSERT INTO contact_methods (person_id, position, kind, verified) \
             VALUES ($1, 1, 'console', true)",
        )
        .bind(id)
        .execute(pool)
        .await
        .expect("contact");
        people[n] = id;
    }
    let layers = serde_json::to_string(&layers)
        .expect("json")
        .replace("\"P1\"", &people[0].to_string());
    let rota: i64 = sqlx::query_scalar(
        "INSERT INTO rotas (name, zone, layers) VALUES ('Out of hours', 'Europe/London', $1::jsonb) \
         RETURNING id",
    )
    .bind(layers)
    .fetch_one(pool)
    .await
    .expect("rota");
    let chain = json!({
        "steps": [
            { "targets": [{ "kind": "rota", "id": rota }], "wait": 120_000_000 },
            { "targets": [{ "kind": "person", "id": people[1] }], "wait": 120_000_000 },
        ],
        "repeat": 1,
        "fallback": [people[2]],
        "ack_timeout": 1_800_000_000_i64,
        "reminder_every": null,
    });
    let chain: i64 = sqlx::query_scalar(
        "INSERT INTO chains (name, doc) VALUES ('Life-critical', $1) RETURNING id",
    )
    .bind(chain)
    .fetch_one(pool)
    .await
    .expect("chain");
    sqlx::query(
        "INSERT INTO routes (position, priority, chain_id) VALUES (1, 'life_critical', $1)",
    )
    .bind(chain)
    .execute(pool)
    .await
    .expect("route");
    Setup { people, user, rota }
}

/// Person `P1` on call all the time, daily turns.
fn always() -> serde_json::Value {
    json!([{
        "name": "primary",
        "participants": ["P1"],
        "start": "2026-01-05T09:00:00",
        "shift": { "unit": "days", "count": 1 },
    }])
}

/// Person `P1` on call only on Sundays 03:00-04:00: nobody on a Monday noon.
fn sundays() -> serde_json::Value {
    json!([{
        "name": "primary",
        "participants": ["P1"],
        "start": "2026-01-05T09:00:00",
        "shift": { "unit": "weeks", "count": 1 },
        "windows": [{ "days": ["sun"], "from": "03:00", "to": "04:00" }],
    }])
}

/// An unanswered incident of `priority` whose answer time just overflowed.
async fn overflowing(pool: &PgPool, id: i64, priority: &str) {
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, raised_at, signal_count, doc) \
         VALUES ($1, $2, 'pendant', 'offered', $3, 1, '{}')",
    )
    .bind(id)
    .bind(priority)
    .bind(t0())
    .execute(pool)
    .await
    .expect("incident");
    sqlx::query("INSERT INTO outbox (incident_id, kind, payload) VALUES ($1, 'overflow', '{}')")
        .bind(id)
        .execute(pool)
        .await
        .expect("outbox");
}

/// (person, step, round, reason, status) of every page of `incident`, in order.
async fn pages(pool: &PgPool, incident: i64) -> Vec<(i64, i32, i32, String, String)> {
    sqlx::query_as(
        "SELECT person_id, step, round, reason, status FROM pages WHERE incident_id = $1 ORDER BY id",
    )
    .bind(incident)
    .fetch_all(pool)
    .await
    .expect("pages")
}

async fn history(pool: &PgPool, incident: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind FROM incident_events WHERE incident_id = $1 AND kind LIKE 'escalation%' ORDER BY seq",
    )
    .bind(incident)
    .fetch_all(pool)
    .await
    .expect("history")
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_unanswered_alarm_climbs_its_chain_an_acknowledgement_holds_it_and_runs_out(
    pool: PgPool,
) {
    let s = setup(&pool, always()).await;
    let store = Store::from_pool(pool.clone());
    overflowing(&pool, 1, "life_critical").await;

    let first = pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    assert_eq!((first.started, first.pages), (1, 1));
    let p = s.people;
    let step = |person, step, round: i32, status: &str| {
        (person, step, round, "step".to_owned(), status.to_owned())
    };
    assert_eq!(pages(&pool, 1).await, vec![step(p[0], 0, 0, "delivered")]);
    // Nothing before the step's wait is over, however often the escalator runs.
    for secs in [1, 30, 119] {
        assert_eq!(
            pass(&store, later(secs), 100, CONSOLE)
                .await
                .expect("pass")
                .pages,
            0
        );
    }
    assert_eq!(
        pass(&store, later(120), 100, CONSOLE)
            .await
            .expect("pass")
            .pages,
        1
    );
    assert_eq!(pages(&pool, 1).await[1], step(p[1], 1, 0, "delivered"));

    // The on-call person acknowledges from the console: paging stops.
    let page: i64 = sqlx::query_scalar("SELECT min(id) FROM pages WHERE incident_id = 1")
        .fetch_one(&pool)
        .await
        .expect("page");
    acknowledge(&store, page, s.user, later(130))
        .await
        .expect("ack");
    for secs in [240, 600, 1_800] {
        assert_eq!(
            pass(&store, later(secs), 100, CONSOLE)
                .await
                .expect("pass")
                .pages,
            0
        );
    }
    assert!(
        pages(&pool, 1).await.iter().all(|p| p.4 == "acknowledged"),
        "every page of the incident reads acknowledged"
    );
    // 30 minutes after the acknowledgement, still unresolved: the chain starts again.
    assert_eq!(
        pass(&store, later(1_930), 100, CONSOLE)
            .await
            .expect("pass")
            .pages,
        1
    );
    assert_eq!(pages(&pool, 1).await[2], step(p[0], 0, 0, "delivered"));
    assert_eq!(
        history(&pool, 1).await,
        [
            "escalation_started",
            "escalation_page",
            "escalation_page",
            "escalation_acknowledged",
            "escalation_ack_expired",
            "escalation_page",
        ]
    );
    // The console inbox of the person paged lists their pages, newest first.
    let inbox = store.pages_for_user(s.user, 10).await.expect("inbox");
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0].status, "delivered");
    assert_eq!(inbox[1].status, "acknowledged");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_claimed_incident_is_never_paged_again_and_an_unrouted_one_is_recorded(pool: PgPool) {
    setup(&pool, always()).await;
    let store = Store::from_pool(pool.clone());
    overflowing(&pool, 1, "life_critical").await;
    overflowing(&pool, 2, "technical").await; // no route for technical incidents
    pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    assert_eq!(pages(&pool, 1).await.len(), 1);
    assert!(pages(&pool, 2).await.is_empty());
    assert_eq!(history(&pool, 2).await, ["escalation_unrouted"]);

    sqlx::query("UPDATE incidents SET state = 'claimed' WHERE id = 1")
        .execute(&pool)
        .await
        .expect("claim");
    let p = pass(&store, later(120), 100, CONSOLE).await.expect("pass");
    assert_eq!((p.stopped, p.pages), (1, 0));
    assert_eq!(pages(&pool, 1).await.len(), 1);
    let next: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT next_at FROM escalations WHERE incident_id = 1")
            .fetch_one(&pool)
            .await
            .expect("escalation");
    assert_eq!(next, None, "a stopped escalation is never due again");
    assert_eq!(
        pass(&store, later(10_000), 100, CONSOLE)
            .await
            .expect("pass")
            .pages,
        0
    );

    // Released back to the queue, it overflows again (the engine writes a new outbox
    // entry): the escalation starts again from its first step.
    sqlx::query("UPDATE incidents SET state = 'offered' WHERE id = 1")
        .execute(&pool)
        .await
        .expect("release");
    sqlx::query("INSERT INTO outbox (incident_id, kind, payload) VALUES (1, 'overflow', '{}')")
        .execute(&pool)
        .await
        .expect("outbox");
    let again = pass(&store, later(10_060), 100, CONSOLE)
        .await
        .expect("pass");
    assert_eq!((again.started, again.pages), (1, 1));
    assert_eq!(pages(&pool, 1).await.len(), 2);
    assert_eq!(
        history(&pool, 1).await,
        [
            "escalation_started",
            "escalation_page",
            "escalation_stopped",
            "escalation_started",
            "escalation_page",
        ]
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn nobody_on_call_pages_the_fallback_at_once_and_records_the_gap(pool: PgPool) {
    let s = setup(&pool, sundays()).await;
    let store = Store::from_pool(pool.clone());
    overflowing(&pool, 1, "life_critical").await;
    pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    assert_eq!(
        pages(&pool, 1).await,
        vec![(
            s.people[2],
            0,
            0,
            "fallback".to_owned(),
            "delivered".to_owned()
        )]
    );
    assert_eq!(
        history(&pool, 1).await,
        ["escalation_started", "escalation_gap", "escalation_page"]
    );
    let gap: serde_json::Value = sqlx::query_scalar(
        "SELECT effect FROM incident_events WHERE incident_id = 1 AND kind = 'escalation_gap'",
    )
    .fetch_one(&pool)
    .await
    .expect("gap");
    assert_eq!(gap["target"], json!({ "kind": "rota", "id": s.rota }));
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn two_escalators_on_one_database_page_once_per_step(pool: PgPool) {
    setup(&pool, always()).await;
    let a = Store::from_pool(pool.clone());
    let b = Store::from_pool(pool.clone());
    for id in 1..=30 {
        overflowing(&pool, id, "life_critical").await;
    }
    for secs in [0, 0, 60, 120, 120, 121, 240, 240] {
        let (x, y) = tokio::join!(
            pass(&a, later(secs), 7, CONSOLE),
            pass(&b, later(secs), 7, CONSOLE)
        );
        x.expect("pass a");
        y.expect("pass b");
    }
    // Batches of 7 leave work for later passes; finish what is due.
    for _ in 0..10 {
        pass(&a, later(240), 7, CONSOLE).await.expect("pass");
    }
    let per_step: Vec<(i64, i32, i32, i64)> = sqlx::query_as(
        "SELECT incident_id, step, round, count(*) FROM pages GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .expect("pages");
    // Every escalation reached its second step (those started in the first passes also
    // round two), and no step paged twice.
    for id in 1..=30 {
        for step in [0, 1] {
            assert!(
                per_step.iter().any(|r| (r.0, r.1, r.2) == (id, step, 0)),
                "incident {id} step {step}: {per_step:?}"
            );
        }
    }
    assert!(
        per_step.iter().all(|r| r.3 == 1),
        "one page per step: {per_step:?}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_acknowledgement_racing_a_pass_lets_no_later_page_through(pool: PgPool) {
    let s = setup(&pool, always()).await;
    let store = Store::from_pool(pool.clone());
    for id in 1..=20 {
        overflowing(&pool, id, "life_critical").await;
    }
    pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    let first_pages: Vec<i64> = sqlx::query_scalar("SELECT id FROM pages ORDER BY incident_id")
        .fetch_all(&pool)
        .await
        .expect("pages");
    // Step two falls due while every incident is being acknowledged.
    let acks = async {
        for page in &first_pages {
            acknowledge(&store, *page, s.user, later(120))
                .await
                .expect("ack");
        }
    };
    let (passed, ()) = tokio::join!(pass(&store, later(120), 100, CONSOLE), acks);
    passed.expect("pass");
    // Whatever the interleaving, after both: every escalation is acknowledged and nothing
    // more is paged until the acknowledgements run out.
    let states: Vec<serde_json::Value> = sqlx::query_scalar("SELECT state FROM escalations")
        .fetch_all(&pool)
        .await
        .expect("escalations");
    assert!(
        states
            .iter()
            .all(|st| st["state"]["state"] == "acknowledged"),
        "{states:?}"
    );
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM pages")
        .fetch_one(&pool)
        .await
        .expect("count");
    for secs in [121, 240, 600, 1_800] {
        assert_eq!(
            pass(&store, later(secs), 100, CONSOLE)
                .await
                .expect("pass")
                .pages,
            0
        );
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM pages")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(before, after);
    assert!(
        before <= 40,
        "at most one step-two page per incident: {before}"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_unreadable_escalation_is_reported_and_does_not_stall_the_others(pool: PgPool) {
    setup(&pool, always()).await;
    let store = Store::from_pool(pool.clone());
    overflowing(&pool, 1, "life_critical").await;
    overflowing(&pool, 2, "life_critical").await;
    pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    sqlx::query("UPDATE escalations SET state = '{\"garbage\": true}' WHERE incident_id = 1")
        .execute(&pool)
        .await
        .expect("corrupt");
    let p = pass(&store, later(120), 100, CONSOLE)
        .await
        .expect("the pass goes on");
    assert_eq!(p.pages, 1, "incident 2 climbed to its second step");
    assert_eq!(pages(&pool, 2).await.len(), 2);
    assert_eq!(
        history(&pool, 1).await.last().map(String::as_str),
        Some("escalation_unreachable")
    );
    // Reported once, then out of the due list.
    assert_eq!(
        pass(&store, later(240), 100, CONSOLE)
            .await
            .expect("pass")
            .fired,
        1
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_configuration_check_reports_gaps_and_people_who_cannot_be_reached(pool: PgPool) {
    // The duty manager's console method is unverified.
    let s = setup(&pool, sundays()).await;
    sqlx::query("UPDATE contact_methods SET verified = false WHERE person_id = $1")
        .bind(s.people[1])
        .execute(&pool)
        .await
        .expect("unverify");
    let esc = warden_notify::Escalator::new(
        Store::from_pool(pool.clone()),
        warden_notify::EscalatorConfig::default(),
    )
    .expect("escalator");
    let (findings, unreadable) = esc.lint(t0()).await.expect("lint");
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let names: Vec<&str> = findings
        .iter()
        .map(warden_core::oncall::Finding::name)
        .collect();
    // Monday 1 to Monday 15 June holds two Sunday hours, so three gaps: until the first,
    // between them, after the second.
    assert_eq!(names.iter().filter(|n| **n == "nobody_on_call").count(), 3);
    assert!(
        findings.contains(&warden_core::oncall::Finding::NoVerifiedContact {
            person: s.people[1]
        })
    );
    assert!(!names.contains(&"no_fallback"));
}

/// What the escalator reported about itself; `.1`: the problems the rest of Warden has.
#[derive(Debug, Default)]
struct Reports(std::sync::Mutex<Vec<(String, bool, String)>>, Vec<String>);

impl warden_notify::SelfCheck for Reports {
    fn report<'a>(
        &'a self,
        check: &'a str,
        ok: bool,
        detail: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.0
            .lock()
            .expect("reports")
            .push((check.to_owned(), ok, detail));
        Box::pin(async {})
    }

    fn problems(&self) -> Vec<String> {
        self.1.clone()
    }
}

impl Reports {
    fn of(&self, check: &str) -> Vec<(bool, String)> {
        self.0
            .lock()
            .expect("reports")
            .iter()
            .filter(|r| r.0 == check)
            .map(|r| (r.1, r.2.clone()))
            .collect()
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_configuration_problem_is_reported_at_once_and_cleared_on_the_next_save(pool: PgPool) {
    let s = setup(&pool, always()).await;
    sqlx::query("UPDATE contact_methods SET verified = false WHERE person_id = $1")
        .bind(s.people[1])
        .execute(&pool)
        .await
        .expect("unverify");
    let reports = std::sync::Arc::new(Reports::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = warden_notify::spawn(
        Store::from_pool(pool.clone()),
        warden_notify::EscalatorConfig {
            every: std::time::Duration::from_millis(100),
            ..warden_notify::EscalatorConfig::default()
        },
        Some(reports.clone()),
        stop.clone(),
    )
    .expect("escalator");
    let wait = |check: &'static str, n: usize| {
        let reports = reports.clone();
        async move {
            for _ in 0..100 {
                if reports.of(check).len() >= n {
                    return reports.of(check);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{check}: {:?}", reports.of(check));
        }
    };
    let first = wait("oncall_config", 1).await;
    assert!(!first[0].0, "a problem raises");
    assert!(
        first[0].1.contains(&format!("person {} ", s.people[1])),
        "{}",
        first[0].1
    );
    // The auditor reports too: nothing is overdue.
    assert!(wait("escalation_overdue", 1).await[0].0);
    // The method is verified (a save in the console): the problem clears within a pass,
    // not at the next hourly check.
    sqlx::query("UPDATE contact_methods SET verified = true WHERE person_id = $1")
        .bind(s.people[1])
        .execute(&pool)
        .await
        .expect("verify");
    let second = wait("oncall_config", 2).await;
    assert!(second[1].0, "{second:?}");
    stop.cancel();
    task.await.expect("escalator stops");
    assert_eq!(
        reports.of("oncall_config").len(),
        2,
        "reported on change only"
    );
}

/// A technical incident of `kind` just opened (a link lost, a self-check failed).
async fn opened(pool: &PgPool, id: i64, kind: &str) {
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, raised_at, signal_count, doc) \
         VALUES ($1, 'technical', $2, 'offered', $3, 1, '{}')",
    )
    .bind(id)
    .bind(kind)
    .bind(t0())
    .execute(pool)
    .await
    .expect("incident");
    sqlx::query(
        "INSERT INTO outbox (incident_id, kind, payload) VALUES ($1, 'incident_opened', '{}')",
    )
    .bind(id)
    .execute(pool)
    .await
    .expect("outbox");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_lost_link_pages_the_ops_rota_only_when_routed_there(pool: PgPool) {
    let s = setup(&pool, always()).await;
    // No route for link_lost: the console shows it; nothing is paged or called unrouted.
    opened(&pool, 5, "link_lost").await;
    let r = pass(&Store::from_pool(pool.clone()), t0(), 100, &["console"])
        .await
        .expect("pass");
    assert_eq!((r.started, r.pages), (0, 0));
    assert!(history(&pool, 5).await.is_empty());
    // The ops rota's chain (here: the duty manager) takes lost links and failed self-checks.
    let ops = json!({ "steps": [{ "targets": [{ "kind": "person", "id": s.people[1] }], "wait": 300_000_000 }],
                      "fallback": [s.people[2]], "ack_timeout": 1_800_000_000_i64, "reminder_every": null });
    let chain: i64 =
        sqlx::query_scalar("INSERT INTO chains (name, doc) VALUES ('Ops', $1) RETURNING id")
            .bind(ops)
            .fetch_one(&pool)
            .await
            .expect("chain");
    for (position, kind) in [(2, "link_lost"), (3, "self_check")] {
        sqlx::query("INSERT INTO routes (position, kind, chain_id) VALUES ($1, $2, $3)")
            .bind(position)
            .bind(kind)
            .bind(chain)
            .execute(&pool)
            .await
            .expect("route");
    }
    opened(&pool, 6, "link_lost").await;
    opened(&pool, 7, "self_check").await;
    let r = pass(&Store::from_pool(pool.clone()), t0(), 100, &["console"])
        .await
        .expect("pass");
    assert_eq!((r.started, r.pages), (2, 2));
    for incident in [6, 7] {
        let p = pages(&pool, incident).await;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, s.people[1], "the ops chain's person");
    }
}

/// Counts GETs of the heartbeat URL.
async fn heartbeat_monitor() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/ping",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "OK" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/ping"), calls)
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_dead_man_heartbeat_is_called_only_while_warden_is_healthy(pool: PgPool) {
    use std::sync::atomic::Ordering;
    for (problems, wanted) in [
        (vec![], 1),
        (vec!["engine: stalled for 12 s".to_owned()], 0),
    ] {
        let (url, calls) = heartbeat_monitor().await;
        let stop = tokio_util::sync::CancellationToken::new();
        let task = warden_notify::spawn(
            Store::from_pool(pool.clone()),
            warden_notify::EscalatorConfig {
                every: std::time::Duration::from_millis(100),
                heartbeat_url: Some(url),
                ..warden_notify::EscalatorConfig::default()
            },
            Some(std::sync::Arc::new(Reports(
                std::sync::Mutex::default(),
                problems.clone(),
            ))),
            stop.clone(),
        )
        .expect("escalator");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        stop.cancel();
        task.await.expect("escalator stops");
        // At most one call a minute: one in the first second and a half when healthy.
        assert_eq!(
            calls.load(Ordering::SeqCst),
            wanted,
            "problems: {problems:?}"
        );
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_route_by_client_pages_that_clients_chain_and_other_clients_fall_through(pool: PgPool) {
    let s = setup(&pool, always()).await;
    // Chain 2 pages the duty manager first; a route for client C-1 ahead of the
    // life-critical one sends that client's incidents there.
    let chain: i64 = sqlx::query_scalar(
        "INSERT INTO chains (name, doc) VALUES ('Client one', $1) RETURNING id",
    )
    .bind(json!({
        "steps": [{ "targets": [{ "kind": "person", "id": s.people[1] }], "wait": 120_000_000 }],
        "fallback": [s.people[2]], "ack_timeout": 1_800_000_000_i64, "reminder_every": null,
    }))
    .fetch_one(&pool)
    .await
    .expect("chain");
    let client: i64 = sqlx::query_scalar(
        "INSERT INTO clients (external_ref, name) VALUES ('C-1', 'Client One') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("client");
    sqlx::query("UPDATE routes SET position = 2")
        .execute(&pool)
        .await
        .expect("move");
    sqlx::query("INSERT INTO routes (position, client_id, chain_id) VALUES (1, $1, $2)")
        .bind(client)
        .bind(chain)
        .execute(&pool)
        .await
        .expect("route");
    for (account, client_ref) in [("1001", Some("C-1")), ("1002", Some("C-2")), ("1003", None)] {
        sqlx::query(
            "INSERT INTO devices (account, protocol, client_ref) VALUES ($1, 'contact_id', $2)",
        )
        .bind(account)
        .bind(client_ref)
        .execute(&pool)
        .await
        .expect("device");
    }
    for (id, account) in [(1, "1001"), (2, "1002"), (3, "1003")] {
        overflowing(&pool, id, "life_critical").await;
        sqlx::query(
            "UPDATE incidents SET device_id = (SELECT id FROM devices WHERE account = $2) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(account)
        .execute(&pool)
        .await
        .expect("device of incident");
    }
    let store = Store::from_pool(pool.clone());
    pass(&store, t0(), 100, CONSOLE).await.expect("pass");
    let first = |p: Vec<(i64, i32, i32, String, String)>| p.first().map(|p| p.0);
    assert_eq!(first(pages(&pool, 1).await), Some(s.people[1]));
    assert_eq!(first(pages(&pool, 2).await), Some(s.people[0]));
    assert_eq!(first(pages(&pool, 3).await), Some(s.people[0]));
}
