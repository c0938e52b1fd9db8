use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;
use warden_core::{
    Classifier, Config, Decoded, DeviceId, DeviceInfo, Effect, Incident, Input, Micros, Name,
    Priority, SignalId, SignalIn, SignalWhat, SlaConfig, Snapshot, Source, Timestamp, Triage,
    lane_of,
};
use warden_store::{DegradedState, IncidentRow, Store, TriageBatch};
use warden_telemetry as m;

use crate::health::{EngineHealth, Health, StoppedOnDrop};
use crate::held::{GROUP_FLUSH_EVERY, Held};
use crate::persist::{Background, Stored, commit, commit_once};

mod batch;
mod degraded;
mod journal;
mod replay;

/// Tuning of the engine's lanes and batches.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Life-critical lane capacity. Full: ingest waits (never drops).
    pub critical_capacity: usize,
    /// Lane for everything else. Full: ingest waits.
    pub bulk_capacity: usize,
    /// Most inputs per persisted batch. Small enough that a life-critical signal arriving
    /// behind a bulk batch waits only for that batch's commit.
    pub max_batch: usize,
    /// The triage core's configuration.
    pub core: Config,
    /// How far back to look for committed signals never triaged, on start.
    pub replay_window: Duration,
    /// Operator commands waiting for the engine. Full: the console request waits.
    pub command_capacity: usize,
    /// Committed change notices kept for slow subscribers (consoles). A subscriber that
    /// falls further behind is told it lagged and re-reads the queue; the engine never
    /// waits for a console.
    pub changes_capacity: usize,
    /// Longest a triage commit (or a replay read) may take before it is abandoned and
    /// retried: a hung connection or a lock must not hold the engine silently.
    pub db_timeout: Duration,
    /// A batch in progress this long, or inputs waiting this long with no batch, makes the
    /// engine "stalled" on `/readyz`.
    pub stall_after: Duration,
    /// How often the engine looks for signals committed but never triaged while it ran (a
    /// triage commit lost with Postgres or given up, a submit that failed) ...
    pub catch_up_every: Duration,
    /// ... and how old such a signal must be, so one still on its way through the lanes is
    /// not taken twice.
    pub catch_up_age: Duration,
    /// Where operators' commands carried out during an outage are kept until committed
    /// (`None`: in memory only).
    pub journal: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            critical_capacity: 10_000,
            bulk_capacity: 100_000,
            max_batch: 256,
            core: Config::default(),
            replay_window: Duration::from_hours(24),
            command_capacity: 1_024,
            changes_capacity: 1_024,
            db_timeout: Duration::from_secs(10),
            stall_after: crate::health::STALL_AFTER,
            catch_up_every: Duration::from_mins(1),
            catch_up_age: Duration::from_mins(2),
            journal: None,
        }
    }
}

/// What ingest and the console hold: committed signals in, operator commands in, committed
/// changes out.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    critical: mpsc::Sender<Offered>,
    bulk: mpsc::Sender<Offered>,
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<Arc<Changes>>,
    classifier: Arc<Classifier>,
    sla: SlaConfig,
    health: Health,
}

/// One event of a committed signal on its way through a lane.
#[derive(Debug)]
struct Offered {
    signal: SignalIn,
    /// The stored signal to mark triaged once this input's effects are durable: set on the
    /// last event of a signal only, so a signal whose events are split across batches is
    /// replayed whole if the process dies in between.
    mark: Option<Uuid>,
}

/// What waits for a command's outcome.
type Reply = oneshot::Sender<Result<Vec<Effect>, EngineError>>;

/// An operator command (or a registry change) and where its effects go once durable.
#[derive(Debug)]
struct Command {
    input: Input,
    reply: Reply,
}

/// Why a command has no durable outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine stopped before the command's effects became durable; nothing is known to
    /// have happened.
    #[error("the triage engine is not running")]
    Stopped,
    /// The command could not be carried out (the core failed on it, or its effects could
    /// not be stored); nothing it would have changed is recorded.
    #[error("the triage engine could not carry out the command: {0}")]
    Failed(String),
}

/// One input for the core, with who waits for it and which stored signal it completes.
#[derive(Debug)]
struct Item {
    input: Input,
    reply: Option<Reply>,
    mark: Option<Uuid>,
    /// The core's `now` for it: `None` is the moment it is handled; a command applied again
    /// from the journal keeps its original time.
    at: Option<Timestamp>,
}

impl Item {
    fn signal(o: Offered) -> Self {
        Item {
            input: Input::Signal(o.signal),
            reply: None,
            mark: o.mark,
            at: None,
        }
    }

    fn command(c: Command) -> Self {
        Item {
            input: c.input,
            reply: Some(c.reply),
            mark: None,
            at: None,
        }
    }

    fn tick() -> Self {
        Item {
            input: Input::Tick,
            reply: None,
            mark: None,
            at: None,
        }
    }
}

/// How a batch is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Live bulk inputs: committed in the background, one batch at a time, in order.
    Bulk,
    /// A life-critical signal or a command: committed at once, waiting for the WAL flush.
    Urgent,
    /// Replayed signals: held group changes written with them, committed before the next
    /// page is read.
    Replay,
    /// Stopping: held group changes written, one attempt.
    Final,
}

/// Incidents changed by one committed engine batch, published after COMMIT.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// Ids of the incidents whose current-state rows changed.
    pub incidents: Vec<i64>,
    /// Life-critical incidents offered in this batch, with the arrival time of their first
    /// signal (for the arrival-to-console latency measure).
    pub offered_life_critical: Vec<(i64, OffsetDateTime)>,
    /// In degraded mode (the database unavailable), the batch is published before it is
    /// durable and carries its incidents' rows (without `doc`) here, for consoles that
    /// cannot read them back; empty for a committed batch.
    pub uncommitted: Vec<IncidentRow>,
}

impl EngineHandle {
    /// Hands over one committed signal (the caller has already made it durable). Waits when
    /// the lane is full: back-pressure, never a drop. `false` means the engine stopped; the
    /// signal is still replayed from the database on the next start.
    ///
    /// Every event of the signal is offered, in order, in one lane: the life-critical lane
    /// when any of them is life-critical.
    pub async fn submit(&self, c: &CommittedSignal<'_>) -> bool {
        let offered = offered(c);
        let critical = offered.iter().any(|o| {
            lane_of(&o.signal.what, o.signal.device.as_ref(), &self.classifier)
                == Priority::LifeCritical
        });
        let lane = if critical { &self.critical } else { &self.bulk };
        for o in offered {
            if lane.send(o).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Runs an operator command (claim, release, note, resolve, take over) or a registry
    /// change through the core and returns its effects once they are durable. A refusal is
    /// an [`Effect::Rejected`] among them.
    pub async fn command(&self, input: Input) -> Result<Vec<Effect>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command { input, reply })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The engine's liveness now: for `/readyz` and the ops dashboard.
    pub fn health(&self) -> EngineHealth {
        let waiting = |cap: usize, free: usize| cap.saturating_sub(free);
        EngineHealth {
            state: self.health.state(),
            busy_for: self.health.busy_for(),
            idle_for: self.health.idle_for(),
            critical_waiting: waiting(self.critical.max_capacity(), self.critical.capacity()),
            bulk_waiting: waiting(self.bulk.max_capacity(), self.bulk.capacity()),
            commands_waiting: waiting(self.commands.max_capacity(), self.commands.capacity()),
            stall_after: self.health.stall_after(),
        }
    }

    /// Committed changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changes>> {
        self.changes.subscribe()
    }

    /// The answer-time thresholds per lane, as the core applies them.
    pub fn sla(&self) -> &SlaConfig {
        &self.sla
    }
}

/// A signal as committed by ingest (or read back for replay).
#[derive(Debug, Clone, Copy)]
pub struct CommittedSignal<'a> {
    pub id: Uuid,
    pub source: Source,
    pub link: &'a str,
    pub account: Option<&'a str>,
    pub device_id: Option<i64>,
    pub decoded: &'a Decoded,
    pub received_at: OffsetDateTime,
}

/// The core inputs of one stored signal: one per event. The first event carries the stored
/// signal's id; each further event of a multi-event block an id derived from it (its low
/// bits changed), so the core counts each event once and a replay offers the same ids.
fn offered(c: &CommittedSignal<'_>) -> Vec<Offered> {
    let base = c.id.as_u128();
    let fallback;
    let events = if c.decoded.events.is_empty() {
        fallback = [SignalWhat::Unknown {
            raw_summary: "a stored signal with no events".into(),
        }];
        &fallback[..]
    } else {
        &c.decoded.events[..]
    };
    let n = events.len();
    events
        .iter()
        .enumerate()
        .map(|(i, what)| Offered {
            signal: SignalIn {
                id: SignalId(base ^ i as u128),
                source: c.source,
                link: Name::new(c.link),
                account: c.account.map(Name::new),
                device: c.device_id.map(|d| DeviceInfo::new(DeviceId(d))),
                what: what.clone(),
                received_at: Timestamp::from(c.received_at),
            },
            mark: (i + 1 == n).then_some(c.id),
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from(OffsetDateTime::now_utc())
}

/// What the engine did, returned when it stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineReport {
    pub inputs: u64,
    pub effects: u64,
    pub batches: u64,
    pub replayed: u64,
}

/// Rebuilds the core from Postgres, replays untriaged signals, and starts the engine task.
pub async fn spawn(
    store: Store,
    cfg: EngineConfig,
    shutdown: CancellationToken,
) -> Result<(EngineHandle, tokio::task::JoinHandle<EngineReport>), warden_store::StoreError> {
    spawn_watching(store, cfg, None, shutdown).await
}

/// [`spawn`], following the writer's degraded mode: while the writer spools (Postgres
/// unavailable), the engine keeps triaging the spooled signals it is offered, publishes each
/// batch at once with its incidents' rows ([`Changes::uncommitted`]) and keeps it in memory;
/// once the spool has drained it commits the kept batches in order, then triages whatever
/// the drain stored that nobody offered (signals spooled by an earlier process).
pub async fn spawn_watching(
    store: Store,
    cfg: EngineConfig,
    degraded: Option<watch::Receiver<DegradedState>>,
    shutdown: CancellationToken,
) -> Result<(EngineHandle, tokio::task::JoinHandle<EngineReport>), warden_store::StoreError> {
    let classifier = Arc::new(Classifier::new(&cfg.core));
    let heard: HashMap<i64, OffsetDateTime> =
        store.supervised_last_heard().await?.into_iter().collect();
    let devices: Vec<(DeviceInfo, Option<Timestamp>)> = store
        .device_records_for_triage()
        .await?
        .into_iter()
        .map(|t| {
            let last = heard.get(&t.device.id).map(|at| Timestamp::from(*at));
            (device_info(&t), last)
        })
        .collect();
    let incidents: Vec<Incident> = store
        .open_incident_docs()
        .await?
        .into_iter()
        .filter_map(|doc| match serde_json::from_value(doc) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::error!(error = %e, "unreadable incident record; left out of the rebuild");
                None
            }
        })
        .collect();
    let next = u64::try_from(store.max_incident_id().await?).unwrap_or(0) + 1;
    let open = incidents.len();
    let snapshot = Snapshot::rebuild(cfg.core.clone(), next, devices, incidents, now());
    let core = Triage::from_snapshot(snapshot).unwrap_or_else(|e| {
        tracing::error!(error = %e, "triage snapshot rejected; starting from an empty core");
        Triage::new(cfg.core.clone())
    });
    tracing::info!(
        open_incidents = open,
        next_incident = next,
        "triage state rebuilt"
    );

    let journal = cfg.journal.as_deref().and_then(journal::Commands::open);
    let (critical_tx, critical) = mpsc::channel(cfg.critical_capacity);
    let (bulk_tx, bulk) = mpsc::channel(cfg.bulk_capacity);
    let (commands_tx, commands) = mpsc::channel(cfg.command_capacity);
    let (changes, _) = broadcast::channel(cfg.changes_capacity.max(1));
    let health = Health::new(cfg.stall_after);
    let handle = EngineHandle {
        critical: critical_tx,
        bulk: bulk_tx,
        commands: commands_tx,
        changes: changes.clone(),
        classifier,
        sla: cfg.core.sla,
        health: health.clone(),
    };
    let mut engine = Engine {
        core,
        store,
        cfg,
        critical,
        bulk,
        commands,
        changes,
        report: EngineReport::default(),
        held: Held::default(),
        closed: HashMap::new(),
        background: None,
        health,
        catch_up: false,
        seen_drained: degraded.as_ref().map_or(0, |d| d.borrow().drained),
        degraded,
        deferred: VecDeque::new(),
        journal,
    };
    let task = tokio::spawn(
        async move {
            let _stopped = StoppedOnDrop(engine.health.clone());
            engine.replay(&shutdown, None).await;
            engine.run(shutdown).await;
            engine.report
        }
        .instrument(tracing::info_span!("triage_engine")),
    );
    Ok((handle, task))
}

struct Engine {
    core: Triage,
    store: Store,
    cfg: EngineConfig,
    critical: mpsc::Receiver<Offered>,
    bulk: mpsc::Receiver<Offered>,
    commands: mpsc::Receiver<Command>,
    changes: broadcast::Sender<Arc<Changes>>,
    report: EngineReport,
    held: Held,
    /// The final records of incidents resolved by the inputs of the batch being built.
    closed: HashMap<u64, Incident>,
    background: Option<Background>,
    health: Health,
    /// A commit failed since the last catch-up: look for untriaged signals soon.
    catch_up: bool,
    /// The writer's degraded mode, when it has a spool: while it spools, batches are
    /// published at once and kept in `deferred`, committed in order once it is direct again.
    degraded: Option<watch::Receiver<DegradedState>>,
    deferred: VecDeque<TriageBatch>,
    /// Operators' commands carried out while deferring, kept on disk until committed.
    journal: Option<journal::Commands>,
    /// The writer's count of drained records last seen: a change means signals committed by
    /// the drain, to be triaged if nobody has.
    seen_drained: u64,
}

/// The core's view of a device record.
pub fn device_info(t: &warden_store::TriageDevice) -> DeviceInfo {
    let d = &t.device;
    DeviceInfo {
        id: DeviceId(d.id),
        area: d.area.as_deref().map(Name::new),
        test_interval: d
            .test_interval_seconds
            .map(|s| Micros::from_micros(i64::from(s) * 1_000_000)),
        device_type: d.device_type.as_deref().map(Name::new),
        client: t.client_id,
    }
}

impl Engine {
    async fn run(&mut self, shutdown: CancellationToken) {
        let mut inputs: Vec<Item> = Vec::with_capacity(self.cfg.max_batch);
        let mut next_catch_up = tokio::time::Instant::now() + self.cfg.catch_up_every;
        loop {
            self.lane_depths();
            self.settle_degraded(&shutdown).await;
            if tokio::time::Instant::now() >= next_catch_up && !self.deferring() {
                // Signals committed but never triaged while running: a triage commit lost
                // with Postgres (asynchronous commit) or given up, a submit that failed.
                let before = OffsetDateTime::now_utc() - self.cfg.catch_up_age;
                self.replay(&shutdown, Some(before)).await;
                self.catch_up = false;
                next_catch_up = tokio::time::Instant::now() + self.cfg.catch_up_every;
            }
            let core_deadline = self.core.next_deadline().map(|d| {
                let wait = d.since(now()).as_micros().max(0);
                tokio::time::Instant::now()
                    + Duration::from_micros(u64::try_from(wait).unwrap_or(0))
            });
            let flush_deadline = self.held.since.map(|t| t + GROUP_FLUSH_EVERY);
            let deadline = [core_deadline, flush_deadline, Some(next_catch_up)]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                // Biased: life-critical first, then ticks, then the bulk lane.
                biased;
                // Cancel-safe: `recv` loses nothing when another branch wins.
                () = shutdown.cancelled() => break,
                Some(s) = self.critical.recv() => inputs.push(Item::signal(s)),
                Some(c) = self.commands.recv() => inputs.push(Item::command(c)),
                () = sleep_until(deadline) => inputs.push(Item::tick()),
                // The writer went degraded or direct, or drained more: settled at the top.
                () = degraded::changed(&mut self.degraded) => continue,
                // Kept batches still to commit: the next slice, at the top.
                () = std::future::ready(()), if self.settling() => continue,
                Some(s) = self.bulk.recv() => inputs.push(Item::signal(s)),
                else => break,
            }
            // Take whatever else is waiting without waiting: all life-critical first, then
            // operators' commands, then the rest.
            while inputs.len() < self.cfg.max_batch {
                match self.critical.try_recv() {
                    Ok(s) => inputs.push(Item::signal(s)),
                    Err(_) => break,
                }
            }
            while inputs.len() < self.cfg.max_batch {
                match self.commands.try_recv() {
                    Ok(c) => inputs.push(Item::command(c)),
                    Err(_) => break,
                }
            }
            // A batch holding a life-critical signal or a command commits without bulk
            // inputs: a storm's batches carry large group-incident records, and the pendant
            // must not wait for one of those to commit on top of the one already in flight.
            let urgent = inputs.iter().any(|i| i.reply.is_some()) || self.critical_in(&inputs);
            while !urgent && inputs.len() < self.cfg.max_batch {
                match self.bulk.try_recv() {
                    Ok(s) => inputs.push(Item::signal(s)),
                    Err(_) => break,
                }
            }
            let batch = std::mem::take(&mut inputs);
            let mode = if urgent { Mode::Urgent } else { Mode::Bulk };
            self.process(batch, mode, &shutdown).await;
            if self.catch_up {
                // A commit failed and later ones succeed: the database is back, so look for
                // what the failed one left untriaged at the next catch-up, soon.
                next_catch_up =
                    next_catch_up.min(tokio::time::Instant::now() + self.cfg.catch_up_age);
            }
        }
        // Write held group changes before stopping: one attempt (shutdown is already under
        // way); if it fails, their signals are replayed on the next start.
        if !self.held.is_empty() {
            self.process(Vec::new(), Mode::Final, &shutdown).await;
        }
        self.await_background().await;
        self.report_deferred_at_stop();
    }

    /// Publishes how many inputs wait in each lane.
    fn lane_depths(&self) {
        for (lane, n) in [
            ("life_critical", self.critical.len()),
            ("bulk", self.bulk.len()),
            ("commands", self.commands.len()),
        ] {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(m::ENGINE_LANE_DEPTH, "lane" => lane).set(n as f64);
        }
    }

    /// Whether any input is a signal from the life-critical lane.
    fn critical_in(&self, inputs: &[Item]) -> bool {
        inputs.iter().any(|i| {
            matches!(&i.input, Input::Signal(s) if lane_of(&s.what, s.device.as_ref(), self.core.classifier()) == Priority::LifeCritical)
        })
    }

    /// Runs one input through the core. A panic in the core (a bug; the core is written and
    /// fuzzed never to) is isolated to this input: its partial effects are dropped, it is
    /// counted and logged, and a signal is offered again as an unreadable signal ("could not
    /// triage"), so it still reaches an operator and the engine goes on.
    fn handle(
        &mut self,
        input: Input,
        at: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let from = effects.len();
        let retry = match &input {
            Input::Signal(s) => Some(s.clone()),
            _ => None,
        };
        let kind = input_kind(&input);
        let core = &mut self.core;
        let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| {
            core.handle_into(input, at, effects);
        })) else {
            self.keep_closed();
            return Ok(());
        };
        effects.truncate(from);
        let message = panic_message(&*panic);
        metrics::counter!(m::ENGINE_INPUT_FAILURES, "input" => kind).increment(1);
        tracing::error!(input = kind, error = %message, "triage failed on an input; isolated");
        let Some(mut s) = retry else {
            return Err(message);
        };
        s.what = SignalWhat::Unknown {
            raw_summary: warden_core::clip(
                &format!(
                    "could not triage ({message}): {}",
                    warden_core::describe(&s.what)
                ),
                warden_core::MAX_SUMMARY_BYTES,
            ),
        };
        let core = &mut self.core;
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            core.handle_into(Input::Signal(s), at, effects);
        })) {
            Ok(()) => {
                self.keep_closed();
                Ok(())
            }
            Err(again) => {
                effects.truncate(from);
                Err(panic_message(&*again))
            }
        }
    }

    /// Keeps the records of the incidents the last input resolved, for the batch's rows.
    fn keep_closed(&mut self) {
        for i in self.core.closed_by_last_input() {
            self.closed.insert(i.id.0, i.clone());
        }
    }

    /// Runs inputs through the core and persists the result. `false` when the batch could
    /// not be stored (given up after its attempts, or shutdown came first): its commands
    /// are answered with an error and its signals stay untriaged for the catch-up.
    async fn process(
        &mut self,
        inputs: Vec<Item>,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> bool {
        self.health.busy();
        let done = self.process_inner(inputs, mode, shutdown).await;
        self.health.progressed();
        done
    }

    async fn process_inner(
        &mut self,
        inputs: Vec<Item>,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut effects = Vec::new();
        let mut triaged = Vec::new();
        let mut replies: Vec<(Reply, std::ops::Range<usize>)> = Vec::new();
        // Effects of signals held back (see `Held`), by index range into `effects`.
        let mut held_ranges = Vec::new();
        // Operators' commands carried out, for the journal if the batch is deferred.
        let mut kept = Vec::new();
        let mut first_at = None;
        let mut from_journal = false;
        for Item {
            mut input,
            reply,
            mark,
            at,
        } in inputs
        {
            from_journal |= at.is_some();
            let at = at.unwrap_or_else(now);
            first_at.get_or_insert(at);
            let is_signal = matches!(input, Input::Signal(_));
            if let Input::Signal(s) = &mut input {
                // A signal names its device by id only; the registry holds the rest (test
                // interval, area, type, client), which the signal must not overwrite.
                if let Some(d) = &mut s.device
                    && let Some((info, _)) = self.core.device(d.id)
                {
                    *d = info.clone();
                }
            }
            self.report.inputs += 1;
            let entry = reply.as_ref().and_then(|_| self.journal_entry(&input, at));
            let from = effects.len();
            let handled = self.handle(input, at, &mut effects);
            if let Some(reply) = reply {
                match handled {
                    Ok(()) => {
                        if journal::carried_out(&effects[from..]) {
                            kept.extend(entry);
                        }
                        replies.push((reply, from..effects.len()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(EngineError::Failed(e)));
                    }
                }
            } else if is_signal && handled.is_ok() {
                match self.group_only(&effects[from..]) {
                    Some(groups) => {
                        self.held.marks.extend(mark);
                        self.held.groups.extend(groups);
                        self.held
                            .since
                            .get_or_insert_with(tokio::time::Instant::now);
                        held_ranges.push(from..effects.len());
                    }
                    None => triaged.extend(mark),
                }
            }
        }
        self.report.effects += effects.len() as u64;
        let mut own: Vec<&Effect> = Vec::with_capacity(effects.len());
        let mut held_iter = held_ranges.iter().peekable();
        for (i, e) in effects.iter().enumerate() {
            while held_iter.peek().is_some_and(|r| r.end <= i) {
                held_iter.next();
            }
            if held_iter.peek().is_some_and(|r| r.contains(&i)) {
                self.held.effects.push(e.clone());
            } else {
                own.push(e);
            }
        }
        let touches_held = self.held.touched_by(&own);
        let due = self.held.is_due();
        let flush_held = matches!(mode, Mode::Replay | Mode::Final)
            || due
            || touches_held
            || !replies.is_empty();
        let held = if flush_held && !self.held.is_empty() {
            std::mem::take(&mut self.held)
        } else {
            Held::default()
        };
        triaged.extend(held.marks.iter().copied());
        // Held changes happened before this batch's own effects: their history lines go first.
        let own: Vec<&Effect> = held.effects.iter().chain(own).collect();
        let mut batch = self.batch(triaged, &own, &held.groups);
        batch.at = first_at.map(Timestamp::to_offset);
        // A batch that answers someone (or applies an answered command again), or that
        // offers a life-critical alarm, waits for the WAL flush: none may be lost in a
        // Postgres crash while Warden runs on.
        batch.must_flush = !replies.is_empty()
            || from_journal
            || own.iter().any(|e| {
                matches!(
                    e,
                    Effect::Offer {
                        priority: Priority::LifeCritical,
                        ..
                    }
                )
            });
        if batch.is_empty() {
            for (reply, range) in replies {
                let _ = reply.send(Ok(effects[range].to_vec()));
            }
            return true;
        }
        let published = self.published(&effects, &batch);
        let ids: BTreeSet<i64> = batch.incidents.iter().map(|i| i.id).collect();
        self.report.batches += 1;
        if self.deferring() && mode != Mode::Final {
            // Degraded: triage goes on from memory; the batch waits for the spool's drain
            // (behind a background batch of the same incidents, which may still be finding
            // out that the database is gone).
            if self
                .background
                .as_ref()
                .is_some_and(|bg| !bg.incidents.is_disjoint(&ids))
            {
                self.await_background().await;
            }
            self.journal_keep(&kept);
            self.defer(batch, Some(published));
            for (reply, range) in replies {
                let _ = reply.send(Ok(effects[range].to_vec()));
            }
            return true;
        }
        if mode == Mode::Bulk {
            // Bulk batches commit in the background, one at a time and in order, so that a
            // life-critical signal arriving meanwhile is committed beside it instead of
            // after it. The core has already moved on; its effects are published once
            // durable.
            self.await_background().await;
            let store = self.store.clone();
            let changes = self.changes.clone();
            let shutdown = shutdown.clone();
            let timeout = self.cfg.db_timeout;
            let degraded = self.degraded.clone();
            let task = tokio::spawn(
                async move {
                    let stored =
                        commit(&store, batch, timeout, &shutdown, degraded.as_ref(), None).await;
                    match &stored {
                        Stored::Yes => published.publish(&changes),
                        Stored::Deferred(b) => published.uncommitted(b).publish(&changes),
                        Stored::GivenUp => {}
                    }
                    stored
                }
                .in_current_span(),
            );
            self.background = Some(Background {
                incidents: ids,
                task,
            });
            return true;
        }
        // Inline, at once: it waits for a background commit only when both write the same
        // incident (the rows must land in order).
        if self
            .background
            .as_ref()
            .is_some_and(|bg| !bg.incidents.is_disjoint(&ids))
        {
            self.await_background().await;
        }
        let mut published = Some(published);
        let stored = if mode == Mode::Final {
            if commit_once(&self.store, &batch, self.cfg.db_timeout)
                .await
                .is_ok()
            {
                Stored::Yes
            } else {
                Stored::GivenUp
            }
        } else {
            // Should the database go away during the commit, the batch is shown at once.
            let changes = &self.changes;
            let mut early = |b: &TriageBatch| {
                if let Some(p) = published.take() {
                    p.uncommitted(b).publish(changes);
                }
            };
            commit(
                &self.store,
                batch,
                self.cfg.db_timeout,
                shutdown,
                self.degraded.as_ref(),
                Some(&mut early),
            )
            .await
        };
        if let Stored::Deferred(batch) = stored {
            self.journal_keep(&kept);
            self.defer(batch, published);
            for (reply, range) in replies {
                let _ = reply.send(Ok(effects[range].to_vec()));
            }
            return true;
        }
        if matches!(stored, Stored::GivenUp) {
            self.catch_up = true;
            for (reply, _) in replies {
                let _ = reply.send(Err(EngineError::Failed(
                    "its effects could not be stored; nothing was recorded".into(),
                )));
            }
            return false;
        }
        if let Some(p) = published {
            p.publish(&self.changes);
        }
        for (reply, range) in replies {
            // The asker may have given up (timeout, disconnect): the effects stand anyway.
            let _ = reply.send(Ok(effects[range].to_vec()));
        }
        true
    }

    /// Waits for the bulk batch committing in the background, if any.
    async fn await_background(&mut self) {
        if let Some(bg) = self.background.take() {
            match bg.task.await {
                Ok(Stored::Yes) => {}
                // Published by the task already; committed in order after the drain.
                Ok(Stored::Deferred(batch)) => self.deferred.push_back(batch),
                Ok(Stored::GivenUp) => self.catch_up = true,
                Err(e) => {
                    self.catch_up = true;
                    tracing::error!(error = %e, "background triage commit task failed");
                }
            }
        }
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Signal(_) => "signal",
        Input::Tick => "tick",
        _ => "command",
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
