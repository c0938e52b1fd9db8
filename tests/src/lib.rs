//! Warden's test kit: the real external parts a test or benchmark starts for itself, and the
//! real `wardend` process. The end-to-end tests here, the integration tests of `warden-sim`,
//! `warden-store` and `warden-ingest` and the benchmarks use it (as a dev-dependency);
//! nothing here is a stand-in for a shipped part.
//!
//! * [`certs`]: a throwaway CA and certificates it signs (the `openssl` command line).
//! * [`net`]: free loopback ports, polling with a deadline, a minimal HTTP GET.
//! * [`db`]: a throwaway database per test on the `$DATABASE_URL` server ([`TestDb`]), a
//!   private cluster that can be stopped and started ([`PrivatePg`]).
//! * [`mosquitto`]: a Mosquitto broker per test ([`Mosquitto`]), `mosquitto_pub` as an
//!   independent MQTT sender.
//! * [`pty`]: a `socat` pty pair as the RS-232 cable ([`PtyPair`]), a raw receiver line,
//!   a port that survives the cable being pulled.
//! * [`sim`]: `firmware-sim`'s fleet and receiver running in tasks.
//! * [`wardend`]: the `wardend` binary and a running daemon ([`Wardend`]).
//! * `ingest` (feature `ingest`): Warden's ingest running in-process against a test database.

pub mod certs;
pub mod db;
#[cfg(feature = "ingest")]
pub mod ingest;
pub mod mosquitto;
pub mod net;
pub mod pty;
pub mod sim;
pub mod smtp;
pub mod wardend;

pub use db::{PrivatePg, TestDb, pg_bin, pg_tool, server_url, try_count};
pub use mosquitto::{Mosquitto, PubReport, mosquitto_pub};
pub use net::{free_port, http_get, wait_until};
pub use pty::{PtyPair, RawLine, ReplugPort};
pub use sim::{Running, start_fleet, start_receiver, start_receiver_replug};
pub use wardend::{
    Wardend, command_for, daemon_command, target_dir, wardend_binary, workspace_root,
};
