//! The `warden-sim` binary: exit codes, JSON reports and Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Computer, Got};
use tokio::process::Command;
use warden_protocol::ACK;
use warden_sim::surgard::{SerialSettings, open_serial};
use warden_tests::PtyPair;

const BIN: &str = env!("CARGO_BIN_EXE_warden-sim");

fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

async fn output(cmd: &mut Command) -> (i32, serde_json::Value, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run warden-sim");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test]
async fn check_accepts_the_shipped_scenarios_and_rejects_a_broken_one_with_status_64() {
    let files: Vec<PathBuf> = ["steady.toml", "storm.toml", "bad-input.toml"]
        .iter()
        .map(|f| scenarios().join(f))
        .collect();
    let (code, _, stderr) = output(Command::new(BIN).arg("check").args(&files)).await;
    assert_eq!(code, 0, "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\nduration = \"1s\"\nbogus = 1\n").unwrap();
    let (code, _, stderr) = output(Command::new(BIN).arg("check").arg(&broken)).await;
    assert_eq!(code, 64);
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[tokio::test]
async fn run_without_the_targets_a_scenario_needs_exits_64() {
    let (code, _, stderr) = output(
        Command::new(BIN)
            .arg("run")
            .arg(scenarios().join("storm.toml")),
    )
    .await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--mqtt"), "{stderr}");
}

#[tokio::test]
async fn surgard_sends_count_events_over_a_pty_and_exits_0_once_all_are_acknowledged() {
    let pty = PtyPair::start();
    let sim = Command::new(BIN)
        .args(["surgard", "--port"])
        .arg(&pty.receiver)
        .args(["--count", "3", "--events-per-s", "50", "--account", "4321"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let port = open_serial(pty.warden.to_str().unwrap(), &SerialSettings::default()).unwrap();
    let mut computer = Computer::new(port);
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(10), computer.next())
            .await
            .expect("a frame");
        assert!(matches!(got, Got::Frame(..)), "{got:?}");
        assert!(got.bytes().starts_with(b"5011 184321E"));
        computer.reply(ACK).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), sim.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["acked"], 3);
    assert_eq!(json["all_acknowledged"], true);
    assert_eq!(json["ack_latency"]["count"], 3);
}

#[tokio::test]
async fn surgard_exits_1_when_the_computer_never_answers() {
    let pty = PtyPair::start();
    // Hold the computer's end open but never answer.
    let _port = open_serial(pty.warden.to_str().unwrap(), &SerialSettings::default()).unwrap();
    let (code, json, stderr) = output(
        Command::new(BIN)
            .args(["surgard", "--port"])
            .arg(&pty.receiver)
            .args([
                "--count",
                "1",
                "--ack-timeout",
                "100ms",
                "--max-attempts",
                "2",
            ])
            .args(["--drain-timeout", "1s"]),
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(json["all_acknowledged"], false);
    assert_eq!(json["unacked_buffered"], 1);
    assert!(json["timeouts"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn fleet_runs_for_its_duration_and_reports_every_puback() {
    let broker = common::broker();
    let (code, json, stderr) = output(
        Command::new(BIN)
            .args(["fleet", "--port", &broker.port.to_string()])
            .args([
                "--devices",
                "4",
                "--heartbeat",
                "200ms",
                "--alarm-rate",
                "5",
            ])
            .args([
                "--duration",
                "1s",
                "--storm-at",
                "200ms",
                "--storm-within",
                "300ms",
            ]),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["published"], json["pubacked"]);
    assert_eq!(json["unacked"], 0);
    assert_eq!(json["by_kind"]["mains_fail"]["pubacked"], 4);
}

#[tokio::test]
async fn fleet_stops_cleanly_on_ctrl_c_and_still_prints_its_report() {
    let broker = common::broker();
    let child = Command::new(BIN)
        .args(["fleet", "--port", &broker.port.to_string()])
        .args(["--devices", "2", "--heartbeat", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("stops after SIGINT")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["published"].as_u64().unwrap() >= 2);
    assert_eq!(json["unacked"], 0);
}
