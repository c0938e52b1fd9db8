//! Warden's ingest adapters: the only crate that knows serial ports, MQTT and the DC-09
//! sockets.
//!
//! Architecture invariant: a signal is acknowledged to its sender (ACK byte on a serial
//! line, PUBACK on MQTT) only after the group-commit writer has reported it committed in
//! Postgres. When the write fails the signal is not acknowledged: a serial receiver gets a
//! NAK and resends, an MQTT message stays un-PUBACKed and is retried here, and if the
//! process dies the broker redelivers it on reconnect (persistent session).
//!
//! Bad input is written to the quarantine table with its raw bytes and a reason, counted
//! in `warden_signals_rejected_total{source,reason}`, and never stops the link. Input that
//! is well framed but cannot be attributed or read (an unknown account, a device registered
//! for another protocol, a payload that does not parse, a frame of an undecoded protocol,
//! a record Postgres refuses) is also stored as a signal and triaged, so it reaches an
//! operator as an incident; only input addressed to no device (line noise, a bad topic) is
//! quarantined alone.

mod accept;
pub mod dc09;
pub mod devices;
pub mod mqtt;
mod record;
mod remembered;
pub mod reuse;
pub mod scaip;
mod secret;
pub mod serial;
mod supervise;
mod udp;

pub use devices::DeviceCache;
pub use record::Ingest;
pub use reuse::ReusedIds;
pub use secret::Secret;
pub use supervise::supervise;
