//! The bad-input catalogue (issue 9, item 7), end to end through ONE real `wardend`: a serial
//! receiver line over a socat pty pair, driven byte by byte, and MQTT through a real
//! Mosquitto (with a small `message_size_limit`), against Postgres.
//!
//! Each case sends one piece of bad input and then checks, for that input alone:
//! (a) a clear outcome: an open incident in the queue of the expected priority (life-critical
//!     codes stay life-critical even from an unregistered unit; unreadable input is never
//!     lower than urgent) or, for noise, a quarantine row naming the problem;
//! (b) evidence: a quarantine row with its reason code and the raw bytes exactly as sent, or
//!     the stored signal (raw bytes exact) and an audit entry of its incident naming it;
//! (c) a metric moved (`warden_signals_rejected_total{source,reason}` for quarantined
//!     input, else `warden_signals_received_total{source}`);
//! (d) no crash: the process runs, `/healthz` answers, `/readyz` reports no engine problem
//!     and `warden_engine_running` is 1;
//! (e) the next good pendant press on the same path (a unit not used before) becomes an
//!     offered, life-critical incident within 2 s.
//!
//! Then the poison message is replayed after a restart. Every case runs even when an earlier
//! one failed; the catalogue is printed (one line per case) and the test fails at the end,
//! naming every failed check.

mod catalogue;
mod rig;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warden_tests::wait_until;

use catalogue::{BRIDGE, PANEL, Path, catalogue, cid_message, up};
use rig::Rig;

#[test]
fn every_bad_input_in_the_catalogue_is_kept_counted_and_survived_and_the_next_pendant_still_reaches_the_queue()
 {
    let started = Instant::now();
    let mut rig = Rig::start();
    let cases = catalogue();
    assert!(cases.len() >= 30, "the catalogue has {} cases", cases.len());
    let mut table = Vec::new();
    let mut poison_signal = None;
    for case in &cases {
        let t0 = rig.now();
        let (observed, failed) = rig.run(case);
        if case.name.starts_with("mqtt: poison") {
            let raw = case.bytes.clone();
            poison_signal = rig
                .observe(&t0)
                .signals
                .into_iter()
                .find(|(_, r, _)| *r == raw)
                .map(|(id, _, _)| id);
        }
        table.push((case.name.to_owned(), case.expected(), observed, failed));
    }
    table.push(replay_after_restart(&mut rig, poison_signal.as_deref()));

    // One line per case: verdict, case, expected | observed, and any failed check.
    eprintln!("\nbad-input catalogue ({} cases):", table.len());
    for (i, (name, expected, observed, failed)) in table.iter().enumerate() {
        let verdict = if failed.is_empty() { "ok  " } else { "FAIL" };
        let why = if failed.is_empty() {
            String::new()
        } else {
            format!(" | ✗ {}", failed.join("; ✗ "))
        };
        eprintln!(
            "{verdict} {:>2}. {name} | expected: {expected} | observed: {observed}{why}",
            i + 1
        );
    }
    eprintln!("run time: {:.1?}", started.elapsed());
    let failures: Vec<String> = table
        .iter()
        .filter(|(_, _, _, f)| !f.is_empty())
        .map(|(name, _, _, f)| format!("{name}: {}", f.join("; ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases did not give the safe result:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

/// The poison message once more, through a restart: stop the daemon, mark the stored poison
/// signal untriaged (as if the process had died between its commit and its triage), publish
/// a second poison message while the daemon is down (the broker keeps it for the session),
/// and start again. Replay and the session's redelivery must not stop the engine.
fn replay_after_restart(
    rig: &mut Rig,
    poison: Option<&str>,
) -> (String, String, String, Vec<String>) {
    let name = "restart: poison replayed from signals and redelivered by the broker".to_owned();
    let expected =
        "engine running after replay; both poison signals triaged; next pendants offered"
            .to_owned();
    let mut failed = Vec::new();
    let Some(poison) = poison else {
        failed.push("the poison case stored no signal to replay".into());
        return (name, expected, String::new(), failed);
    };
    let code = rig.warden.terminate();
    if code != Some(0) {
        failed.push(format!("orderly stop exited {code:?}"));
    }
    rig.db
        .query(&format!("DELETE FROM triaged WHERE signal_id = '{poison}'"));
    let second = format!(
        r#"{{"v":1,"msg_id":"poison-2","contact_id":{{"message":"{}","receiver":"{}","line":"{}"}}}}"#,
        cid_message(PANEL, 1, "101", 10),
        "€".repeat(150),
        "ü".repeat(200)
    );
    if let Err(e) = rig.publish(&up(BRIDGE), second.as_bytes()) {
        failed.push(e);
    }
    let restarted = Instant::now();
    rig.warden.restart();
    rig.warden.wait_mqtt_up(rig.broker.port);
    let done = wait_until(Duration::from_secs(10), || {
        rig.db.count(&format!(
            "SELECT count(*) FROM triaged WHERE signal_id = '{poison}'"
        )) == 1
            && rig.db.count(
                "SELECT count(*) FROM signals s JOIN triaged t ON t.signal_id = s.id \
                 WHERE s.dedupe_key = 'mqtt:bridge-1:poison-2'",
            ) == 1
    });
    if !done {
        failed.push("the replayed and the redelivered poison were not both triaged in 10 s".into());
    }
    let replayed = rig.warden.metric("warden_engine_replayed_signals_total");
    if replayed < 1.0 {
        failed.push(format!(
            "warden_engine_replayed_signals_total is {replayed}: nothing was replayed"
        ));
    }
    if let Err(e) = rig.health() {
        failed.push(format!("(d) {e}"));
    }
    let mut observed = format!("ready in {:.1?}, replayed {replayed}", restarted.elapsed());
    for path in [Path::Mqtt, Path::Serial] {
        match rig.probe(path) {
            Ok(d) => {
                let _ = write!(observed, ", next {} pendant {d:.0?}", path.source());
            }
            Err(e) => failed.push(format!("(e) {e}")),
        }
    }
    (name, expected, observed, failed)
}
