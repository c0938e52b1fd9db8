//! Logins to the embedded broker (rumqttd), checked by its authentication hook against the
//! `mqtt_credentials` table.
//!
//! What rumqttd 0.20 lets Warden enforce, and what not:
//! - Enforced at CONNECT (rumqttd's `external_auth` hook gets client id, user name and
//!   password): no anonymous client; the password must match the stored argon2id hash; a
//!   unit's client id must equal its user name (its device id), so no unit can take over
//!   another unit's session; Warden's service credential may connect only with Warden's
//!   client id, and no other login may use that id, so nobody takes Warden's session.
//! - Not enforced: which topics a logged-in client publishes on. rumqttd has no topic ACL
//!   (its only publish restriction, tenant prefixes, needs client certificates) and does not
//!   tell subscribers who published, so a unit holding valid credentials can still publish
//!   on another unit's topic. Production uses Mosquitto with `deploy/mosquitto/acl.example`,
//!   which does enforce it (`pattern write warden/v1/devices/%u/up`).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{Semaphore, mpsc, oneshot};
use warden_store::Store;

/// Warden's own user name on the embedded broker.
pub const SERVICE_USER: &str = "warden";

/// argon2id with 8 MiB and one pass: the passwords are 128-bit random strings, so the hash
/// only has to stop a stolen table from being read back, and a reconnect storm of
/// thousands of units must not take seconds of CPU each.
fn hasher() -> Argon2<'static> {
    let params = Params::new(8 * 1024, 1, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A fresh random password (128 bits, hex).
pub fn generate_password() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(format!("{:032x}", u128::from_le_bytes(b)))
}

/// The argon2id PHC string for `password`.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

/// Generates, stores (hashed) and returns a unit's broker password.
pub async fn issue_device_password(store: &Store, account: &str) -> anyhow::Result<String> {
    let device = store
        .device_identity(account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no device with account {account:?}"))?;
    if device.protocol != warden_store::DeviceProtocol::Mqtt {
        anyhow::bail!(
            "{account} is registered for {}: broker logins are for mqtt units",
            device.protocol
        );
    }
    let password = generate_password()?;
    store
        .set_mqtt_credential(account, Some(device.id), &hash(&password)?)
        .await?;
    Ok(password)
}

/// Generates and stores Warden's service password for this run of the embedded broker.
pub async fn issue_service_password(store: &Store) -> anyhow::Result<String> {
    let password = generate_password()?;
    store
        .set_mqtt_credential(SERVICE_USER, None, &hash(&password)?)
        .await?;
    Ok(password)
}

/// Whether a login may connect. `stored` is the credential of `user`, if any.
fn allowed(
    stored: Option<&warden_store::MqttCredential>,
    service_client_id: &str,
    client_id: &str,
    user: &str,
    password: &str,
) -> bool {
    let Some(cred) = stored else { return false };
    let id_ok = match cred.device_id {
        // A unit connects as itself: client id = user name = device id.
        Some(_) => client_id == user && client_id != service_client_id,
        None => client_id == service_client_id,
    };
    id_ok
        && PasswordHash::new(&cred.password_hash)
            .is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

struct Request {
    client_id: String,
    user: String,
    password: String,
    answer: oneshot::Sender<bool>,
}

/// rumqttd's authentication hook type.
pub type Hook = Box<dyn Fn(String, String, String) -> HookFuture + Send + Sync>;
type HookFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// Most logins checked at once (each is an argon2 hash on a blocking thread).
const CONCURRENT_CHECKS: usize = 4;

/// Starts the checker on the current runtime and returns the hook for rumqttd, which runs
/// it on the broker's own runtime: the two talk over channels, so the database pool stays
/// on the runtime that owns it.
pub fn hook(store: Store, service_client_id: String) -> Hook {
    let (tx, mut rx) = mpsc::channel::<Request>(1024);
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(CONCURRENT_CHECKS));
        while let Some(req) = rx.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let (store, service) = (store.clone(), service_client_id.clone());
            tokio::spawn(async move {
                let Request {
                    client_id,
                    user,
                    password,
                    answer,
                } = req;
                let ok = match store.mqtt_credential(&user).await {
                    Ok(cred) => {
                        let (c, u) = (client_id.clone(), user.clone());
                        tokio::task::spawn_blocking(move || {
                            allowed(cred.as_ref(), &service, &c, &u, &password)
                        })
                        .await
                        .unwrap_or(false)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "broker login check failed; refusing");
                        false
                    }
                };
                if !ok {
                    tracing::warn!(%user, %client_id, "embedded broker refused a login");
                }
                let _ = answer.send(ok);
                drop(permit);
            });
        }
    });
    Box::new(move |client_id, user, password| {
        let tx = tx.clone();
        Box::pin(async move {
            let (answer, rx) = oneshot::channel();
            let req = Request {
                client_id,
                user,
                password,
                answer,
            };
            tx.send(req).await.is_ok() && rx.await.unwrap_or(false)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_needs_the_password_and_the_client_id_that_belongs_to_it() {
        let pw = generate_password().expect("pw");
        assert_eq!(pw.len(), 32);
        let unit = warden_store::MqttCredential {
            username: "u42".into(),
            device_id: Some(7),
            password_hash: hash(&pw).expect("hash"),
        };
        let service = warden_store::MqttCredential {
            username: SERVICE_USER.into(),
            device_id: None,
            password_hash: hash("svc").expect("hash"),
        };
        let warden_id = "warden-0123456789abcdef";
        assert!(allowed(Some(&unit), warden_id, "u42", "u42", &pw));
        assert!(!allowed(Some(&unit), warden_id, "u42", "u42", "wrong"));
        assert!(
            !allowed(None, warden_id, "u42", "u42", &pw),
            "no credential"
        );
        assert!(
            !allowed(Some(&unit), warden_id, "u43", "u42", &pw),
            "a unit may not use another unit's client id"
        );
        assert!(
            !allowed(Some(&unit), warden_id, warden_id, "u42", &pw),
            "a unit may not use Warden's client id"
        );
        assert!(allowed(
            Some(&service),
            warden_id,
            warden_id,
            "warden",
            "svc"
        ));
        assert!(
            !allowed(Some(&service), warden_id, "u42", "warden", "svc"),
            "the service login is only for Warden's client id"
        );
    }
}
