//! The signed webhook channel: a page is POSTed as JSON to the person's webhook address,
//! after the escalation pass committed it.
//!
//! Every request carries `Idempotency-Key: warden-page-<id>` (a retry is the same page),
//! `X-Warden-Timestamp` (Unix seconds) and `X-Warden-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of `"<timestamp>.<body>"` under the centre's webhook secret, so a receiver can
//! check the page came from Warden and is fresh. A 2xx answer delivers the page; 408, 429,
//! 5xx, a timeout or a refused connection are temporary and retried with backoff; any other
//! answer (a 404, a 401...) is permanent: retrying would not help, so it fails at once.

use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;
use warden_store::PendingPage;

use crate::channel::{Attempt, classify};
use crate::message::Message;

/// Signs `body` sent at Unix time `timestamp`: the value of `X-Warden-Signature`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this never fails.
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of a page: its fields and its message.
pub fn body(p: &PendingPage, m: &Message, sent_at: OffsetDateTime) -> serde_json::Value {
    json!({
        "page": p.id,
        "incident": p.incident_id,
        "priority": p.priority,
        "kind": p.incident_kind,
        "summary": p.summary,
        "reason": p.reason,
        "step": p.step + 1,
        "round": p.round + 1,
        "text": m.text,
        "ack_url": m.ack_url,
        "sent_at": sent_at.unix_timestamp(),
    })
}

/// Sends one page.
pub async fn post(
    client: &reqwest::Client,
    secret: &[u8],
    timeout: Duration,
    p: &PendingPage,
    m: &Message,
    now: OffsetDateTime,
) -> Attempt {
    let body = body(p, m, now).to_string();
    let timestamp = now.unix_timestamp();
    let sent = client
        .post(&p.address)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("idempotency-key", format!("warden-page-{}", p.id))
        .header("x-warden-timestamp", timestamp.to_string())
        .header(
            "x-warden-signature",
            signature(secret, timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await;
    classify(sent, "the receiver")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Independent value: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
