//! Escalation through real `wardend` processes: an unanswered pendant press (published with
//! `mosquitto_pub`) overflows and climbs its chain; a second wardend on the same database
//! shares the escalation work without paging anyone twice; the first is killed with -9 in the
//! middle of the chain and the next step still pages on time.

use std::time::{Duration, Instant};

use warden_tests::{Mosquitto, TestDb, Wardend, mosquitto_pub, wait_until};

/// Life-critical alarms overflow after 2 s; escalation passes run every 200 ms.
fn config(db: &TestDb, mqtt: Option<u16>) -> String {
    let mqtt = mqtt.map_or(String::new(), |port| {
        format!("[mqtt]\nport = {port}\nclient_id = \"warden-esc\"\n")
    });
    format!(
        r#"
[database]
url = "{url}"
[escalation]
every = "200ms"
[triage.sla.life_critical]
warn = "1s"
overflow = "2s"
critical = "1h"
{mqtt}"#,
        url = db.url
    )
}

/// Person 1 is on call in a rota; the chain pages the rota, then person 2 four seconds
/// later, then gives up (fallback person 3). Life-critical incidents route to it.
fn seed(db: &TestDb) {
    db.query(
        "INSERT INTO people (name) VALUES ('On call'), ('Manager'), ('Director'); \
         INSERT INTO contact_methods (person_id, position, kind, verified) \
             SELECT id, 1, 'console', true FROM people; \
         INSERT INTO rotas (name, zone, layers) VALUES ('Rota', 'Europe/London', \
             '[{\"name\":\"all\",\"participants\":[1],\"start\":\"2026-01-05T09:00:00\",\
                \"shift\":{\"unit\":\"weeks\",\"count\":1}}]'); \
         INSERT INTO chains (name, doc) VALUES ('Chain', \
             '{\"steps\":[{\"targets\":[{\"kind\":\"rota\",\"id\":1}],\"wait\":4000000},\
                          {\"targets\":[{\"kind\":\"person\",\"id\":2}],\"wait\":600000000}],\
               \"fallback\":[3],\"ack_timeout\":1800000000,\"reminder_every\":null}'); \
         INSERT INTO routes (position, priority, chain_id) VALUES (1, 'life_critical', 1);",
    );
}

fn pages(db: &TestDb) -> String {
    db.query(
        "SELECT coalesce(string_agg(person_id || ':' || step || ':' || round, ',' ORDER BY id), '') \
         FROM pages",
    )
}

#[test]
fn two_wardends_page_once_per_step_and_a_kill_mid_chain_loses_no_step() {
    let db = TestDb::create("e2e_escalation");
    let broker = Mosquitto::start("");
    let mut a = Wardend::start(&config(&db, Some(broker.port)));
    a.add_device("unit-1", "mqtt", &[]);
    seed(&db);
    // The second process takes no input: its escalator shares the outbox and escalations.
    let b = Wardend::start(&config(&db, None));
    assert!(
        wait_until(Duration::from_secs(30), || b
            .metric("warden_engine_running")
            > 0.5),
        "second wardend up:\n{}",
        b.log_text()
    );
    a.wait_mqtt_up(broker.port);

    let report = mosquitto_pub(
        broker.port,
        "warden/v1/devices/unit-1/up",
        vec![r#"{"v":1,"msg_id":"press-1","alarm":{"kind":"pendant"}}"#.to_owned()],
        10.0,
        Instant::now() + Duration::from_secs(20),
    )
    .join()
    .expect("mosquitto_pub");
    assert_eq!(
        report.acked,
        [true],
        "the press was acknowledged by the broker"
    );

    // Overflow after 2 s, then the first step pages person 1, once.
    assert!(
        wait_until(Duration::from_secs(15), || pages(&db) == "1:0:0"),
        "first step: {}\n{}",
        pages(&db),
        a.log_text()
    );
    // Killed mid-chain; the step due 4 s later is still paged (by the other process, or
    // by the restarted one), once.
    a.kill9();
    assert!(
        wait_until(Duration::from_secs(15), || pages(&db) == "1:0:0,2:1:0"),
        "second step after the kill: {}\n{}",
        pages(&db),
        b.log_text()
    );
    a.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pages(&db), "1:0:0,2:1:0", "nobody paged twice");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM incident_events \
             WHERE kind = 'escalation_started'"
        ),
        1
    );
}

/// The states of the self-check incidents, oldest first.
fn self_check_incidents(db: &TestDb) -> String {
    db.query(
        "SELECT coalesce(string_agg(state, ',' ORDER BY id), '') FROM incidents \
         WHERE kind = 'self_check'",
    )
}

#[test]
fn an_on_call_configuration_problem_is_a_technical_incident_until_it_is_fixed() {
    let db = TestDb::create("e2e_selfcheck");
    let w = Wardend::start(&config(&db, None));
    assert!(
        wait_until(Duration::from_secs(30), || w
            .metric("warden_engine_running")
            > 0.5),
        "wardend up:\n{}",
        w.log_text()
    );
    // The director, the chain's fallback, cannot be reached: no verified method.
    seed(&db);
    db.query("UPDATE contact_methods SET verified = false WHERE person_id = 3");
    assert!(
        wait_until(Duration::from_secs(15), || self_check_incidents(&db)
            == "offered"),
        "a self-check incident is in the queue: {}\n{}",
        self_check_incidents(&db),
        w.log_text()
    );
    let summary = db.query("SELECT summary FROM incidents WHERE kind = 'self_check'");
    assert!(
        summary.contains("self-check oncall_config failed: person 3"),
        "{summary}"
    );
    assert!(w.metric("warden_oncall_findings{finding=\"no_verified_contact\"}") > 0.5);
    // Fixed in the configuration: the incident closes by itself.
    db.query("UPDATE contact_methods SET verified = true WHERE person_id = 3");
    assert!(
        wait_until(Duration::from_secs(15), || {
            !self_check_incidents(&db).contains("offered")
        }),
        "the self-check incident closes: {}\n{}",
        self_check_incidents(&db),
        w.log_text()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM incidents WHERE kind = 'self_check'"),
        1,
        "one incident for the problem, however many checks saw it"
    );
}
