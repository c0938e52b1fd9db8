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
//! signal that a crash could lose. If a transaction fails, no record in it is answered `Ok`
//! on its account: with Postgres unreachable every record of the batch gets `Err`; after a
//! data error each record is retried in a transaction of its own and answered after that one.
//! An `Err` means "not known to be durable": the caller NAKs or withholds its PUBACK and the
//! sender retries.
//!
//! Architecture Invariant: the writer's queue is bounded, [`WriterConfig::queue_capacity`]
//! records (default 20 000). When it is full, `write` waits for room: alarms are never
//! dropped, and the back-pressure reaches the sender as a late ACK. The acknowledgement-mark
//! queue is bounded too ([`ACK_QUEUE_CAPACITY`]); when full, marks are dropped, since
//! `acked_at` is a best-effort annotation that a crash may also lose.
//!
//! Architecture Invariant: `signals` and `quarantine` are append-only evidence. A trigger
//! rejects `DELETE`, `TRUNCATE` and every `UPDATE` except setting `acked_at` once from NULL
//! (rows from before migration 0009; ACK times now go into the append-only `acks` table).
//!
//! Redeliveries are recognised by dedupe key *and* payload within a bounded window
//! ([`WriterConfig::dedupe_window`], default 24 h): a signal with the same key and the same
//! raw bytes (SHA-256) as one stored within the window, in a later batch or the same one, is
//! not stored and is answered [`Committed::Duplicate`]. The same key with other bytes is a
//! new signal whose sender reused an id (a unit whose counter restarted): it is stored and
//! answered [`Committed::Reused`], never swallowed. After the window a key is free again.
//! The claim on (key, hash) lives in the `dedupe` table, whose primary key makes it race-free
//! across concurrent batches and nodes; the writer prunes it in the background.
//!
//! One record Postgres refuses (an unknown
//! device, a NUL character) is answered [`WriteError::Rejected`] on its own; the rest of its
//! batch is retried record by record and commits.
//!
//! Operational notes: the writer keeps one pool connection for itself (size pools for it);
//! a transaction that fails or exceeds [`WriterConfig::commit_timeout`] drops that
//! connection and the next batch reconnects. `acked_at` marks still queued at a crash are
//! lost: such a row reads "not known to be acknowledged", which errs on the safe side.

mod console;
mod copy;
mod dedupe;
mod error;
mod identity;
mod journal;
mod listen;
mod model;
mod notify;
mod oncall;
mod rejected;
pub mod seal;
mod spool;
mod store;
mod transmitters;
pub use transmitters::{Dc09Account, Dc09Settings};
mod triage;
mod url_security;
pub use url_security::plaintext_risk;
mod writer;

pub use console::{
    AuditRow, AuditWrite, CallerMessage, CallerText, CallerUpdate, ClientAccess, ClientRecord,
    ContactMethod, Dc09Row, DeviceCard, DirectoryChain, DirectoryEntry, DirectoryOverride,
    DirectoryPerson, DirectoryRota, DirectoryRoute, DirectoryTeam, IncidentEvent, IncidentViewRow,
    JobRouting, KeySafeReveal, NewOohJob, OncallDirectory, OohCategory, OohJob, OohUpdate,
    PersonWrite, QueueCards, Refused, Rekeyed, Removal, Responder, SessionRow, SignalSummary,
    TriageDevice, UserRow, UserWrite, WriteRefused,
};
pub use copy::raw_copy;
pub use error::{StoreError, WriteError};
pub use identity::{BridgeError, MqttCredential};
pub use journal::{Journal, Opened as OpenedJournal};
pub use listen::DeviceListener;
pub use model::{
    Committed, Device, DeviceProtocol, LinkKind, LinkState, NewDevice, NewQuarantine, NewSignal,
    Record, Source, StoredSignal,
};
pub use notify::{PageView, PhonePage};
pub use oncall::{
    ChainRow, ContactRow, DueEscalation, NewPage, OncallConfig, OncallTx, OutboxEntry, OverrideRow,
    PageAck, PageRow, PendingPage, RotaRow, RouteRow,
};
pub use rejected::{RawBytes, RejectedCount, RejectedPage, RejectedQuery, RejectedRow};
pub use spool::{Spool, SpoolDepth, SpoolError, Spooled};
pub use store::{ACQUIRE_TIMEOUT, Store};
pub use triage::{EventRow, IncidentRow, IncidentViewFields, PendingSignal, TriageBatch};
pub use writer::{
    ACK_QUEUE_CAPACITY, DegradedState, SpoolSettings, WriterConfig, WriterHandle, WriterReport,
    spawn_writer, spawn_writer_spooled,
};
