//! Builders shared by the integration tests.
#![allow(dead_code)] // Each test file uses a different subset.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;
use warden_store::{NewQuarantine, NewSignal, Source, WriterConfig};

/// Now, truncated to the microsecond precision Postgres keeps, so read-backs compare equal.
pub fn now_us() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.microsecond() * 1000)
        .expect("microseconds fit in nanoseconds")
}

/// A pendant alarm from a serial receiver, with an optional dedupe key.
pub fn signal(dedupe_key: Option<&str>) -> NewSignal {
    NewSignal {
        id: Uuid::now_v7(),
        source: Source::Serial,
        link_id: "serial:test".to_owned(),
        account: Some("1234".to_owned()),
        device_id: None,
        kind: "event".to_owned(),
        raw: b"5012 18 1234 E101 01 015\x14".to_vec(),
        decoded: json!({"account": "1234", "code": 101, "qualifier": "new", "zone": 15}),
        received_at: now_us(),
        dedupe_key: dedupe_key.map(str::to_owned),
    }
}

/// An undecodable frame.
pub fn quarantine() -> NewQuarantine {
    NewQuarantine {
        id: Uuid::now_v7(),
        source: Source::Serial,
        link_id: "serial:test".to_owned(),
        raw: b"\x00\xffgarbage\x14".to_vec(),
        reason_code: "bad_frame",
        reason: "frame does not start with a receiver number".to_owned(),
        received_at: now_us(),
    }
}

/// A writer whose batching window is wide enough that records sent together share a batch.
pub fn one_batch_config() -> WriterConfig {
    WriterConfig {
        max_wait: Duration::from_millis(300),
        ..WriterConfig::default()
    }
}
