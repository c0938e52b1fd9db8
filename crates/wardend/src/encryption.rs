//! Keys for the encryption at rest of key-safe codes and medical notes
//! (`warden_store::seal`): from `[encryption]` in the configuration (or the environment,
//! `WARDEN_ENCRYPTION__KEYS__<ID>`), else from a key file Warden generates in the data
//! directory on first start (mode 0600). `wardend rekey` re-seals every value under the
//! current key after a rotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use warden_store::seal::{self, Sealer};

use crate::config::{Config, Secret};

/// `[encryption]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionSection {
    /// The id of the key new values are sealed with (may be left out when there is one key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Key id → 32-byte key as 64 hex digits or base64. Keep a retired key here for as long
    /// as the audit trail sealed with it must stay readable.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Secret>,
    /// Where the generated key file is kept when `keys` is empty; default
    /// `<data_dir>/encryption.keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl EncryptionSection {
    /// The configured keys as a sealer; `None` when no keys are configured.
    pub fn configured(&self) -> Result<Option<Sealer>, String> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let current = match (&self.current, self.keys.len()) {
            (Some(c), _) => c.clone(),
            (None, 1) => self.keys.keys().next().cloned().unwrap_or_default(),
            (None, _) => {
                return Err("encryption.current: name the key new values are sealed with".into());
            }
        };
        Sealer::new(
            &current,
            self.keys.iter().map(|(id, k)| (id.as_str(), k.expose())),
        )
        .map(Some)
        .map_err(|e| format!("encryption: {e}"))
    }

    fn key_file(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("encryption.keys"))
    }
}

/// The key file's contents: `current = "<id>"` then one `<id> = "<hex>"` per key.
#[derive(Debug, Deserialize, Serialize)]
struct KeyFile {
    current: String,
    keys: BTreeMap<String, String>,
}

/// This process's sealer: the configured keys, else the key file (made on first use).
pub fn sealer(cfg: &Config) -> anyhow::Result<Sealer> {
    if let Some(s) = cfg.encryption.configured().map_err(anyhow::Error::msg)? {
        return Ok(s);
    }
    let path = cfg.encryption.key_file(&cfg.data_dir);
    if !path.exists() {
        create_key_file(&path)?;
        tracing::warn!(path = %path.display(), "generated an encryption key for key-safe codes and medical notes; back it up apart from the database (without it they cannot be read), or give keys in [encryption]");
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the encryption key file {}", path.display()))?;
    let file: KeyFile = toml::from_str(&text)
        .with_context(|| format!("the encryption key file {} is not valid", path.display()))?;
    Sealer::new(
        &file.current,
        file.keys.iter().map(|(id, k)| (id.as_str(), k.as_str())),
    )
    .with_context(|| format!("the encryption key file {}", path.display()))
}

fn create_key_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = seal::generate_key().map_err(anyhow::Error::msg)?;
    let file = KeyFile {
        current: "local-1".into(),
        keys: BTreeMap::from([("local-1".to_owned(), key)]),
    };
    let text = toml::to_string(&file).context("writing the encryption key file")?;
    crate::private_file::create(path, &text).context("creating the encryption key file")
}

/// Installs this process's keys (once per process).
pub fn install(cfg: &Config) -> anyhow::Result<()> {
    if seal::installed().is_some() {
        return Ok(());
    }
    let s = sealer(cfg)?;
    tracing::info!(current = s.current(), "encryption at rest: keys installed");
    // A race with another installer leaves the first: both came from this configuration.
    let _ = seal::install(s);
    Ok(())
}

/// `wardend rekey`: re-seals every client's key-safe code and medical notes under the
/// current key; recorded in the audit trail.
pub async fn rekey(cfg: &Config, store: &warden_store::Store, batch: i64) -> anyhow::Result<()> {
    let s = sealer(cfg)?;
    let done = store
        .rekey_clients(&s, batch)
        .await
        .context("re-sealing client records")?;
    store
        .audit(&warden_store::AuditWrite {
            action: "encryption.rekey".into(),
            object_type: "clients".into(),
            after: Some(serde_json::json!({
                "current": s.current(),
                "clients": done.clients,
                "resealed": done.resealed,
                "unreadable": done.unreadable,
            })),
            ..warden_store::AuditWrite::default()
        })
        .await
        .context("recording the rekey in the audit trail")?;
    println!(
        "rekey: {} clients, {} values sealed under key {}, {} unreadable",
        done.clients,
        done.resealed,
        s.current(),
        done.unreadable
    );
    if done.unreadable > 0 {
        anyhow::bail!(
            "{} values could not be opened with the configured keys and were left as they were: put the key they were sealed with back in [encryption] keys and run rekey again",
            done.unreadable
        );
    }
    Ok(())
}
