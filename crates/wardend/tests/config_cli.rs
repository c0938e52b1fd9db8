//! Configuration errors are all reported at once and exit 64 before anything starts;
//! `print-config` shows the effective configuration with secrets hidden.

use std::process::Command;

fn wardend(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wardend"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("wardend runs")
}

#[test]
fn every_configuration_problem_is_reported_at_once_with_exit_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[writer]
max_batch = 0
[[serial]]
name = "rx 1"
path = "/dev/null"
data_bits = 9
parity = "none"
"#,
    )
    .expect("write config");
    let out = wardend(
        &["--config", path.to_str().expect("utf-8 path"), "run"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["writer.max_batch", "data_bits", "serial name \"rx 1\""] {
        assert!(err.contains(needle), "stderr names {needle}: {err}");
    }
}

#[test]
fn unknown_keys_and_a_missing_file_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[admin]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").expect("write");
    let out = wardend(
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "print-config",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
    let out = wardend(
        &["--config", "/nonexistent/wardend.toml", "print-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn print_config_merges_the_environment_and_hides_the_database_password() {
    let out = wardend(
        &["print-config"],
        &[
            (
                "WARDEN_DATABASE__URL",
                "postgres://warden:hunter2@db.example/warden?sslmode=verify-full&password=hunter3",
            ),
            ("WARDEN_ADMIN__LISTEN", "127.0.0.1:9999"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:9999"), "{text}");
    assert!(
        text.contains(
            "postgres://warden:[redacted]@db.example/warden?sslmode=verify-full&password=[redacted]"
        ),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "the password leaked: {text}"
    );
}

#[test]
fn the_config_file_can_be_named_by_warden_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "[admin]\nlisten = \"127.0.0.1:9777\"\n").expect("write");
    let out = wardend(
        &["print-config"],
        &[("WARDEN_CONFIG", path.to_str().expect("utf-8 path"))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:9777"));
}
