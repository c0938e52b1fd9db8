//! The shipped scenario files, scenario validation, and the runner end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Computer, Got, Subscriber};
use warden_protocol::mqtt::AlarmKind;
use warden_protocol::{ACK, NAK};
use warden_sim::scenario::{self, Scenario, ScenarioError, Targets};

fn scenario_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

#[test]
fn every_shipped_scenario_parses_and_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(s.name);
        }
    }
    names.sort();
    assert_eq!(names, ["bad-input", "steady", "storm"]);
}

#[test]
fn steady_runs_two_hundred_units_and_a_receiver_at_one_signal_a_second() {
    let s = Scenario::load(scenario_path("steady.toml")).unwrap();
    let m = s.mqtt.as_ref().unwrap();
    assert_eq!(m.devices, 200);
    assert_eq!(m.heartbeat_interval, Duration::from_mins(1));
    assert!((m.alarm_rate_per_s - 1.0).abs() < f64::EPSILON);
    let g = s.surgard.as_ref().unwrap();
    assert!((g.events_per_s - 1.0).abs() < f64::EPSILON);
    assert_eq!(g.heartbeat_interval, Duration::from_secs(30));
    assert_eq!(g.ack_timeout, Duration::from_secs(4));
}

#[test]
fn storm_is_five_thousand_mains_fails_in_ten_seconds_with_a_pendant_in_the_middle() {
    let s = Scenario::load(scenario_path("storm.toml")).unwrap();
    let storm_step = s.steps.iter().find(|st| st.storm.is_some()).unwrap();
    let storm = storm_step.storm.as_ref().unwrap();
    assert_eq!(storm.kind, AlarmKind::MainsFail);
    assert_eq!(storm.devices, 5000);
    assert_eq!(storm.within, Duration::from_secs(10));
    let pendant = s.steps.iter().find(|st| st.mqtt_alarm.is_some()).unwrap();
    assert_eq!(
        pendant.mqtt_alarm.as_ref().unwrap().kind,
        AlarmKind::Pendant
    );
    assert!(pendant.at > storm_step.at && pendant.at < storm_step.at + storm.within);
    assert!(s.mqtt.as_ref().unwrap().devices >= 5000);
}

#[test]
fn bad_input_mixes_every_kind_of_bad_input_with_good_signals() {
    let s = Scenario::load(scenario_path("bad-input.toml")).unwrap();
    let raw: Vec<Vec<u8>> = s
        .steps
        .iter()
        .filter_map(|st| st.surgard_raw.as_ref())
        .map(|r| r.bytes().unwrap())
        .collect();
    assert!(
        raw.iter().any(|b| !b.contains(&warden_protocol::DC4)),
        "garbage/truncated"
    );
    assert!(
        raw.iter()
            .any(|b| b.len() > warden_protocol::surgard::MAX_FRAME),
        "oversized"
    );
    let payloads: Vec<&str> = s
        .steps
        .iter()
        .filter_map(|st| st.mqtt_raw.as_ref())
        .map(|r| r.payload.as_str())
        .collect();
    assert!(
        payloads
            .iter()
            .any(|p| serde_json::from_str::<serde_json::Value>(p).is_err())
    );
    assert!(payloads.iter().any(|p| p.contains(r#""v":2"#)));
    assert!(
        s.steps
            .iter()
            .filter_map(|st| st.surgard_event.as_ref())
            .any(|e| e.account == "9999"),
        "unknown account"
    );
    let good = s
        .steps
        .iter()
        .filter(|st| st.surgard_event.is_some() || st.mqtt_alarm.is_some())
        .count();
    assert!(good >= 5);
}

#[test]
fn an_invalid_scenario_reports_every_problem_at_once() {
    let text = r#"
        name = "broken"
        duration = "10s"
        [surgard]
        receiver = "1"
        accounts = ["12"]
        [[step]]
        at = "20s"
        surgard_event = { account = "1234", code = 101 }
        surgard_raw = { text = "x" }
        [[step]]
        at = "1s"
        storm = { kind = "mains_fail", devices = 10, within = "1s" }
    "#;
    let Err(ScenarioError::Invalid(problems)) = Scenario::from_toml(text) else {
        panic!("expected an invalid scenario");
    };
    let all = problems.join("\n");
    for expected in [
        "receiver \"1\"",
        "account \"12\"",
        "exactly one of",
        "after the scenario's duration",
        "needs an [mqtt] section",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn unknown_fields_and_bad_durations_are_refused() {
    let unknown = "name = \"x\"\nduration = \"1s\"\ncolour = \"red\"\n";
    assert!(matches!(
        Scenario::from_toml(unknown),
        Err(ScenarioError::Parse(_))
    ));
    let bad_duration = "name = \"x\"\nduration = \"soon\"\n";
    assert!(matches!(
        Scenario::from_toml(bad_duration),
        Err(ScenarioError::Parse(_))
    ));
    let unknown_kind = "name = \"x\"\nduration = \"1s\"\n[mqtt]\ndevices = 1\n[[step]]\nat = \"0s\"\nmqtt_alarm = { device = \"sim-00001\", kind = \"alien\" }\n";
    assert!(matches!(
        Scenario::from_toml(unknown_kind),
        Err(ScenarioError::Parse(_))
    ));
}

#[tokio::test]
async fn a_scenario_without_its_targets_is_refused_before_any_traffic() {
    let s = Scenario::load(scenario_path("bad-input.toml")).unwrap();
    let err = scenario::run(&s, Targets::default(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ScenarioError::MissingTarget(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_scenario_runs_end_to_end_and_every_good_signal_is_acknowledged() {
    let broker = common::broker();
    let sub = Subscriber::start(broker.port, "warden/#").await;
    let (sim, computer) = tokio::io::duplex(8192);
    // The computer ACKs frames and NAKs bad chunks, as Warden does.
    let peer = tokio::spawn(async move {
        let mut computer = Computer::new(computer);
        let mut chunks = Vec::new();
        loop {
            let got = computer.next().await;
            computer
                .reply(if matches!(got, Got::Frame(..)) {
                    ACK
                } else {
                    NAK
                })
                .await;
            chunks.push(got);
            if chunks.len() == 9 {
                return chunks;
            }
        }
    });
    let s = Scenario::load(scenario_path("bad-input.toml")).unwrap();
    let targets = Targets {
        serial: Some(Box::new(sim)),
        mqtt: Some(("127.0.0.1".into(), broker.port)),
    };
    let report = scenario::run(&s, targets, std::future::pending())
        .await
        .unwrap();

    assert_eq!(report.steps_run, s.steps.len());
    assert!(!report.interrupted);
    assert!(report.all_acknowledged, "{report:#?}");
    let g = report.surgard.as_ref().unwrap();
    assert_eq!(g.stats.acked, 5, "four good events and the unknown account");
    assert_eq!(g.stats.raw_sent, 4);
    assert_eq!(g.stats.raw_naked, 2, "oversized and binary frames");
    assert_eq!(
        g.stats.resent, 2,
        "the frames glued to garbage and to the truncated frame"
    );
    let m = report.mqtt.as_ref().unwrap();
    assert_eq!(m.invalid, 7, "one per mqtt_raw step");
    assert_eq!(m.by_kind["pendant"].pubacked, 1);
    assert_eq!(m.by_kind["smoke"].pubacked, 1);

    // Five events, two of them first glued to garbage, and two bad frames of their own.
    let chunks = peer.await.unwrap();
    let bad = chunks.iter().filter(|c| matches!(c, Got::Bad(_))).count();
    assert_eq!(bad, 4);
    let received = sub
        .wait_until(Duration::from_secs(10), |msgs| {
            msgs.len() as u64 >= m.pubacked
        })
        .await;
    assert!(received.iter().any(|(_, p)| p == b"{not json"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["all_acknowledged"], true);
    assert!(json["mqtt"]["latencies"]["p99_ms"].is_number());
}
