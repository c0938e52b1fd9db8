//! Shared by the load benches (included with `#[path]`): signals read back from Postgres as
//! the rows `raw_copy` writes, for the raw-COPY ceiling each run is measured against.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use warden_store::{NewSignal, Source};

/// The start of a query whose rows [`signal_from_json`] reads (one `row_to_json` per
/// signal): add the `WHERE`/`ORDER BY` and close with `) t`.
pub const SIGNAL_JSON: &str = "SELECT row_to_json(t) FROM (SELECT source, link_id, account, \
    device_id, kind, encode(raw, 'hex') AS raw, decoded, \
    (extract(epoch FROM received_at) * 1000000)::bigint AS received_us FROM signals";

/// One row of a [`SIGNAL_JSON`] query as a new signal (a fresh id, no dedupe key).
pub fn signal_from_json(line: &str) -> NewSignal {
    let v: Value = serde_json::from_str(line).expect("row_to_json output");
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    let micros = v["received_us"].as_i64().expect("received_us");
    NewSignal {
        id: Uuid::now_v7(),
        source: text("source")
            .as_deref()
            .and_then(|s| s.parse::<Source>().ok())
            .expect("source"),
        link_id: text("link_id").expect("link_id"),
        account: text("account"),
        device_id: v["device_id"].as_i64(),
        kind: text("kind").expect("kind"),
        raw: hex::decode(text("raw").expect("raw")).expect("hex raw"),
        decoded: v["decoded"].clone(),
        received_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .expect("received_at"),
        dedupe_key: None,
    }
}
