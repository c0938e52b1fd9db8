//! Files only their owner may read, for the secrets Warden generates itself (the private
//! cluster's passwords, the encryption key file).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;

/// Creates `path` with mode 0600 and `text`, synced to disk; an error if it exists already
/// (a secret is never overwritten by accident).
pub fn create(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
