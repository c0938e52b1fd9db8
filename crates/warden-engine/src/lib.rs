//! The triage engine: the one task that owns the pure triage core ([`warden_core::Triage`]).
//!
//! Architecture Invariant: exactly one task mutates triage state. Ingest adapters hand it
//! committed signals through an [`EngineHandle`] over two bounded lanes: life-critical
//! signals in their own lane, always drained first, so a storm of technical signals never
//! sits in front of a pendant press. The engine feeds inputs to the core, persists every
//! effect (incident history, current state, outbox) together with the "triaged" mark of the
//! signals that caused them in one transaction, and only then publishes them. On start it
//! rebuilds from Postgres (open incidents, devices) and replays committed signals that were
//! never triaged, so a crash between commit and triage loses nothing.

mod engine;
mod health;
mod held;
mod persist;

pub use engine::{
    Changes, CommittedSignal, EngineConfig, EngineError, EngineHandle, EngineReport, device_info,
    spawn, spawn_watching,
};
pub use health::{EngineHealth, EngineState, STALL_AFTER};
