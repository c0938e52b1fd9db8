//! The real binary with `[admin]` and `[console]` over HTTPS (`tls_cert`/`tls_key`): both
//! answer only over TLS with a certificate the client's CA signed, carry HSTS, and answer
//! nothing over plain HTTP; a Prometheus scraping `/metrics` with `scheme: https` reads it.
//! A certificate that does not load is a configuration error named at start.

use warden_tests::certs::Ca;
use warden_tests::db::TestDb;
use warden_tests::net::get;
use warden_tests::wardend::{Wardend, daemon_command};

#[test]
fn admin_and_console_answer_over_tls_only_with_hsts() {
    let db = TestDb::create("e2e_tls");
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "listeners");
    let pair = ca.issue("wardend", &["IP:127.0.0.1"]);
    let warden = Wardend::start_tls(
        &format!("[database]\nurl = \"{}\"\n", db.url),
        &pair,
        &ca.cert,
    );

    for (listener, addr, path) in [
        ("admin", warden.admin, "/healthz"),
        ("admin", warden.admin, "/metrics"),
        ("console", warden.console, "/"),
    ] {
        let answer = get(addr, path, Some(&ca.cert))
            .unwrap_or_else(|| panic!("{listener} {path}: no answer over TLS"));
        assert_eq!(answer.status, 200, "{listener} {path}: {}", answer.head);
        assert_eq!(
            answer.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{listener} {path}: {}",
            answer.head
        );
        // The same port, plain HTTP: no answer at all (never a page in clear).
        assert!(
            get(addr, path, None).is_none(),
            "{listener} answered plain HTTP"
        );
    }
    assert!(
        warden
            .admin_get("/metrics")
            .is_some_and(|a| a.body.contains("warden_http_tls_handshake_failures_total")),
        "the plain-HTTP tries are counted as failed handshakes"
    );

    // A client trusting another CA does not get through.
    let other = Ca::new(dir.path(), "other");
    assert!(get(warden.admin, "/healthz", Some(&other.cert)).is_none());
}

#[test]
fn an_admin_certificate_that_does_not_load_is_named_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "bad");
    let pair = ca.issue("wardend", &["IP:127.0.0.1"]);
    let other = ca.issue("other", &["IP:127.0.0.1"]);
    let config = dir.path().join("w.toml");
    // A certificate with another certificate's key (a half-finished renewal).
    std::fs::write(
        &config,
        format!(
            "[admin]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[console]\ntls_cert = \"{}\"\n",
            pair.cert.display(),
            other.key.display(),
            pair.cert.display()
        ),
    )
    .expect("config");
    let out = daemon_command()
        .arg("--config")
        .arg(&config)
        .arg("print-config")
        .output()
        .expect("run wardend");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.tls_cert / tls_key: ")
            && stderr.contains("do not make a usable pair"),
        "{stderr}"
    );
    assert!(
        stderr.contains("console.tls_key: required with console.tls_cert"),
        "{stderr}"
    );
}
