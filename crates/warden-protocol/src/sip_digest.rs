//! SIP digest authentication (RFC 3261 §22, with the computation of RFC 2617 §3.2.2, MD5,
//! `qop=auth` or none): how a SCAIP unit proves it is the unit its `cid` names.
//!
//! The receiver answers an unauthenticated request `401` with a challenge
//! ([`challenge`]); the unit sends it again with an `Authorization` header whose `response`
//! is `MD5(HA1:nonce[:nc:cnonce:qop]:HA2)`, `HA1 = MD5(user:realm:password)`, `HA2 =
//! MD5(method:uri)`. Warden keeps only HA1 per unit. Nonces are stateless: the time they
//! were issued and an HMAC-SHA256 of it under a key of the receiver's, so any nonce Warden
//! did not issue, or issued too long ago, is refused without a table of nonces. Pure.

use hmac::{Hmac, KeyInit as _, Mac as _};
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The realm of Warden's challenges.
pub const REALM: &str = "warden";

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `HA1 = MD5(user:realm:password)`, what Warden stores for a unit.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&[user, realm, password])
}

fn mac(key: &[u8], issued: u64) -> String {
    let mut m = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(&issued.to_be_bytes());
    hex::encode(&m.finalize().into_bytes()[..12])
}

/// A nonce issued at `now` (seconds since the epoch) under `key`.
pub fn nonce(key: &[u8], now: u64) -> String {
    format!("{now:x}.{}", mac(key, now))
}

/// Whether `nonce` was issued under `key` no more than `max_age` seconds before `now`.
pub fn nonce_fresh(key: &[u8], nonce: &str, now: u64, max_age: u64) -> bool {
    let Some((issued, tag)) = nonce.split_once('.') else {
        return false;
    };
    let Ok(issued) = u64::from_str_radix(issued, 16) else {
        return false;
    };
    issued <= now
        && now - issued <= max_age
        && constant_eq(tag.as_bytes(), mac(key, issued).as_bytes())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `WWW-Authenticate` value of a challenge with `nonce`.
pub fn challenge(nonce: &str) -> String {
    format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
}

/// The parameters of an `Authorization: Digest …` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

/// Reads an `Authorization` header value; `None` when it is not a digest.
pub fn parse(header: &str) -> Option<Credentials> {
    let rest = header.trim();
    let rest = rest
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("digest "))
        .map(|_| &rest[7..])?;
    let mut c = Credentials::default();
    let mut s = rest;
    loop {
        s = s.trim_start_matches([' ', ',', '\t']);
        if s.is_empty() {
            break;
        }
        let (name, after) = s.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        let v = value.to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "username" => c.username = v,
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "uri" => c.uri = v,
            "response" => c.response = v.to_ascii_lowercase(),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "algorithm" => c.algorithm = Some(v),
            _ => {}
        }
        s = next;
    }
    (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
}

/// Whether `c` answers its nonce for `method` with the password whose HA1 is `ha1`.
pub fn verify(c: &Credentials, method: &str, ha1: &str) -> bool {
    if c.algorithm
        .as_deref()
        .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
    {
        return false;
    }
    let ha2 = md5_hex(&[method, &c.uri]);
    let expected = match (&c.qop, &c.nc, &c.cnonce) {
        (Some(q), Some(nc), Some(cnonce)) if q == "auth" => {
            md5_hex(&[&ha1.to_ascii_lowercase(), &c.nonce, nc, cnonce, q, &ha2])
        }
        (None, _, _) => md5_hex(&[&ha1.to_ascii_lowercase(), &c.nonce, &ha2]),
        _ => return false,
    };
    constant_eq(expected.as_bytes(), c.response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's worked example.
    #[test]
    fn the_rfc_2617_example_verifies() {
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse(header).expect("a digest");
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        let h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert!(verify(&c, "GET", &h));
        assert!(!verify(&c, "POST", &h), "the method is part of it");
        assert!(!verify(
            &c,
            "GET",
            &ha1("Mufasa", "testrealm@host.com", "circle of life")
        ));
    }

    #[test]
    fn nonces_are_warden_s_own_and_expire() {
        let key = b"0123456789abcdef";
        let n = nonce(key, 1_000_000);
        assert!(nonce_fresh(key, &n, 1_000_100, 300));
        assert!(!nonce_fresh(key, &n, 1_000_400, 300), "expired");
        assert!(
            !nonce_fresh(b"another key.....", &n, 1_000_100, 300),
            "not ours"
        );
        assert!(!nonce_fresh(
            key,
            "f4240.000000000000000000000000",
            1_000_100,
            300
        ));
        assert!(!nonce_fresh(key, "garbage", 1_000_100, 300));
        assert!(challenge(&n).contains(&format!("nonce=\"{n}\"")));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,300}") {
            if let Some(c) = parse(&s) {
                let _ = verify(&c, "MESSAGE", "00");
            }
            let _ = nonce_fresh(b"k", &s, 5, 5);
        }
    }
}
