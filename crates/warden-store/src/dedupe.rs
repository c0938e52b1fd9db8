//! Recognising redeliveries: a signal is a redelivery only when the same dedupe key arrived
//! with the same payload (SHA-256 of its raw bytes) within the writer's window.
//!
//! The `dedupe` table (migration 0005) holds one row per (key, payload hash) with the time
//! the stored copy was first seen. A batch claims its keyed signals with one
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`: a claimed row means "store it", an
//! unclaimed one "already stored within the window". The primary key makes the claim
//! race-free across concurrent transactions (another writer, another node): Postgres makes
//! the second claimant wait for the first to commit and re-checks the window against the
//! committed row.
//!
//! A payload hash collision would make a different message look like a redelivery and
//! swallow it, which is why the hash is SHA-256 and not a 64-bit hash.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::Store;

/// How often the writer deletes expired `dedupe` rows.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_mins(1);

/// Most rows one prune statement deletes, so it holds its locks briefly.
const PRUNE_CHUNK: i64 = 10_000;

/// The longest window accepted; longer ones are cut to this (Postgres intervals are finite).
pub(crate) const MAX_WINDOW: Duration = Duration::from_hours(3650 * 24);

/// SHA-256 of a signal's raw bytes.
pub(crate) fn payload_hash(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// The window in microseconds, as the SQL below takes it.
fn window_micros(window: Duration) -> i64 {
    i64::try_from(window.min(MAX_WINDOW).as_micros()).unwrap_or(i64::MAX)
}

/// A keyed signal asking to be stored.
pub(crate) struct Claim<'a> {
    pub key: &'a str,
    pub hash: [u8; 32],
    pub id: Uuid,
}

/// Claims every `(key, hash)` of `claims` (pairs must be distinct) for the signal named with
/// it. Returns the ids whose claim succeeded (store them), each with whether its key was
/// already in use within the window for another payload (a reused message id). Ids missing
/// from the answer are redeliveries: their pair was claimed less than `window` ago.
///
/// The "reused" flag reads the table as it was when the statement started, so two different
/// payloads under one key claimed by concurrent transactions are both stored (correct) but
/// may both be reported as not reused. It is a diagnostic; storing is what must be exact.
pub(crate) async fn claim(
    conn: &mut PgConnection,
    claims: &[Claim<'_>],
    window: Duration,
) -> Result<HashMap<Uuid, bool>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&str> = claims.iter().map(|c| c.key).collect();
    let hashes: Vec<&[u8]> = claims.iter().map(|c| c.hash.as_slice()).collect();
    let ids: Vec<Uuid> = claims.iter().map(|c| c.id).collect();
    // Rows are claimed in key order so two transactions claiming overlapping keys lock them
    // in the same order and cannot deadlock each other. The sub-select on `dedupe` sees the
    // table as it was before this statement (WITH sub-statements share one snapshot), so it
    // finds the other payloads of a key without seeing this batch's own claims.
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        r"
        WITH claimed AS (
            INSERT INTO dedupe AS d (dedupe_key, payload_hash, signal_id, seen_at)
            SELECT k, h, i, clock_timestamp()
            FROM UNNEST($1::text[], $2::bytea[], $3::uuid[]) AS input (k, h, i)
            ORDER BY k, h
            ON CONFLICT (dedupe_key, payload_hash) DO UPDATE
                SET signal_id = EXCLUDED.signal_id, seen_at = EXCLUDED.seen_at
                WHERE d.seen_at <= EXCLUDED.seen_at - $4::bigint * interval '1 microsecond'
            RETURNING d.signal_id, d.dedupe_key, d.payload_hash
        )
        SELECT c.signal_id,
               EXISTS (
                   SELECT 1 FROM dedupe o
                   WHERE o.dedupe_key = c.dedupe_key
                     AND o.payload_hash <> c.payload_hash
                     AND o.seen_at > clock_timestamp() - $4::bigint * interval '1 microsecond'
               ) AS reused
        FROM claimed c
        ",
    )
    .bind(&keys)
    .bind(&hashes)
    .bind(&ids)
    .bind(window_micros(window))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

impl Store {
    /// Deletes `dedupe` rows first seen more than `window` ago, at most `limit` of them, and
    /// returns how many went. Rows a concurrent claim holds are skipped (never waited for),
    /// so pruning cannot deadlock with the writer. Housekeeping only: an expired row that is
    /// still present is claimed again as if it were absent.
    pub async fn prune_dedupe(&self, window: Duration, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            r"
            DELETE FROM dedupe WHERE ctid IN (
                SELECT ctid FROM dedupe
                WHERE seen_at <= clock_timestamp() - $1::bigint * interval '1 microsecond'
                ORDER BY seen_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            ",
        )
        .bind(window_micros(window))
        .bind(limit)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// Prunes expired `dedupe` rows every [`PRUNE_INTERVAL`] until `stop`, in chunks, so the
/// table holds about one window of keys. Runs beside the writer, on a pool connection of its
/// own for the moment it prunes, so no batch waits for it.
pub(crate) async fn prune_until(store: Store, window: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
        }
        let mut total = 0;
        loop {
            // Cancel safety: the statement is either committed or rolled back with its
            // connection; pruning again later is harmless.
            let pruned = tokio::select! {
                () = stop.cancelled() => return,
                r = store.prune_dedupe(window, PRUNE_CHUNK) => r,
            };
            match pruned {
                Ok(n) => {
                    total += n;
                    if n < PRUNE_CHUNK.unsigned_abs() {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "dedupe prune failed; retrying at the next interval");
                    break;
                }
            }
        }
        if total > 0 {
            debug!(rows = total, "expired dedupe keys pruned");
        }
    }
}
