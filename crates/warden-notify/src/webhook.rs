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

/// Most attempts per page, the first included.
pub const MAX_ATTEMPTS: i32 = 6;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it.
    Delivered(u16),
    /// Worth trying again.
    Temporary(String),
    /// Trying again would not help.
    Permanent(String),
}

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

/// The message of a page, in plain English with the reference and what to do.
pub fn message(p: &PendingPage, sent_at: OffsetDateTime) -> serde_json::Value {
    let priority = p.priority.as_deref().unwrap_or("unknown").replace('_', "-");
    let kind = p
        .incident_kind
        .as_deref()
        .unwrap_or("alarm")
        .replace('_', " ");
    let why = match p.reason.as_str() {
        "reminder" => "Reminder: you acknowledged this alarm and it is still open.",
        "fallback" => "Nobody else could be reached for this alarm.",
        _ => "Nobody in the control room has answered this alarm in time.",
    };
    let text = format!(
        "Warden alarm #{incident}: {priority} {kind}{summary}. {why} Open the Warden console \
         (My pages) and acknowledge, then call the control room.",
        incident = p.incident_id,
        summary = p
            .summary
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
    );
    json!({
        "page": p.id,
        "incident": p.incident_id,
        "priority": p.priority,
        "kind": p.incident_kind,
        "summary": p.summary,
        "reason": p.reason,
        "step": p.step + 1,
        "round": p.round + 1,
        "text": text,
        "sent_at": sent_at.unix_timestamp(),
    })
}

/// Sends one page.
pub async fn post(
    client: &reqwest::Client,
    secret: &[u8],
    timeout: Duration,
    p: &PendingPage,
    now: OffsetDateTime,
) -> Attempt {
    let body = message(p, now).to_string();
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
    match sent {
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                Attempt::Delivered(status.as_u16())
            } else if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                Attempt::Temporary(format!("receiver answered {status}"))
            } else {
                Attempt::Permanent(format!("receiver answered {status}"))
            }
        }
        Err(e) if e.is_builder() => Attempt::Permanent(format!("not a usable address: {e}")),
        Err(e) => Attempt::Temporary(format!("could not reach the receiver: {e}")),
    }
}

/// How long to wait before attempt `attempts + 1`: 5 s doubling, at most 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let shift = u32::try_from(attempts.clamp(0, 6)).unwrap_or(6);
    Duration::from_secs(5 << shift).min(Duration::from_mins(5))
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

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
