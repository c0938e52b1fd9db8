//! README command one: `wardend demo` with zero configuration starts a private Postgres, the
//! embedded broker, a simulated receiver and fleet, becomes ready, stores signals from both
//! paths, escalates unanswered life-critical alarms to the on-call person's console inbox,
//! and on Ctrl-C stops everything, its Postgres included.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use warden_tests::{free_port, http_get, wait_until};

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn the_demo_runs_with_zero_configuration_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("temp dir");
    // The private cluster runs as `postgres` when the test runs as root: let it in.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(data.path().join("demo.log")).expect("log");
    let mut child = warden_tests::daemon_command()
        .args([
            "demo",
            "--alarm-rate",
            "5",
            "--receiver-rate",
            "2",
            "--devices",
            "10",
            "--data-dir",
        ])
        .arg(data.path())
        .env("WARDEN_ADMIN__LISTEN", admin.to_string())
        .env(
            "WARDEN_CONSOLE__LISTEN",
            std::net::SocketAddr::from(([127, 0, 0, 1], free_port())).to_string(),
        )
        // Life-critical alarms overflow after 2 s instead of 60 s, so the demo's escalation
        // (nobody answers in a test) pages within the test's patience.
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__WARN", "1s")
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__OVERFLOW", "2s")
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__CRITICAL", "30s")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start demo");
    let log_text = || std::fs::read_to_string(data.path().join("demo.log")).unwrap_or_default();

    let ready = wait_until(Duration::from_mins(1), || {
        http_get(admin, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert!(ready, "demo never became ready:\n{}", log_text());
    let both_paths = wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
        metric(&body, "warden_signals_acked_total{source=\"mqtt\"}") > 0.0
            && metric(&body, "warden_signals_acked_total{source=\"serial\"}") > 0.0
            && metric(&body, "warden_incidents_offered_total") > 0.0
    });
    assert!(
        both_paths,
        "signals from both paths acknowledged and triaged:\n{}",
        log_text()
    );

    // Unanswered life-critical alarms page the demo's on-call person in the console.
    let paged = wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
        metric(&body, "warden_escalations_started_total") > 0.0
            && metric(
                &body,
                "warden_pages_total{channel=\"console\",status=\"delivered\"}",
            ) > 0.0
    });
    let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
    let (sum, count) = (
        metric(&body, "warden_escalation_first_page_seconds_sum"),
        metric(&body, "warden_escalation_first_page_seconds_count"),
    );
    eprintln!(
        "threshold → first page: {count} escalations, mean {:.0} ms",
        1000.0 * sum / count.max(1.0)
    );
    assert!(paged, "no escalation paged anyone:\n{}", log_text());
    assert!(
        metric(&body, "warden_escalations_unreachable_total") < 0.5,
        "every escalation reached someone"
    );

    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("demo exit status");
    assert!(
        exited && status.success(),
        "demo did not stop cleanly ({status:?}):\n{}",
        log_text()
    );
    assert!(
        !data.path().join("postgres/postmaster.pid").exists(),
        "the private postgres was left running"
    );
}
