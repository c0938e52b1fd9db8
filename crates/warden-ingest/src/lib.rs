//! Warden's ingest adapters: the only crate that knows serial ports and MQTT.
//!
//! Architecture invariant: a signal is acknowledged to its sender (ACK byte on a serial
//! line, PUBACK on MQTT) only after the group-commit writer has reported it committed in
//! Postgres. When the write fails the signal is not acknowledged: a serial receiver gets a
//! NAK and resends, an MQTT message stays un-PUBACKed and is retried here, and if the
//! process dies the broker redelivers it on reconnect (persistent session).
//!
//! Bad input (undecodable frames, bad JSON, unknown schema versions, oversized payloads,
//! unknown accounts) is written to the quarantine table with its raw bytes and a reason,
//! counted in `warden_signals_rejected_total{source,reason}`, and never stops the link.

pub mod devices;
pub mod mqtt;
mod record;
pub mod serial;

pub use devices::DeviceCache;
pub use record::Ingest;
