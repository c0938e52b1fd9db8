//! Engine liveness, as `/readyz` and `/metrics` see it: whether the task runs, whether it
//! is replaying, and whether it is making progress. A dead or stuck engine is the failure
//! nobody sees from the outside (signals are still acknowledged and stored, but no console
//! hears of them), so it must turn the centre's readiness red.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use warden_telemetry as m;

/// The default for how long a batch in progress, or inputs waiting without a batch
/// committing, count as a stalled engine.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// What the engine task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Rebuilt, not yet replaying.
    Starting,
    /// Triaging signals committed but never triaged (after a start or a database outage).
    Replaying,
    /// Taking live inputs.
    Running,
    /// The task has ended (shutdown, or it died).
    Stopped,
}

impl EngineState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => EngineState::Starting,
            1 => EngineState::Replaying,
            2 => EngineState::Running,
            _ => EngineState::Stopped,
        }
    }

    /// The name used in logs and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Starting => "starting",
            EngineState::Replaying => "replaying",
            EngineState::Running => "running",
            EngineState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Inner {
    stall_after: Duration,
    state: AtomicU8,
    /// Wall-clock milliseconds of the last committed (or empty) batch.
    last_progress_ms: AtomicI64,
    /// Wall-clock milliseconds when the batch in progress started; 0 when idle.
    busy_since_ms: AtomicI64,
}

/// Shared between the engine task (which writes) and its handles (which read).
#[derive(Debug, Clone)]
pub(crate) struct Health(Arc<Inner>);

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

impl Health {
    pub(crate) fn new(stall_after: Duration) -> Self {
        Health(Arc::new(Inner {
            stall_after,
            state: AtomicU8::new(0),
            last_progress_ms: AtomicI64::new(now_ms()),
            busy_since_ms: AtomicI64::new(0),
        }))
    }

    pub(crate) fn set_state(&self, s: EngineState) {
        self.0.state.store(s as u8, Ordering::Release);
        metrics::gauge!(m::ENGINE_REPLAYING).set(if s == EngineState::Replaying {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(m::ENGINE_RUNNING).set(if s == EngineState::Stopped { 0.0 } else { 1.0 });
    }

    /// A batch starts.
    pub(crate) fn busy(&self) {
        let _ =
            self.0
                .busy_since_ms
                .compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Acquire);
    }

    /// A batch finished (committed, or given up and recorded).
    pub(crate) fn progressed(&self) {
        let now = now_ms();
        self.0.busy_since_ms.store(0, Ordering::Release);
        self.0.last_progress_ms.store(now, Ordering::Release);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(m::ENGINE_LAST_BATCH).set(now as f64 / 1000.0);
    }

    pub(crate) fn stall_after(&self) -> Duration {
        self.0.stall_after
    }

    pub(crate) fn state(&self) -> EngineState {
        EngineState::from_u8(self.0.state.load(Ordering::Acquire))
    }

    /// How long the batch in progress has run, if one is.
    pub(crate) fn busy_for(&self) -> Option<Duration> {
        let since = self.0.busy_since_ms.load(Ordering::Acquire);
        (since != 0).then(|| ms(now_ms() - since))
    }

    /// Time since the last batch finished.
    pub(crate) fn idle_for(&self) -> Duration {
        ms(now_ms() - self.0.last_progress_ms.load(Ordering::Acquire))
    }
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Marks the engine stopped when its task ends, however it ends (a panic included).
#[derive(Debug)]
pub(crate) struct StoppedOnDrop(pub(crate) Health);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.set_state(EngineState::Stopped);
    }
}

/// The engine's liveness at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealth {
    /// What the task is doing.
    pub state: EngineState,
    /// How long the batch in progress has run, if one is.
    pub busy_for: Option<Duration>,
    /// Time since the last batch finished.
    pub idle_for: Duration,
    /// Signals waiting in the life-critical lane.
    pub critical_waiting: usize,
    /// Signals waiting in the bulk lane.
    pub bulk_waiting: usize,
    /// Operator commands waiting.
    pub commands_waiting: usize,
    /// The threshold for "stalled".
    pub stall_after: Duration,
}

impl EngineHealth {
    /// Why the engine is not ready, in words; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.state {
            EngineState::Running => {}
            EngineState::Stopped => out.push("triage engine: stopped".to_owned()),
            s => out.push(format!("triage engine: {}", s.as_str())),
        }
        if let Some(busy) = self.busy_for.filter(|b| *b >= self.stall_after) {
            out.push(format!(
                "triage engine: stalled, one batch in progress for {}s",
                busy.as_secs()
            ));
        }
        let waiting = self.critical_waiting + self.bulk_waiting + self.commands_waiting;
        if waiting > 0 && self.busy_for.is_none() && self.idle_for >= self.stall_after {
            out.push(format!(
                "triage engine: stalled, {waiting} inputs waiting and no batch for {}s",
                self.idle_for.as_secs()
            ));
        }
        out
    }
}
