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

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use warden_store::Store;

#[cfg(feature = "embedded-broker")]
mod login;
#[cfg(feature = "embedded-broker")]
pub use login::{Hook, SERVICE_USER, hook, issue_service_password};

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
        .device_by_account(account)
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
