//! Escalation throughput: how many pages a second the escalator records when thousands of
//! unanswered incidents pass their threshold at once (a storm of life-critical alarms after a
//! power cut, nobody free in the room), with one escalator and with two sharing the database.
//!
//! ```sh
//! DATABASE_URL=$(./tests/pg.sh start) SQLX_OFFLINE=true cargo bench -p warden-benches --bench escalation_load
//! ```
//!
//! Real Postgres (a fresh database on the `DATABASE_URL` server), the real escalator passes:
//! every incident has an outbox entry as the engine writes it at the overflow threshold; its
//! route's chain pages whoever the rota has on call plus a team of nine (ten pages per
//! incident, console channel). Figures are printed, never asserted, except correctness: one
//! page per person per step, every incident escalated. Without `--bench` a small smoke run.

use std::time::Instant;

use serde_json::json;
use time::OffsetDateTime;
use warden_notify::{Escalator, EscalatorConfig};
use warden_store::Store;
use warden_tests::TestDb;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let incidents: i64 = if full { 5_000 } else { 100 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("escalation_load: {incidents} overflowing incidents, 10 pages each");
    for escalators in [1usize, 2] {
        let db = TestDb::create("escalation_load");
        let (secs, pages, passes) = rt.block_on(run(&db.url, incidents, escalators));
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let (rate, per_pass) = (pages as f64 / secs, 1000.0 * secs / passes.max(1) as f64);
        println!(
            "  {escalators} escalator(s): {pages} pages in {secs:.2} s = {rate:.0} pages/s \
             ({passes} passes of at most 200 escalations, {per_pass:.1} ms each)"
        );
        // One page per person per incident, every incident escalated.
        let per: i64 = db.count(
            "SELECT count(*) FROM (SELECT incident_id, person_id FROM pages \
             GROUP BY 1, 2 HAVING count(*) > 1) d",
        );
        assert_eq!(per, 0, "someone was paged twice for one step");
        assert_eq!(pages, incidents * 10, "every incident paged its ten people");
    }
}

async fn run(url: &str, incidents: i64, escalators: usize) -> (f64, i64, usize) {
    let store = Store::connect(url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    let mut people = Vec::new();
    for n in 0..10 {
        let user: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, display_name, role, password_hash) \
             VALUES ($1, $1, 'on_call', 'x') RETURNING id",
        )
        .bind(format!("person{n}"))
        .fetch_one(store.pool())
        .await
        .expect("user");
        let p = store
            .upsert_person_for_user(&format!("Person {n}"), user)
            .await
            .expect("person");
        store
            .set_contact_method(p, 1, "console", "", true)
            .await
            .expect("contact");
        people.push(p);
    }
    let layers = json!([{ "name": "all", "participants": [people[0]], "start": "2026-01-05T09:00:00",
                          "shift": { "unit": "weeks", "count": 1 } }]);
    let rota = store
        .upsert_rota("On call", "Europe/London", &layers, &[])
        .await
        .expect("rota");
    let team: i64 =
        sqlx::query_scalar("INSERT INTO teams (name) VALUES ('Responders') RETURNING id")
            .fetch_one(store.pool())
            .await
            .expect("team");
    for p in &people[1..] {
        sqlx::query("INSERT INTO team_members (team_id, person_id) VALUES ($1, $2)")
            .bind(team)
            .bind(p)
            .execute(store.pool())
            .await
            .expect("member");
    }
    let chain = json!({ "steps": [{ "targets": [{ "kind": "rota", "id": rota }, { "kind": "team", "id": team }],
                                    "wait": 600_000_000 }],
                        "fallback": [people[0]], "ack_timeout": 1_800_000_000_i64, "reminder_every": null });
    let chain = store.upsert_chain("Storm", &chain).await.expect("chain");
    store
        .set_route(1, Some("life_critical"), None, None, chain)
        .await
        .expect("route");
    sqlx::query(
        "INSERT INTO incidents (id, priority, kind, state, raised_at, signal_count, doc) \
         SELECT g, 'life_critical', 'pendant', 'offered', now(), 1, '{}' FROM generate_series(1, $1) g",
    )
    .bind(incidents)
    .execute(store.pool())
    .await
    .expect("incidents");
    sqlx::query(
        "INSERT INTO outbox (incident_id, kind, payload) \
         SELECT g, 'overflow', '{}' FROM generate_series(1, $1) g",
    )
    .bind(incidents)
    .execute(store.pool())
    .await
    .expect("outbox");

    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..escalators {
        let esc = Escalator::new(store.clone(), EscalatorConfig::default()).expect("escalator");
        tasks.push(tokio::spawn(async move {
            let mut passes = 0usize;
            loop {
                let p = esc.pass(now).await.expect("pass");
                passes += 1;
                if p.started == 0 && p.fired == 0 {
                    return passes;
                }
            }
        }));
    }
    let mut passes = 0;
    for t in tasks {
        passes += t.await.expect("escalator task");
    }
    let secs = started.elapsed().as_secs_f64();
    let pages: i64 = sqlx::query_scalar("SELECT count(*) FROM pages")
        .fetch_one(store.pool())
        .await
        .expect("count");
    (secs, pages, passes)
}
