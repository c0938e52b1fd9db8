//! Warden's system of record: the Postgres schema, the group-commit writer and the
//! repositories every other crate goes through.
//!
//! Architecture Invariant: this is the only crate that knows SQL. Other crates speak in
//! [`Record`], [`Device`], [`LinkState`]; the tables and statements live here (migrations in
//! `crates/warden-store/migrations/`, compile-time checked queries, offline data in the
//! workspace's `.sqlx/`).
//!
//! Architecture Invariant: a record's outcome is reported only after the transaction holding
//! it has committed. [`WriterHandle::write`] resolves `Ok` strictly after `COMMIT` returned,
//! so an adapter that ACKs (serial ACK, MQTT PUBACK, DC-09 ACK) on `Ok` never acknowledges a
//! signal that a crash could lose. If a transaction fails, every record in it gets `Err`;
//! nothing is half-reported. An `Err` means "not known to be durable": the caller NAKs or
//! withholds its PUBACK and the sender retries.
//!
//! Architecture Invariant: the writer's queue is bounded, [`WriterConfig::queue_capacity`]
//! records (default 20 000). When it is full, `write` waits for room: alarms are never
//! dropped, and the back-pressure reaches the sender as a late ACK. The acknowledgement-mark
//! queue is bounded too ([`ACK_QUEUE_CAPACITY`]); when full, marks are dropped, since
//! `acked_at` is a best-effort annotation that a crash may also lose.
//!
//! Architecture Invariant: `signals` and `quarantine` are append-only evidence. A trigger
//! rejects `DELETE`, `TRUNCATE` and every `UPDATE` except setting `acked_at` once from NULL.
//!
//! Each record is written exactly once or answered as a [`Committed::Duplicate`] of an
//! earlier one with the same dedupe key; one bad record in a batch is refused on its own
//! ([`WriteError::Rejected`]) without failing the others.

mod copy;
mod error;
mod model;
mod store;
mod writer;

pub use copy::raw_copy;
pub use error::{StoreError, WriteError};
pub use model::{
    Committed, Device, DeviceProtocol, LinkKind, LinkState, NewDevice, NewQuarantine, NewSignal,
    Record, Source, StoredSignal,
};
pub use store::{ACQUIRE_TIMEOUT, Store};
pub use writer::{ACK_QUEUE_CAPACITY, WriterConfig, WriterHandle, WriterReport, spawn_writer};
