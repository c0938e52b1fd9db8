//! README command one: `wardend demo` with zero configuration starts a private Postgres, the
//! embedded broker, a simulated receiver and fleet, becomes ready, stores signals from both
//! paths, escalates unanswered life-critical alarms to the on-call person (a webhook to the
//! demo's printed inbox, whose one-time link acknowledges the page), and on Ctrl-C stops everything, its Postgres included.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use warden_tests::{free_port, http_get, wait_until};

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// A minimal HTTP/1.0 POST with an empty body on loopback: `(status, body)`.
fn http_post(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[test]
fn the_demo_runs_with_zero_configuration_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("temp dir");
    // The private cluster runs as `postgres` when the test runs as root: let it in.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let console = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
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
        .env("WARDEN_CONSOLE__LISTEN", console.to_string())
        // Life-critical alarms overflow after 2 s instead of 60 s, so the demo's escalation
        // (nobody answers in a test) pages within the test's patience.
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__WARN", "1s")
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__OVERFLOW", "2s")
        .env("WARDEN_TRIAGE__SLA__LIFE_CRITICAL__CRITICAL", "30s")
        .stdout(std::fs::File::create(data.path().join("demo.out")).expect("out"))
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

    // The private cluster admits only password logins: the printed runtime URL works and
    // can do no more than read and write rows; the same URL without a password is refused.
    let out = std::fs::read_to_string(data.path().join("demo.out")).unwrap_or_default();
    let url = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("database:"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the database URL is printed")
        .to_owned();
    assert!(url.starts_with("postgres://warden_app:"), "{url}");
    let psql = |url: &str, sql: &str| {
        std::process::Command::new("psql")
            .args(["-w", "-XqtAc", sql, url])
            .output()
            .expect("psql")
    };
    let ok = psql(&url, "SELECT count(*) >= 0 FROM signals");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let port = url
        .rsplit_once(':')
        .and_then(|(_, p)| p.split('/').next())
        .expect("port");
    for anonymous in [
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        format!("postgres://warden_app@127.0.0.1:{port}/postgres"),
    ] {
        let r = psql(&anonymous, "SELECT 1");
        assert!(!r.status.success(), "{anonymous} was let in");
    }
    for (sql, why) in [
        ("ALTER TABLE signals DISABLE TRIGGER ALL", "must be owner"),
        ("ALTER TABLE audit DISABLE TRIGGER ALL", "must be owner"),
        ("COPY (SELECT 1) TO PROGRAM 'true'", "must be superuser"),
        ("CREATE ROLE intruder SUPERUSER", "must be superuser"),
        ("CREATE ROLE intruder LOGIN", "permission denied"),
        ("CREATE TABLE intruder (x int)", "permission denied"),
        // The evidence tables are read and insert only for the runtime role.
        ("DELETE FROM signals", "permission denied"),
        ("UPDATE audit SET action = 'forged'", "permission denied"),
        ("TRUNCATE incident_events", "permission denied"),
    ] {
        let r = psql(&url, sql);
        let err = String::from_utf8_lossy(&r.stderr).to_lowercase();
        assert!(!r.status.success() && err.contains(why), "{sql}: {err}");
    }
    for entry in std::fs::read_dir(data.path().join("postgres-auth")).expect("auth dir") {
        let path = entry.expect("entry").path();
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }

    // The demo's DC-09 transmitters (one encrypted) are acknowledged, and the printed
    // account and key are there for a real dialler.
    let ip_units = wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
        metric(
            &body,
            "warden_dc09_replies_total{transport=\"tcp\",reply=\"ack\"}",
        ) >= 2.0
    });
    assert!(ip_units, "DC-09 transmitters acknowledged:\n{}", log_text());
    let out = std::fs::read_to_string(data.path().join("demo.out")).unwrap_or_default();
    assert!(
        out.lines()
            .any(|l| l.trim().starts_with("dc09:") && l.contains("AES-128 key")),
        "the DC-09 addresses and key are printed:\n{out}"
    );
    // The demo's SCAIP units are answered 200 over UDP, and the addresses printed.
    let scaip_units = wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
        metric(
            &body,
            "warden_scaip_replies_total{transport=\"udp\",reply=\"200\"}",
        ) >= 2.0
    });
    assert!(scaip_units, "SCAIP units answered:\n{}", log_text());
    let out = std::fs::read_to_string(data.path().join("demo.out")).unwrap_or_default();
    assert!(
        out.lines()
            .any(|l| l.trim().starts_with("scaip:") && l.contains("udp")),
        "the SCAIP addresses are printed:\n{out}"
    );

    // Unanswered life-critical alarms page the demo's on-call person: by webhook to the
    // demo's inbox (and in the console's My pages).
    let paged = wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
        metric(&body, "warden_escalations_started_total") > 0.0
            && metric(
                &body,
                "warden_pages_total{channel=\"webhook\",status=\"delivered\"}",
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

    // The printed inbox lists the page, in plain English with its one-time link; the link
    // acknowledges it.
    let out = std::fs::read_to_string(data.path().join("demo.out")).unwrap_or_default();
    let inbox: std::net::SocketAddr = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("inbox:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|u| u.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no inbox address printed:\n{out}"));
    let (status, listed) = http_get(inbox, "/").expect("the inbox answers");
    assert_eq!(status, 200);
    assert!(listed.contains("Warden alarm #"), "{listed}");
    let link = listed
        .split_whitespace()
        .find(|w| w.contains("/ack/"))
        .unwrap_or_else(|| panic!("no acknowledgement link in:\n{listed}"));
    let path = &link[link.find("/ack/").expect("ack")..];
    let (status, shown) = http_get(console, path).expect("the link's page");
    assert_eq!(status, 200, "{shown}");
    assert!(shown.contains("Acknowledge alarm #"), "{shown}");
    let (status, done) = http_post(console, path).expect("the link's button");
    assert_eq!(status, 200, "{done}");
    assert!(
        done.contains("acknowledged"),
        "the link acknowledged the page:\n{done}"
    );
    let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
    assert!(metric(&body, "warden_pages_acknowledged_total{via=\"link\"}") >= 1.0);

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
