//! What a database URL promises about its connection's security, read the way sqlx will
//! read it (its `sslmode`, `sslrootcert`, host and socket, and the `PG*` environment
//! variables sqlx honours).
//!
//! sqlx's default `sslmode` is `prefer`: TLS if the server offers it, plaintext otherwise,
//! silently, and without checking whose certificate it is. Across a network that means a
//! password and every alarm in clear for whoever can answer in the server's place.

use std::net::IpAddr;
use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The URL's connection may go unencrypted (or unauthenticated) to another machine: a
/// description for the configuration error, e.g. `sslmode=prefer to db.example`.
/// `Ok(None)` for a Unix socket, a loopback host or an `sslmode` of `require`,
/// `verify-ca` or `verify-full`. `Err`: the URL does not parse.
pub fn plaintext_risk(url: &str) -> Result<Option<String>, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?;
    let host = opts.get_host();
    if opts.get_socket().is_some() || host.starts_with('/') || is_loopback(host) {
        return Ok(None);
    }
    let mode = match opts.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => return Ok(None),
    };
    Ok(Some(format!("sslmode={mode} to {host}")))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::plaintext_risk;

    #[test]
    fn only_a_network_url_that_may_fall_back_to_plaintext_is_a_risk() {
        for (url, risk) in [
            (
                "postgres://w@db.example/w",
                Some("sslmode=prefer to db.example"),
            ),
            (
                "postgres://w@db.example/w?sslmode=disable",
                Some("sslmode=disable to db.example"),
            ),
            (
                "postgres://w@10.0.0.5:5433/w?sslmode=allow",
                Some("sslmode=allow to 10.0.0.5"),
            ),
            ("postgres://w@db.example/w?sslmode=require", None),
            (
                "postgres://w@db.example/w?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                None,
            ),
            ("postgres://w@127.0.0.1:5432/w", None),
            ("postgres://w@localhost/w?sslmode=disable", None),
            ("postgres://w@[::1]/w", None),
            ("postgres://w@db.example/w?host=/var/run/postgresql", None),
        ] {
            assert_eq!(
                plaintext_risk(url).expect("parses").as_deref(),
                risk,
                "{url}"
            );
        }
    }
}
