//! Key-safe codes and medical notes are encrypted at rest (AES-256-GCM with key ids): the
//! table and the audit trail hold only sealed text, readers get the plaintext, and `rekey`
//! moves every value to the current key.

use sqlx::PgPool;
use warden_store::seal::{self, Sealer};
use warden_store::{AuditWrite, ClientRecord, KeySafeReveal, Store};

const K1: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
const K2: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// This test binary's keys: k1 current, k2 known (as after a rotation is configured).
fn keys() {
    let _ = seal::install(Sealer::new("k1", [("k1", K1), ("k2", K2)]).expect("keys"));
}

fn record(external_ref: &str) -> ClientRecord {
    ClientRecord {
        external_ref: external_ref.into(),
        name: "Agnes Sealed".into(),
        language: "English".into(),
        preferred_contact: "phone".into(),
        medical_notes: "Type 2 diabetes; allergic to penicillin".into(),
        ..ClientRecord::default()
    }
}

fn audit(action: &str) -> AuditWrite {
    AuditWrite {
        action: action.into(),
        object_type: "client".into(),
        ..AuditWrite::default()
    }
}

async fn raw(pool: &PgPool, id: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT medical_notes, key_safe FROM clients WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row")
}

#[sqlx::test(migrations = "./migrations")]
async fn key_safe_codes_and_medical_notes_are_sealed_in_the_table_and_the_audit_trail(
    pool: PgPool,
) {
    keys();
    let store = Store::from_pool(pool.clone());
    let saved = store
        .save_client(
            None,
            &record("C-1"),
            Some("K7#4471"),
            Some(&[]),
            audit("client.create"),
        )
        .await
        .expect("save");
    assert_eq!(
        saved.medical_notes,
        "Type 2 diabetes; allergic to penicillin"
    );
    let (notes, code) = raw(&pool, saved.id).await;
    assert!(
        notes.starts_with("enc:v1:k1:") && !notes.contains("diabetes"),
        "{notes}"
    );
    let code = code.expect("a code");
    assert!(
        code.starts_with("enc:v1:k1:") && !code.contains("4471"),
        "{code}"
    );
    // Readers get the plaintext.
    let read = store.client(saved.id).await.expect("read").expect("found");
    assert_eq!(
        read.medical_notes,
        "Type 2 diabetes; allergic to penicillin"
    );
    let shown = store
        .reveal_key_safe(saved.id, audit("client.key_safe.reveal"), 10)
        .await
        .expect("reveal");
    assert_eq!(shown, KeySafeReveal::Shown(Some("K7#4471".into())));
    // The audit trail keeps the notes sealed; its readers see them opened.
    let trail: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT after FROM audit WHERE action = 'client.create'")
            .fetch_all(&pool)
            .await
            .expect("audit");
    let text = serde_json::to_string(&trail).expect("json");
    assert!(
        !text.contains("diabetes") && !text.contains("4471"),
        "{text}"
    );
    let lines = store
        .audit_list(Some("client"), None, None, 10)
        .await
        .expect("audit list");
    let created = lines
        .iter()
        .find(|l| l.action == "client.create")
        .expect("create line");
    assert_eq!(
        created.after.as_ref().expect("after")["medical_notes"],
        "Type 2 diabetes; allergic to penicillin"
    );

    // The CSV import seals too.
    store
        .import_clients(
            &[(record("C-2"), Some("9911".into()))],
            &audit("import.clients"),
            true,
        )
        .await
        .expect("import");
    let id2: i64 = sqlx::query_scalar("SELECT id FROM clients WHERE external_ref = 'C-2'")
        .fetch_one(&pool)
        .await
        .expect("id");
    let (notes, code) = raw(&pool, id2).await;
    assert!(notes.starts_with("enc:v1:k1:"), "{notes}");
    assert!(code.is_some_and(|c| c.starts_with("enc:v1:k1:")));
    let all = store.all_clients().await.expect("all");
    assert!(
        all.iter()
            .any(|(c, k)| c.external_ref == "C-2" && k.as_deref() == Some("9911"))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn rekey_moves_old_and_plaintext_values_to_the_current_key(pool: PgPool) {
    keys();
    let store = Store::from_pool(pool.clone());
    let sealed = store
        .save_client(
            None,
            &record("C-1"),
            Some("1234"),
            Some(&[]),
            audit("client.create"),
        )
        .await
        .expect("save");
    // A row written before encryption was on.
    let legacy: i64 = sqlx::query_scalar(
        "INSERT INTO clients (external_ref, name, medical_notes, key_safe) \
         VALUES ('C-OLD', 'Old Plaintext', 'Asthma', '0000') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("legacy row");
    let read = store.client(legacy).await.expect("read").expect("found");
    assert_eq!(read.medical_notes, "Asthma", "plaintext reads as it is");

    let rotated = Sealer::new("k2", [("k1", K1), ("k2", K2)]).expect("keys");
    let done = store.rekey_clients(&rotated, 1).await.expect("rekey");
    assert_eq!((done.clients, done.resealed, done.unreadable), (2, 4, 0));
    for id in [sealed.id, legacy] {
        let (notes, code) = raw(&pool, id).await;
        assert!(notes.starts_with("enc:v1:k2:"), "{notes}");
        assert!(code.is_some_and(|c| c.starts_with("enc:v1:k2:")));
    }
    assert_eq!(
        store
            .client(legacy)
            .await
            .expect("read")
            .expect("found")
            .medical_notes,
        "Asthma"
    );
    assert_eq!(
        store
            .reveal_key_safe(sealed.id, audit("client.key_safe.reveal"), 10)
            .await
            .expect("reveal"),
        KeySafeReveal::Shown(Some("1234".into()))
    );
    // Nothing left to do the second time.
    let again = store.rekey_clients(&rotated, 100).await.expect("rekey");
    assert_eq!((again.clients, again.resealed), (2, 0));
    // A value whose key is not configured is left as it was and counted.
    let only_k3 = Sealer::new(
        "k3",
        [(
            "k3",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        )],
    )
    .expect("keys");
    let lost = store.rekey_clients(&only_k3, 100).await.expect("rekey");
    assert_eq!(lost.unreadable, 4);
    assert!(raw(&pool, legacy).await.0.starts_with("enc:v1:k2:"));
}
