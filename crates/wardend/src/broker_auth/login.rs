//! The embedded broker's login check: its authentication hook against `mqtt_credentials`.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use tokio::sync::{Semaphore, mpsc, oneshot};
use warden_store::Store;

use super::{generate_password, hash, hasher};

/// Warden's own user name on the embedded broker.
pub const SERVICE_USER: &str = "warden";

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
