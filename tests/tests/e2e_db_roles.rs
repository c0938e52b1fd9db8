//! A private PostgreSQL cluster left by an older `wardend` (`initdb -A trust`, the schema
//! owned by `postgres`) is converted on the next start and keeps its data: nobody gets in
//! without a password any more, and the role the daemon works as cannot tamper with the
//! evidence: it owns no table (so no trigger can be switched off), is no superuser (so no
//! `COPY … TO PROGRAM`), and may only read and insert the append-only tables. Checked with
//! the real `psql`. (A cluster `wardend` creates itself is checked the same way in
//! `e2e_demo`.) With a database of one's own, `database.migrate_url` gives the same split:
//! the owner migrates and grants, the daemon's role reads and inserts evidence only.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use warden_tests::{TestDb, Wardend, daemon_command, free_port, pg_tool, server_url};

/// `psql` on `url` with no password from anywhere but the URL (no prompt, no password file,
/// no `PGPASSWORD`): `Ok(output)` or `Err(error text)`.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([url, "-X", "-w", "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The running cluster's port (line 4 of `postmaster.pid`).
fn cluster_port(data: &Path) -> u16 {
    let pid = std::fs::read_to_string(data.join("postgres/postmaster.pid"))
        .expect("the private postgres is running");
    pid.lines()
        .nth(3)
        .and_then(|l| l.trim().parse().ok())
        .expect("port line")
}

/// A role's password, from `<data_dir>/postgres-auth/<role>.password`.
fn password(data: &Path, role: &str) -> String {
    std::fs::read_to_string(data.join(format!("postgres-auth/{role}.password")))
        .unwrap_or_else(|e| panic!("{role}'s password: {e}"))
        .trim()
        .to_owned()
}

/// Stops the private cluster in `data/postgres` on drop, should a failed assertion leave it
/// running (the daemon stops it on an orderly exit).
struct StopCluster(std::path::PathBuf);

impl Drop for StopCluster {
    fn drop(&mut self) {
        let dir = self.0.join("postgres").to_string_lossy().into_owned();
        let _ = pg_tool("pg_ctl", &["-D", &dir, "-m", "immediate", "-w", "stop"]);
    }
}

/// What an anonymous caller, the runtime role and the files show about a running cluster.
fn assert_locked_down(data: &Path) {
    let port = cluster_port(data);
    for role in ["postgres", "warden_owner", "warden_app"] {
        let path = data.join(format!("postgres-auth/{role}.password"));
        let mode = std::fs::metadata(&path)
            .expect("password file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{} is private", path.display());
    }
    let hba = std::fs::read_to_string(data.join("postgres/pg_hba.conf")).expect("pg_hba.conf");
    assert!(
        !hba.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("trust")),
        "no trust line in pg_hba.conf:\n{hba}"
    );

    for who in ["postgres", "warden_app", "warden_owner"] {
        let anonymous = psql(
            &format!("postgres://{who}@127.0.0.1:{port}/postgres"),
            "SELECT 1",
        );
        assert!(
            anonymous
                .as_ref()
                .is_err_and(|e| e.contains("password") || e.contains("authentication")),
            "{who} without a password is refused: {anonymous:?}"
        );
        let wrong = psql(
            &format!("postgres://{who}:wrong@127.0.0.1:{port}/postgres"),
            "SELECT 1",
        );
        assert!(wrong.is_err(), "{who} with a wrong password is refused");
    }

    let runtime = format!(
        "postgres://warden_app:{}@127.0.0.1:{port}/postgres",
        password(data, "warden_app")
    );
    assert_evidence_safe(&runtime, "warden_app", "warden_owner");
}

/// The runtime role `role` (at `runtime`) is no superuser, owns no table (`owner` owns them
/// all), reads and inserts evidence, and is refused every way of changing it.
fn assert_evidence_safe(runtime: &str, role: &str, owner: &str) {
    assert_eq!(
        psql(
            runtime,
            "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        .as_deref(),
        Ok(format!("{role} false").as_str()),
        "the runtime role's URL works and it is no superuser"
    );
    assert_eq!(
        psql(
            runtime,
            &format!("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> '{owner}'")
        )
        .as_deref(),
        Ok("0"),
        "{owner} owns every table"
    );
    assert!(
        psql(runtime, "SELECT count(*) FROM signals").is_ok(),
        "the runtime role reads the evidence"
    );
    // Evidence is written by inserting, which the runtime role may do; each tampering
    // below then has rows to work on.
    psql(
        runtime,
        "INSERT INTO signals (id, source, link_id, kind, raw, decoded, received_at) \
         VALUES (gen_random_uuid(), 'internal', 'warden:test', 'event', '\\x00', '{}', now()); \
         INSERT INTO audit (action, object_type) VALUES ('test', 'test')",
    )
    .expect("the runtime role inserts evidence");
    let alter_role = format!("ALTER ROLE {role} SUPERUSER");
    for tamper in [
        // The append-only trigger lets one change through (setting `acked_at` once, kept
        // for rows from before migration 0009): the privilege is not there at all.
        "UPDATE signals SET acked_at = '2000-01-01' WHERE acked_at IS NULL",
        "ALTER TABLE signals DISABLE TRIGGER ALL",
        "ALTER TABLE audit DISABLE TRIGGER audit_append_only",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "UPDATE audit SET action = 'forged'",
        "DELETE FROM audit",
        "DELETE FROM incident_events",
        "TRUNCATE signals",
        "UPDATE acks SET acked_at = now()",
        // Moving a sequence back would make new ids collide with old ones.
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), 1)",
        "CREATE ROLE intruder LOGIN SUPERUSER",
        "CREATE TABLE planted (i int)",
        alter_role.as_str(),
        "DROP TABLE audit",
    ] {
        let refused = psql(runtime, tamper);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("permission denied")
                    || e.contains("must be owner")
                    || e.contains("must be superuser")
                    || e.contains("privilege")),
            "as {role}, {tamper:?} is refused: {refused:?}"
        );
    }
}

#[test]
fn a_trusting_cluster_of_an_older_wardend_is_upgraded_on_start_and_keeps_its_data() {
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _stop = StopCluster(data.path().to_owned());
    // What an older wardend left: `initdb -A trust`, the schema migrated by `postgres`.
    let pgdir = data.path().join("postgres");
    std::fs::create_dir(&pgdir).expect("mkdir");
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if as_root {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&pgdir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown postgres");
    }
    let dir = pgdir.to_string_lossy().into_owned();
    assert!(
        pg_tool(
            "initdb",
            &["-D", &dir, "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        ),
        "initdb"
    );
    let port = free_port();
    let opts = format!("-p {port} -k {dir} -c listen_addresses=127.0.0.1");
    let log = format!("{dir}/server.log");
    assert!(
        pg_tool(
            "pg_ctl",
            &[
                "-D", &dir, "-l", &log, "-o", &opts, "-w", "-t", "30", "start"
            ]
        ),
        "pg_ctl start"
    );
    let legacy = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let out = daemon_command()
        .args([
            "device",
            "add",
            "--account",
            "4242",
            "--protocol",
            "contact_id",
        ])
        .env("WARDEN_DATABASE__URL", &legacy)
        .env("WARDEN_DATA_DIR", data.path())
        .output()
        .expect("wardend device add");
    assert!(
        out.status.success(),
        "device add on the old cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        psql(&legacy, "SELECT count(*) FROM devices").as_deref(),
        Ok("1"),
        "the old cluster trusts anyone"
    );
    assert!(
        pg_tool("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]),
        "pg_ctl stop"
    );

    // The new wardend starts on it with no database URL: the private cluster, upgraded.
    let mut warden = Wardend::start(&format!("data_dir = \"{}\"\n", data.path().display()));
    assert!(
        warden.log_text().contains("pg_hba.conf rewritten"),
        "{}",
        warden.log_text()
    );
    assert_locked_down(data.path());
    let runtime = format!(
        "postgres://warden_app:{}@127.0.0.1:{}/postgres",
        password(data.path(), "warden_app"),
        cluster_port(data.path())
    );
    assert_eq!(
        psql(&runtime, "SELECT account FROM devices").as_deref(),
        Ok("4242"),
        "the device registered before the upgrade is still there"
    );
    // The daemon works as before: a CLI command beside it adopts the cluster.
    warden.add_device("4243", "contact_id", &[]);
    assert_eq!(
        psql(&runtime, "SELECT count(*) FROM devices").as_deref(),
        Ok("2")
    );

    // The next start finds it converted: same passwords, nothing rewritten, still shut.
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
    let before = password(data.path(), "warden_app");
    warden.restart();
    assert_eq!(
        password(data.path(), "warden_app"),
        before,
        "the passwords are kept"
    );
    assert_eq!(
        warden.log_text().matches("pg_hba.conf rewritten").count(),
        0,
        "a converted cluster is not converted again:\n{}",
        warden.log_text()
    );
    assert_locked_down(data.path());
    assert_eq!(warden.terminate(), Some(0), "{}", warden.log_text());
}

/// Drops the test's roles (after its database, which holds their objects).
struct DropRoles(Vec<String>);

impl Drop for DropRoles {
    fn drop(&mut self) {
        for role in &self.0 {
            let _ = Command::new("psql")
                .args([
                    server_url().as_str(),
                    "-qtAc",
                    &format!("DROP ROLE IF EXISTS {role}"),
                ])
                .output();
        }
    }
}

#[test]
fn with_a_migrate_url_the_owner_migrates_and_the_daemons_role_cannot_change_evidence() {
    let tag = format!("{}_{}", std::process::id(), free_port());
    let (owner, app) = (format!("w_owner_{tag}"), format!("w_app_{tag}"));
    let _roles = DropRoles(vec![app.clone(), owner.clone()]);
    let db = TestDb::create("roles");
    db.query(&format!(
        "CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw'; CREATE ROLE {app} LOGIN PASSWORD 'app-pw'; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT CREATE ON SCHEMA public TO {owner}"
    ));
    let as_role = |role: &str, pw: &str| {
        db.url.replacen(
            "postgres://postgres@",
            &format!("postgres://{role}:{pw}@"),
            1,
        )
    };
    let (app_url, owner_url) = (as_role(&app, "app-pw"), as_role(&owner, "owner-pw"));
    assert_ne!(
        app_url, db.url,
        "the test server's URL names postgres: {}",
        db.url
    );
    let data = tempfile::tempdir().expect("temp dir");
    let wardend = |args: &[&str]| {
        let out = daemon_command()
            .args(args)
            .env("WARDEN_DATABASE__URL", &app_url)
            .env("WARDEN_DATABASE__MIGRATE_URL", &owner_url)
            .env("WARDEN_DATA_DIR", data.path())
            .output()
            .expect("run wardend");
        assert!(
            out.status.success(),
            "wardend {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wardend(&["migrate"]);
    assert_evidence_safe(&app_url, &app, &owner);
    // A start (here a CLI command) grants again and works as the runtime role.
    wardend(&[
        "device",
        "add",
        "--account",
        "5151",
        "--protocol",
        "contact_id",
    ]);
    assert_eq!(
        psql(&app_url, "SELECT account FROM devices").as_deref(),
        Ok("5151")
    );
    drop(db);
}
