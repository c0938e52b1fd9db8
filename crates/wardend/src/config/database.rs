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
    /// With `url`: the schema owner's `postgres://` URL. Migrations then run as the owner,
    /// which at every start grants `url`'s role (one that owns nothing) what the daemon
    /// needs, reading and inserting only on the append-only tables. Absent: `url`'s role
    /// migrates and owns the tables. (The private cluster has its own two roles.) The same
    /// TLS rules and `ca_file` apply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate_url: Option<Secret>,
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
        Some(self.with_ca(self.url.as_ref()?.expose()))
    }

    /// The schema owner's URL (`migrate_url`) with `ca_file` applied.
    pub fn effective_migrate_url(&self) -> Option<String> {
        Some(self.with_ca(self.migrate_url.as_ref()?.expose()))
    }

    fn with_ca(&self, url: &str) -> String {
        let Some(ca) = &self.ca_file else {
            return url.to_owned();
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
        out
    }

    pub(super) fn check(&self, errors: &mut Vec<String>) {
        let Some(url) = &self.url else {
            if self.ca_file.is_some() {
                errors.push(
                    "database.ca_file: needs database.url (the private cluster is local)".into(),
                );
            }
            if self.migrate_url.is_some() {
                errors.push(
                    "database.migrate_url: only with database.url (the private cluster has its \
                     own owner role)"
                        .into(),
                );
            }
            return;
        };
        if let Some(ca) = &self.ca_file {
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
        self.check_url("database.url", url.expose(), errors);
        if let Some(owner) = &self.migrate_url {
            self.check_url("database.migrate_url", owner.expose(), errors);
        }
    }

    /// One of the two URLs (`key` names it in errors): its scheme, `ca_file` beside an
    /// `sslrootcert`, and whether it may travel in plaintext.
    fn check_url(&self, key: &str, url: &str, errors: &mut Vec<String>) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errors.push(format!(
                "{key}: must start with postgres:// or postgresql://"
            ));
            return;
        }
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if self.ca_file.is_some() && query_has(query, "sslrootcert") {
            errors.push(format!(
                "database.ca_file: {key} names an sslrootcert too; give one of them"
            ));
        }
        match warden_store::plaintext_risk(&self.with_ca(url)) {
            Ok(Some(risk)) if !self.allow_plaintext => errors.push(format!(
                "{key}: {risk} may connect without TLS (sqlx falls back to plaintext silently \
                 and checks no certificate): use sslmode=verify-full with database.ca_file (or \
                 sslrootcert= in the URL), or set database.allow_plaintext = true on a trusted network"
            )),
            Ok(_) => {}
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
}

/// Whether the URL query `query` has the parameter `name`.
fn query_has(query: &str, name: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name)
}
