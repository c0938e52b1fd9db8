//! Postgres over TLS with `sslmode=verify-full`, against a private cluster that admits TCP
//! clients over TLS only: the CA that signed the server's certificate lets Warden in (and
//! the session is encrypted), another CA is refused before any password or query is sent,
//! and a plaintext connection is refused by the server.

use warden_store::Store;
use warden_tests::PrivatePg;
use warden_tests::certs::Ca;

#[tokio::test]
async fn verify_full_connects_with_the_servers_ca_and_refuses_another_ca_and_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "pg");
    let other = Ca::new(dir.path(), "other");
    let server = ca.issue("pg-server", &["DNS:localhost", "IP:127.0.0.1"]);
    let pg = PrivatePg::start_tls(&server);
    let url = |query: &str| format!("{}?{query}", pg.url);

    let store = Store::connect(
        &url(&format!(
            "sslmode=verify-full&sslrootcert={}",
            ca.cert.display()
        )),
        1,
    )
    .await
    .expect("verify-full with the server's CA connects");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the session is not encrypted");

    let wrong = Store::connect(
        &url(&format!(
            "sslmode=verify-full&sslrootcert={}",
            other.cert.display()
        )),
        1,
    )
    .await
    .expect_err("a certificate from another CA is refused");
    assert!(
        wrong.to_string().to_lowercase().contains("certificate"),
        "{wrong}"
    );

    let plain = Store::connect(&url("sslmode=disable"), 1)
        .await
        .expect_err("a plaintext connection is refused by pg_hba (hostssl only)");
    assert!(plain.to_string().contains("pg_hba.conf"), "{plain}");
}
