//! The connection pool and the repository functions (everything except the writer).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{
    DEVICE_COLUMNS, Device, LinkKind, LinkState, NewDevice, NewSignal, StoredSignal,
};

/// How long a caller waits for a free pool connection before getting an error. Short on
/// purpose: a stuck database must surface as an error (and a NAK) within seconds, not hang
/// the ingest path.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Warden's handle on Postgres: a cheap-to-clone wrapper around a [`PgPool`].
///
/// The group-commit writer ([`spawn_writer`](crate::spawn_writer)) keeps one connection of
/// this pool checked out for as long as it runs, so give the pool at least two connections
/// (or give the writer a `Store` of its own).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `url` with at most `max_connections` connections (at least 1) and an
    /// acquire timeout of [`ACQUIRE_TIMEOUT`]. Fails if the first connection cannot be made.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Store { pool })
    }

    /// A pool that connects only when first used: for a start while the database is
    /// unavailable (degraded mode), where [`Store::connect`] would fail at once.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)?;
        Ok(Store { pool })
    }

    /// Wraps an existing pool (e.g. the one `#[sqlx::test]` hands a test).
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    /// The underlying pool, for callers that need a raw connection (tests, benchmarks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations embedded from `crates/warden-store/migrations/`.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!().run(&self.pool).await?;
        Ok(())
    }

    /// Round trip to the database: `Ok` means a connection was available and answered.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Registers a device, or updates the one with the same account; returns its id. An
    /// update replaces the protocol, label, test interval and client; the type and area
    /// replace the stored ones only when given (`wardend device add` has no flags for them,
    /// and re-running it must not drop what the console set).
    pub async fn upsert_device(&self, device: &NewDevice) -> Result<i64, StoreError> {
        let mut ids = self
            .upsert_device_rows(std::slice::from_ref(device))
            .await?;
        ids.pop().ok_or(StoreError::Corrupt {
            column: "devices.id",
            value: "no id returned for an upsert".to_owned(),
        })
    }

    /// Registers or updates many devices in one statement (provisioning, imports, tests);
    /// returns how many rows were inserted or updated, each as [`Store::upsert_device`]. When
    /// an account appears more than once in `devices`, the last occurrence wins.
    pub async fn upsert_devices(&self, devices: &[NewDevice]) -> Result<u64, StoreError> {
        Ok(self.upsert_device_rows(devices).await?.len() as u64)
    }

    async fn upsert_device_rows(&self, devices: &[NewDevice]) -> Result<Vec<i64>, StoreError> {
        // `ON CONFLICT DO UPDATE` refuses to touch one row twice in a statement, so keep only
        // the last occurrence of each account.
        let mut last = std::collections::HashMap::with_capacity(devices.len());
        for (i, d) in devices.iter().enumerate() {
            last.insert(d.account.as_str(), i);
        }
        let rows: Vec<&NewDevice> = devices
            .iter()
            .enumerate()
            .filter(|(i, d)| last.get(d.account.as_str()) == Some(i))
            .map(|(_, d)| d)
            .collect();
        let ids = sqlx::query_scalar(
            r"
            INSERT INTO devices AS d (account, protocol, label, device_type,
                                      test_interval_seconds, client_ref, area)
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[],
                                 $6::text[], $7::text[])
            ON CONFLICT (account) DO UPDATE SET
                protocol = EXCLUDED.protocol,
                label = EXCLUDED.label,
                device_type = COALESCE(EXCLUDED.device_type, d.device_type),
                test_interval_seconds = EXCLUDED.test_interval_seconds,
                client_ref = EXCLUDED.client_ref,
                area = COALESCE(EXCLUDED.area, d.area)
            RETURNING id
            ",
        )
        .bind(rows.iter().map(|d| d.stored_account()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.protocol.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.label.as_deref()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|d| d.device_type.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.test_interval_seconds)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.client_ref.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|d| d.area.as_deref()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Every registered device, ordered by id (the ingest cache loads this at start).
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The device registered under `account`, if any.
    pub async fn device_by_account(&self, account: &str) -> Result<Option<Device>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE account = $1"
        )))
        .bind(account)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that `link_id` is up or down as of `at`. Reporting a link up also moves its
    /// `last_heard_at` to `at`. Returns `true` when the state changed (or the link is new),
    /// so the caller can log and count the transition once.
    pub async fn set_link_state(
        &self,
        link_id: &str,
        kind: LinkKind,
        up: bool,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // The CTE reads the row as it was before this statement (same snapshot).
        let previous = sqlx::query_scalar!(
            r#"
            WITH before AS (SELECT up FROM links WHERE id = $1)
            INSERT INTO links AS l (id, kind, up, last_heard_at, changed_at)
            VALUES ($1, $2, $3, CASE WHEN $3::boolean THEN $4::timestamptz END, $4)
            ON CONFLICT (id) DO UPDATE SET
                kind = EXCLUDED.kind,
                up = EXCLUDED.up,
                last_heard_at = COALESCE(EXCLUDED.last_heard_at, l.last_heard_at),
                changed_at = CASE WHEN l.up IS DISTINCT FROM EXCLUDED.up
                                  THEN EXCLUDED.changed_at ELSE l.changed_at END
            RETURNING (SELECT up FROM before) AS "previous?"
            "#,
            link_id,
            kind.as_str(),
            up,
            at,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(previous != Some(up))
    }

    /// The last known state of every link, ordered by id.
    pub async fn link_states(&self) -> Result<Vec<LinkState>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT id, kind, up, last_heard_at, changed_at FROM links ORDER BY id"#
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(LinkState {
                    kind: LinkKind::parse(&r.kind).ok_or(StoreError::Corrupt {
                        column: "links.kind",
                        value: r.kind.clone(),
                    })?,
                    id: r.id,
                    up: r.up,
                    last_heard_at: r.last_heard_at,
                    changed_at: r.changed_at,
                })
            })
            .collect()
    }

    /// How many signals are stored.
    pub async fn signal_count(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM signals"#)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// How many quarantine records are stored.
    pub async fn quarantine_count(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM quarantine"#)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// One stored signal by id, with its commit and acknowledgement times.
    pub async fn signal(&self, id: Uuid) -> Result<Option<StoredSignal>, StoreError> {
        let row: Option<SignalRow> = sqlx::query_as(
            "SELECT id, source, link_id, account, device_id, kind, raw, decoded, received_at, \
                    dedupe_key, committed_at, acked_at \
             FROM signals_acked WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredSignal {
                signal: NewSignal {
                    id: r.id,
                    source: r.source.parse().map_err(|_| StoreError::Corrupt {
                        column: "signals.source",
                        value: r.source.clone(),
                    })?,
                    link_id: r.link_id,
                    account: r.account,
                    device_id: r.device_id,
                    kind: r.kind,
                    raw: r.raw,
                    decoded: r.decoded,
                    received_at: r.received_at,
                    dedupe_key: r.dedupe_key,
                },
                committed_at: r.committed_at,
                acked_at: r.acked_at,
            })
        })
        .transpose()
    }

    /// When the quarantine record `id` was acknowledged: `None` if there is no such record,
    /// `Some(None)` if it is stored but not (yet) marked acknowledged.
    pub async fn quarantine_acked_at(
        &self,
        id: Uuid,
    ) -> Result<Option<Option<OffsetDateTime>>, StoreError> {
        let row = sqlx::query_scalar(
            "SELECT COALESCE(q.acked_at, a.acked_at) FROM quarantine q \
             LEFT JOIN first_acks a ON a.id = q.id WHERE q.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }
}

/// A `signals_acked` row.
#[derive(sqlx::FromRow)]
struct SignalRow {
    id: Uuid,
    source: String,
    link_id: String,
    account: Option<String>,
    device_id: Option<i64>,
    kind: String,
    raw: Vec<u8>,
    decoded: serde_json::Value,
    received_at: OffsetDateTime,
    dedupe_key: Option<String>,
    committed_at: OffsetDateTime,
    acked_at: Option<OffsetDateTime>,
}
