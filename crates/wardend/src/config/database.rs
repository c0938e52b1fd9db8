//! `[database]`: where Postgres is, and how the connection to it is secured.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`. Absent: Warden runs a private cluster in
    /// `data_dir/postgres` from the system's PostgreSQL binaries. Across a network give
    /// `sslmode=verify-full` (with `ca_file`, or `sslrootcert=` in the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate: added to the URL as
    /// `sslrootcert`, with `sslmode=verify-full` unless the URL names a mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Accept a URL that may connect to another machine without TLS (`sslmode` disable,
    /// allow, prefer or none given). Off: such a URL is a configuration error.
    #[serde(default)]
    pub allow_plaintext: bool,
    pub max_connections: u32,
    /// Apply pending migrations at start-up.
    pub auto_migrate: bool,
}

impl DatabaseConfig {
    /// The URL Warden connects with: `url` with `ca_file` applied. `None` without `url`.
    pub fn effective_url(&self) -> Option<String> {
        let url = self.url.as_ref()?.expose();
        let Some(ca) = &self.ca_file else {
            return Some(url.to_owned());
        };
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let mut out = url.to_owned();
        out.push(if url.contains('?') { '&' } else { '?' });
        out.push_str("sslrootcert=");
        out.extend(form_urlencoded::byte_serialize(
            ca.to_string_lossy().as_bytes(),
        ));
        if !query_has(query, "sslmode") {
            out.push_str("&sslmode=verify-full");
        }
        Some(out)
    }

    pub(super) fn check(&self, errors: &mut Vec<String>) {
        let Some(url) = &self.url else {
            if self.ca_file.is_some() {
                errors.push(
                    "database.ca_file: needs database.url (the private cluster is local)".into(),
                );
            }
            return;
        };
        let url = url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errors.push("database.url: must start with postgres:// or postgresql://".into());
            return;
        }
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if let Some(ca) = &self.ca_file {
            if query_has(query, "sslrootcert") {
                errors.push(
                    "database.ca_file: the URL names an sslrootcert too; give one of them".into(),
                );
            }
            match std::fs::read_to_string(ca) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => errors.push(format!(
                    "database.ca_file: {} holds no PEM certificate",
                    ca.display()
                )),
                Err(e) => errors.push(format!(
                    "database.ca_file: cannot read {}: {e}",
                    ca.display()
                )),
            }
        }
        let Some(effective) = self.effective_url() else {
            return;
        };
        match warden_store::plaintext_risk(&effective) {
            Ok(Some(risk)) if !self.allow_plaintext => errors.push(format!(
                "database.url: {risk} may connect without TLS (sqlx falls back to plaintext silently \
                 and checks no certificate): use sslmode=verify-full with database.ca_file (or \
                 sslrootcert= in the URL), or set database.allow_plaintext = true on a trusted network"
            )),
            Ok(_) => {}
            Err(e) => errors.push(format!("database.url: {e}")),
        }
    }
}

/// Whether the URL query `query` has the parameter `name`.
fn query_has(query: &str, name: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name)
}
