//! Encryption at rest with the real binary: `wardend rekey` seals client records written
//! before encryption was on, moves every value to a new current key after a rotation,
//! refuses (leaving values as they were) when a value's key is missing, and records each
//! run in the audit trail; without configured keys Warden makes a 0600 key file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use warden_tests::db::TestDb;
use warden_tests::wardend::daemon_command;

const K1: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";
const K2: &str = "1111111111111111222222222222222233333333333333334444444444444444";

fn wardend(config: &Path, args: &[&str]) -> Output {
    daemon_command()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run wardend")
}

fn config(dir: &Path, db: &TestDb, encryption: &str) -> std::path::PathBuf {
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[database]\nurl = \"{}\"\n{encryption}",
            dir.join("data").display(),
            db.url
        ),
    )
    .expect("config");
    path
}

fn stored(db: &TestDb) -> String {
    db.query("SELECT medical_notes || ' | ' || key_safe FROM clients ORDER BY id")
}

#[test]
fn rekey_seals_old_records_rotates_keys_and_refuses_without_the_old_key() {
    let db = TestDb::create("rekey");
    let dir = tempfile::tempdir().expect("dir");
    let k1 = format!("[encryption]\ncurrent = \"k1\"\n[encryption.keys]\nk1 = \"{K1}\"\n");
    let cfg = config(dir.path(), &db, &k1);
    let out = wardend(&cfg, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A record written before encryption was on.
    db.query(
        "INSERT INTO clients (external_ref, name, medical_notes, key_safe) \
         VALUES ('C-1', 'Ada Old', 'Angina; lives alone', '4821')",
    );

    let out = wardend(&cfg, &["rekey"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 clients, 2 values sealed under key k1"),
        "{said}"
    );
    let row = stored(&db);
    assert!(
        row.starts_with("enc:v1:k1:") && row.contains(" | enc:v1:k1:"),
        "{row}"
    );
    assert!(!row.contains("Angina") && !row.contains("4821"), "{row}");

    // Rotation: k2 becomes current, k1 stays known.
    let both = format!(
        "[encryption]\ncurrent = \"k2\"\n[encryption.keys]\nk1 = \"{K1}\"\nk2 = \"{K2}\"\n"
    );
    let cfg = config(dir.path(), &db, &both);
    let out = wardend(&cfg, &["rekey", "--batch", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stored(&db);
    assert!(
        row.starts_with("enc:v1:k2:") && row.contains(" | enc:v1:k2:"),
        "{row}"
    );
    // print-config never shows a key.
    let out = wardend(&cfg, &["print-config"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains(K1) && !shown.contains(K2), "{shown}");

    // Without the key the values were sealed with: refused, nothing changed.
    let k3 = "[encryption]\ncurrent = \"k3\"\n[encryption.keys]\nk3 = \"3333333333333333333333333333333333333333333333333333333333333333\"\n";
    let cfg = config(dir.path(), &db, k3);
    let out = wardend(&cfg, &["rekey"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not be opened"), "{err}");
    assert_eq!(stored(&db), row);

    assert_eq!(
        db.count("SELECT count(*) FROM audit WHERE action = 'encryption.rekey'"),
        3
    );
}

#[test]
fn without_configured_keys_warden_makes_a_private_key_file_and_seals_with_it() {
    let db = TestDb::create("rekey_file");
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), &db, "");
    assert!(wardend(&cfg, &["migrate"]).status.success());
    db.query(
        "INSERT INTO clients (external_ref, name, medical_notes, key_safe) \
         VALUES ('C-1', 'Ada Old', 'Angina', '4821')",
    );
    let out = wardend(&cfg, &["rekey"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("data/encryption.keys");
    let mode = std::fs::metadata(&file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(stored(&db).starts_with("enc:v1:local-1:"));
    // The same file next time: nothing left to do.
    let out = wardend(&cfg, &["rekey"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 values sealed"));
}
