//! Signed one-time acknowledgement links: `<public url>/ack/<token>`, where the token is
//! `<page>.<expiry>.<mac>`, the MAC being the first 16 bytes of HMAC-SHA256 over
//! `"ack.<page>.<expiry>"` under a key every wardend process on the database shares
//! (created once, kept in `notify_keys`). Opening the link shows the alarm and a button; only
//! the button's POST acknowledges, so a mail scanner that fetches links acknowledges nothing.
//! A link works once: after its page is acknowledged it only says by whom and when.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use warden_store::Store;

use crate::NotifyError;

/// How long a link works after its page was sent.
pub const TTL_SECS: i64 = 24 * 3600;

/// The name of the link key in `notify_keys`.
const KEY_NAME: &str = "ack_links";

/// Bytes of the MAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this is not a Warden acknowledgement link")]
    Malformed,
    #[error("this link was not signed by this centre")]
    BadSignature,
    #[error("this link has expired; acknowledge in the Warden console")]
    Expired,
}

/// The shared link key (created on first use).
pub async fn key(store: &Store) -> Result<Vec<u8>, NotifyError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| NotifyError::Client(format!("random key: {e}")))?;
    Ok(store.notify_key(KEY_NAME, &fresh).await?)
}

fn mac(key: &[u8], page: i64, expires: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("ack.{page}.{expires}").as_bytes());
    mac
}

/// The token for `page`, valid until Unix time `expires`.
pub fn token(key: &[u8], page: i64, expires: i64) -> String {
    let tag = mac(key, page, expires).finalize().into_bytes();
    format!("{page}.{expires}.{}", hex::encode(&tag[..MAC_BYTES]))
}

/// The page a token acknowledges, if it is genuine and not expired at Unix time `now`.
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<i64, LinkError> {
    let mut parts = token.splitn(3, '.');
    let (Some(page), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(LinkError::Malformed);
    };
    let page: i64 = page.parse().map_err(|_| LinkError::Malformed)?;
    let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| LinkError::Malformed)?;
    if tag.len() != MAC_BYTES {
        return Err(LinkError::Malformed);
    }
    // Constant-time comparison of the truncated tag.
    mac(key, page, expires)
        .verify_truncated_left(&tag)
        .map_err(|_| LinkError::BadSignature)?;
    if now > expires {
        return Err(LinkError::Expired);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires() {
        let t = token(b"k", 12, 1_000);
        assert_eq!(verify(b"k", &t, 999), Ok(12));
        assert_eq!(verify(b"k", &t, 1_000), Ok(12));
        assert_eq!(verify(b"k", &t, 1_001), Err(LinkError::Expired));
    }

    #[test]
    fn a_token_is_bound_to_its_key_page_and_expiry() {
        let t = token(b"k", 12, 1_000);
        assert_eq!(verify(b"other", &t, 0), Err(LinkError::BadSignature));
        let tag = t.rsplit('.').next().unwrap_or_default();
        assert_eq!(
            verify(b"k", &format!("13.1000.{tag}"), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(b"k", &format!("12.2000.{tag}"), 0),
            Err(LinkError::BadSignature)
        );
        for bad in ["", "12", "12.1000", "x.1000.00", "12.1000.zz", "12.1000.00"] {
            assert_eq!(verify(b"k", bad, 0), Err(LinkError::Malformed), "{bad}");
        }
    }
}
