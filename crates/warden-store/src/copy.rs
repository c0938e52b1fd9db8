//! Raw `COPY` of signals: the throughput ceiling the group-commit writer is measured against.

use std::io::Write;
use std::time::{Duration, Instant};

use time::UtcOffset;

use crate::error::StoreError;
use crate::model::NewSignal;
use crate::store::Store;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes buffered before each `CopyData` message.
const CHUNK: usize = 1 << 20;

/// Stores `rows` with one `COPY signals (...) FROM STDIN` (text format) on one connection and
/// returns how long it took, encoding included.
///
/// For benchmarks only: there is no dedupe handling (dedupe keys are stored as given and
/// never claimed in `dedupe`), no per-row outcome, and nothing waits on it for an ACK.
pub async fn raw_copy(store: &Store, rows: &[NewSignal]) -> Result<Duration, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY signals (id, source, link_id, account, device_id, kind, raw, decoded, \
             received_at, dedupe_key) FROM STDIN",
        )
        .await?;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    for row in rows {
        encode_row(&mut buf, row).map_err(sqlx::Error::Io)?;
        if buf.len() >= CHUNK {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await?;
    }
    copy.finish().await?;
    Ok(started.elapsed())
}

/// One line of `COPY ... FROM STDIN` text format.
fn encode_row(buf: &mut Vec<u8>, row: &NewSignal) -> std::io::Result<()> {
    write!(buf, "{}\t{}\t", row.id, row.source.as_str())?;
    text(buf, &row.link_id);
    buf.push(b'\t');
    optional_text(buf, row.account.as_deref());
    buf.push(b'\t');
    match row.device_id {
        Some(id) => write!(buf, "{id}")?,
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.push(b'\t');
    text(buf, &row.kind);
    buf.push(b'\t');
    // bytea hex input `\x0a0b`, with the backslash escaped for the COPY text format.
    buf.extend_from_slice(b"\\\\x");
    for &byte in &row.raw {
        buf.push(HEX[usize::from(byte >> 4)]);
        buf.push(HEX[usize::from(byte & 0x0f)]);
    }
    buf.push(b'\t');
    text(buf, &row.decoded.to_string());
    buf.push(b'\t');
    let t = row.received_at.to_offset(UtcOffset::UTC);
    write!(
        buf,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00\t",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )?;
    optional_text(buf, row.dedupe_key.as_deref());
    buf.push(b'\n');
    Ok(())
}

fn optional_text(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => text(buf, s),
        None => buf.extend_from_slice(b"\\N"),
    }
}

/// Escapes the characters the COPY text format gives meaning to.
fn text(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}
