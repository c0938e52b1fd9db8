use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;
use warden_core::{
    Change, Classifier, Config, DeviceInfo, Effect, Incident, IncidentState, Input, Micros, Name,
    Priority, SignalId, SignalIn, SlaConfig, Snapshot, Source, Timestamp, Triage, lane_of,
};
use warden_store::{EventRow, IncidentRow, PendingSignal, Store, TriageBatch};
use warden_telemetry as m;

use crate::what::signal_what;

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
        }
    }
}

/// What ingest and the console hold: committed signals in, operator commands in, committed
/// changes out.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    critical: mpsc::Sender<SignalIn>,
    bulk: mpsc::Sender<SignalIn>,
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<Arc<Changes>>,
    classifier: Arc<Classifier>,
    sla: SlaConfig,
}

/// An operator command (or a registry change) and where its effects go once durable.
#[derive(Debug)]
struct Command {
    input: Input,
    reply: oneshot::Sender<Vec<Effect>>,
}

/// The engine stopped before the command's effects became durable; nothing is known to
/// have happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the triage engine is not running")]
pub struct EngineStopped;

/// Incidents changed by one committed engine batch, published after COMMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Ids of the incidents whose current-state rows changed.
    pub incidents: Vec<i64>,
    /// Life-critical incidents offered in this batch, with the arrival time of their first
    /// signal (for the arrival-to-console latency measure).
    pub offered_life_critical: Vec<(i64, OffsetDateTime)>,
}

impl EngineHandle {
    /// Hands over one committed signal (the caller has already made it durable). Waits when
    /// the lane is full: back-pressure, never a drop. `false` means the engine stopped; the
    /// signal is still replayed from the database on the next start.
    pub async fn submit(&self, c: &CommittedSignal<'_>) -> bool {
        let signal = signal_in(c);
        let lane = if lane_of(&signal.what, signal.device.as_ref(), &self.classifier)
            == Priority::LifeCritical
        {
            &self.critical
        } else {
            &self.bulk
        };
        lane.send(signal).await.is_ok()
    }

    /// Runs an operator command (claim, release, note, resolve, take over) or a registry
    /// change through the core and returns its effects once they are durable. A refusal is
    /// an [`Effect::Rejected`] among them.
    pub async fn command(&self, input: Input) -> Result<Vec<Effect>, EngineStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command { input, reply })
            .await
            .map_err(|_| EngineStopped)?;
        rx.await.map_err(|_| EngineStopped)
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
    pub kind: &'a str,
    pub decoded: &'a Value,
    pub received_at: OffsetDateTime,
}

fn signal_in(c: &CommittedSignal<'_>) -> SignalIn {
    SignalIn {
        id: SignalId(c.id.as_u128()),
        source: c.source,
        link: Name::new(c.link),
        account: c.account.map(Name::new),
        device: c.device_id.map(|id| DeviceInfo {
            id,
            area: None,
            test_interval: None,
            device_type: None,
            client: None,
        }),
        what: signal_what(c.kind, c.decoded),
        received_at: ts(c.received_at),
    }
}

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_micros(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
}

fn wall(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_micros()) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn now() -> Timestamp {
    ts(OffsetDateTime::now_utc())
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
    let classifier = Arc::new(Classifier::new(&cfg.core));
    let heard: HashMap<i64, OffsetDateTime> =
        store.supervised_last_heard().await?.into_iter().collect();
    let devices: Vec<(DeviceInfo, Option<Timestamp>)> = store
        .device_records_for_triage()
        .await?
        .into_iter()
        .map(|(d, client)| {
            let last = heard.get(&d.id).map(|t| ts(*t));
            (device_info(&d, client), last)
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

    let (critical_tx, critical) = mpsc::channel(cfg.critical_capacity);
    let (bulk_tx, bulk) = mpsc::channel(cfg.bulk_capacity);
    let (commands_tx, commands) = mpsc::channel(cfg.command_capacity);
    let (changes, _) = broadcast::channel(cfg.changes_capacity.max(1));
    let handle = EngineHandle {
        critical: critical_tx,
        bulk: bulk_tx,
        commands: commands_tx,
        changes: changes.clone(),
        classifier,
        sla: cfg.core.sla,
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
        background: None,
    };
    let task = tokio::spawn(
        async move {
            engine.replay(&shutdown).await;
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
    critical: mpsc::Receiver<SignalIn>,
    bulk: mpsc::Receiver<SignalIn>,
    commands: mpsc::Receiver<Command>,
    changes: broadcast::Sender<Arc<Changes>>,
    report: EngineReport,
    held: Held,
    background: Option<Background>,
}

/// How long a storm group's membership changes may wait before they are written.
const GROUP_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Storm-group membership changes not yet written. A storm group's record lists every
/// member unit; rewriting it for every batch of a 20,000-unit storm made each commit large
/// and slow, and a pendant press waited behind those commits. Signals whose only effect is
/// joining (or leaving) an open group are held here, their "triaged" marks included, and
/// written with one copy of each group's record at most every [`GROUP_FLUSH_EVERY`], or at
/// once when anything else touches the group, a command is answered, or the engine stops.
/// A crash loses only held work: the marks were never written, so those signals are
/// replayed into the rebuilt groups on the next start.
#[derive(Debug, Default)]
struct Held {
    marks: Vec<Uuid>,
    effects: Vec<Effect>,
    groups: BTreeSet<u64>,
    since: Option<tokio::time::Instant>,
}

/// The core's view of a device record.
pub fn device_info(d: &warden_store::DeviceRecord, client: Option<i64>) -> DeviceInfo {
    DeviceInfo {
        id: d.id,
        area: d.area.as_deref().map(Name::new),
        test_interval: d
            .test_interval_seconds
            .map(|s| Micros::from_micros(i64::from(s) * 1_000_000)),
        device_type: d.device_type.as_deref().map(Name::new),
        client,
    }
}

impl Engine {
    /// Feeds committed-but-untriaged signals back through the core, oldest first.
    async fn replay(&mut self, shutdown: &CancellationToken) {
        let since = OffsetDateTime::now_utc() - self.cfg.replay_window;
        loop {
            let pending = match self.store.untriaged_signals(since, 1000).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read untriaged signals; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if pending.is_empty() {
                return;
            }
            let n = pending.len();
            let inputs: Vec<(Input, Option<oneshot::Sender<Vec<Effect>>>)> = pending
                .iter()
                .map(|p: &PendingSignal| {
                    let input = Input::Signal(signal_in(&CommittedSignal {
                        id: p.id,
                        source: p.source,
                        link: &p.link_id,
                        account: p.account.as_deref(),
                        device_id: p.device_id,
                        kind: &p.kind,
                        decoded: &p.decoded,
                        received_at: p.received_at,
                    }));
                    (input, None)
                })
                .collect();
            self.report.replayed += n as u64;
            tracing::info!(signals = n, "replaying signals committed but not triaged");
            // Flushed at once: a held signal is still "untriaged" in the database, and the
            // next page of this replay must not read it again.
            self.process(inputs, true, false, shutdown).await;
            self.await_background().await;
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let mut inputs = Vec::with_capacity(self.cfg.max_batch);
        loop {
            let core_deadline = self.core.next_deadline().map(|d| {
                let wait = d.since(now()).as_micros().max(0);
                tokio::time::Instant::now()
                    + Duration::from_micros(u64::try_from(wait).unwrap_or(0))
            });
            let flush_deadline = self.held.since.map(|t| t + GROUP_FLUSH_EVERY);
            let deadline = match (core_deadline, flush_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                // Biased: life-critical first, then ticks, then the bulk lane.
                biased;
                // Cancel-safe: `recv` loses nothing when another branch wins.
                () = shutdown.cancelled() => break,
                Some(s) = self.critical.recv() => inputs.push((Input::Signal(s), None)),
                Some(c) = self.commands.recv() => inputs.push((c.input, Some(c.reply))),
                () = sleep_until(deadline) => inputs.push((Input::Tick, None)),
                Some(s) = self.bulk.recv() => inputs.push((Input::Signal(s), None)),
                else => break,
            }
            // Take whatever else is waiting without waiting: all life-critical first, then
            // operators' commands, then the rest.
            while inputs.len() < self.cfg.max_batch {
                match self.critical.try_recv() {
                    Ok(s) => inputs.push((Input::Signal(s), None)),
                    Err(_) => break,
                }
            }
            while inputs.len() < self.cfg.max_batch {
                match self.commands.try_recv() {
                    Ok(c) => inputs.push((c.input, Some(c.reply))),
                    Err(_) => break,
                }
            }
            // A batch holding a life-critical signal or a command commits without bulk
            // inputs: a storm's batches carry large group-incident records, and the pendant
            // must not wait for one of those to commit on top of the one already in flight.
            let urgent =
                inputs.iter().any(|(_, reply)| reply.is_some()) || self.critical_in(&inputs);
            while !urgent && inputs.len() < self.cfg.max_batch {
                match self.bulk.try_recv() {
                    Ok(s) => inputs.push((Input::Signal(s), None)),
                    Err(_) => break,
                }
            }
            let batch = std::mem::take(&mut inputs);
            self.process(batch, false, urgent, &shutdown).await;
        }
        // Write held group changes before stopping: one attempt (shutdown is already under
        // way); if it fails, their signals are replayed on the next start.
        if !self.held.marks.is_empty() {
            self.process(Vec::new(), true, true, &shutdown).await;
        }
        self.await_background().await;
    }

    /// Whether any input is a signal from the life-critical lane.
    fn critical_in(&self, inputs: &[(Input, Option<oneshot::Sender<Vec<Effect>>>)]) -> bool {
        inputs.iter().any(|(i, _)| {
            matches!(i, Input::Signal(s) if lane_of(&s.what, s.device.as_ref(), self.core.classifier()) == Priority::LifeCritical)
        })
    }

    /// Runs inputs through the core and persists the result, retrying until it is durable.
    async fn process(
        &mut self,
        inputs: Vec<(Input, Option<oneshot::Sender<Vec<Effect>>>)>,
        flush: bool,
        urgent: bool,
        shutdown: &CancellationToken,
    ) {
        let mut effects = Vec::new();
        let mut triaged = Vec::new();
        let mut replies = Vec::new();
        // Effects of signals held back (see `Held`), by index range into `effects`.
        let mut held_ranges = Vec::new();
        for (mut input, reply) in inputs {
            let signal = match &input {
                Input::Signal(s) => Some(Uuid::from_u128(s.id.0)),
                _ => None,
            };
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
            let from = effects.len();
            self.core.handle_into(input, now(), &mut effects);
            if let Some(reply) = reply {
                replies.push((reply, from..effects.len()));
            } else if let Some(id) = signal {
                match self.group_only(&effects[from..]) {
                    Some(groups) => {
                        self.held.marks.push(id);
                        self.held.groups.extend(groups);
                        self.held
                            .since
                            .get_or_insert_with(tokio::time::Instant::now);
                        held_ranges.push(from..effects.len());
                    }
                    None => triaged.push(id),
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
        let touches_held = own.iter().any(|e| {
            e.incident()
                .is_some_and(|id| self.held.groups.contains(&id.0))
        });
        let due = self
            .held
            .since
            .is_some_and(|t| t.elapsed() >= GROUP_FLUSH_EVERY);
        let flush =
            !self.held.marks.is_empty() && (flush || due || touches_held || !replies.is_empty());
        let held = if flush {
            std::mem::take(&mut self.held)
        } else {
            Held::default()
        };
        triaged.extend(held.marks.iter().copied());
        own.extend(held.effects.iter());
        let mut batch = self.batch(triaged, &own, &held.groups);
        batch.must_flush = !replies.is_empty();
        if batch.is_empty() {
            for (reply, range) in replies {
                let _ = reply.send(effects[range].to_vec());
            }
            return;
        }
        let published = self.published(&effects, &batch);
        let ids: BTreeSet<i64> = batch.incidents.iter().map(|i| i.id).collect();
        self.report.batches += 1;
        if urgent {
            // Inline, at once: it waits for a background commit only when both write the
            // same incident (the rows must land in order).
            if self
                .background
                .as_ref()
                .is_some_and(|bg| !bg.incidents.is_disjoint(&ids))
            {
                self.await_background().await;
            }
            if !commit(&self.store, &batch, shutdown).await {
                return;
            }
            published.publish(&self.changes);
            for (reply, range) in replies {
                // The asker may have given up (timeout, disconnect): the effects stand anyway.
                let _ = reply.send(effects[range].to_vec());
            }
        } else {
            // Bulk batches commit in the background, one at a time and in order, so that a
            // life-critical signal arriving meanwhile is committed beside it instead of
            // after it. The core has already moved on; its effects are published once
            // durable.
            self.await_background().await;
            let store = self.store.clone();
            let changes = self.changes.clone();
            let shutdown = shutdown.clone();
            let task = tokio::spawn(async move {
                if commit(&store, &batch, &shutdown).await {
                    published.publish(&changes);
                }
            });
            self.background = Some(Background {
                incidents: ids,
                task,
            });
        }
    }

    /// Waits for the bulk batch committing in the background, if any.
    async fn await_background(&mut self) {
        if let Some(bg) = self.background.take()
            && let Err(e) = bg.task.await
        {
            tracing::error!(error = %e, "background triage commit task failed");
        }
    }

    /// What to announce once a batch is durable.
    fn published(&self, effects: &[Effect], batch: &TriageBatch) -> Published {
        let open_changed = effects
            .iter()
            .any(|e| matches!(e, Effect::IncidentOpened { .. } | Effect::Resolved { .. }));
        Published {
            offers: effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Offer {
                        incident,
                        priority,
                        arrived_at,
                        ..
                    } => Some((incident.0, *priority, *arrived_at)),
                    _ => None,
                })
                .collect(),
            late: effects
                .iter()
                .filter(|e| matches!(e, Effect::Overflow { .. } | Effect::Critical { .. }))
                .cloned()
                .collect(),
            open: open_changed.then(|| self.core.open_incident_count()),
            incidents: batch.incidents.iter().map(|i| i.id).collect(),
        }
    }

    /// The storm groups a signal's effects only added it to (or restored it in), or `None`
    /// when it did anything else: those are the effects that may be held back.
    fn group_only(&self, effects: &[Effect]) -> Option<BTreeSet<u64>> {
        let mut groups = BTreeSet::new();
        for e in effects {
            match e {
                Effect::IncidentUpdated {
                    incident,
                    change: Change::GroupMember { .. } | Change::GroupMemberRestored { .. },
                    ..
                } if self
                    .core
                    .incident(*incident)
                    .is_some_and(|i| i.is_open() && i.group.is_some()) =>
                {
                    groups.insert(incident.0);
                }
                Effect::Audit(_) => {}
                _ => return None,
            }
        }
        (!groups.is_empty()).then_some(groups)
    }

    fn batch(&self, triaged: Vec<Uuid>, effects: &[&Effect], extra: &BTreeSet<u64>) -> TriageBatch {
        let mut touched: BTreeSet<u64> = extra.clone();
        let mut events = Vec::with_capacity(effects.len());
        let mut outbox = Vec::new();
        let mut resolved: HashMap<u64, Value> = HashMap::new();
        for e in effects {
            let v = serde_json::to_value(*e).unwrap_or_default();
            let kind = v["type"].as_str().unwrap_or("effect").to_owned();
            let incident = e.incident().map(|i| i.0);
            if let Some(id) = incident {
                touched.insert(id);
                if kind == "resolved" {
                    resolved.insert(id, v.clone());
                }
            }
            let row = EventRow {
                incident_id: incident.and_then(|i| i64::try_from(i).ok()),
                kind: kind.clone(),
                effect: v,
            };
            if matches!(kind.as_str(), "overflow" | "critical" | "fail_to_report") {
                outbox.push(row.clone());
            }
            events.push(row);
        }
        let incidents = touched
            .into_iter()
            .filter_map(|id| self.incident_row(id, resolved.get(&id)))
            .collect();
        TriageBatch {
            triaged,
            events,
            incidents,
            outbox,
            must_flush: true,
        }
    }

    /// The current-state row of an incident the core still holds; a resolved incident has
    /// left the core, so its row is rebuilt from the last persisted record plus the
    /// resolution effect.
    fn incident_row(&self, id: u64, resolved: Option<&Value>) -> Option<IncidentRow> {
        let inc = self.core.incident(warden_core::IncidentId(id));
        match inc {
            Some(i) => Some(row_of(i)),
            None => resolved.map(|r| {
                // The history holds the full story; the row records the closure.
                let at = r["at"].as_i64().map_or_else(OffsetDateTime::now_utc, |us| {
                    wall(Timestamp::from_micros(us))
                });
                IncidentRow {
                    id: i64::try_from(id).unwrap_or(i64::MAX),
                    priority: r["priority"].as_str().unwrap_or("urgent").to_owned(),
                    kind: r["kind"].as_str().unwrap_or("unknown").to_owned(),
                    state: "resolved".into(),
                    device_id: None,
                    raised_at: at,
                    offered_at: None,
                    claimed_at: None,
                    answer_time_us: None,
                    resolved_at: Some(at),
                    signal_count: r["signal_count"]
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .unwrap_or(0),
                    doc: r.clone(),
                }
            }),
        }
    }
}

/// A bulk batch committing in the background and the incidents it writes.
#[derive(Debug)]
struct Background {
    incidents: BTreeSet<i64>,
    task: tokio::task::JoinHandle<()>,
}

/// What a batch announces once it is durable: metrics, logs and the change feed.
#[derive(Debug)]
struct Published {
    offers: Vec<(u64, Priority, Timestamp)>,
    late: Vec<Effect>,
    open: Option<usize>,
    incidents: Vec<i64>,
}

impl Published {
    fn publish(self, changes: &broadcast::Sender<Arc<Changes>>) {
        let committed = OffsetDateTime::now_utc();
        let mut offered_life_critical = Vec::new();
        for (incident, priority, arrived_at) in self.offers {
            if priority == Priority::LifeCritical {
                offered_life_critical.push((
                    i64::try_from(incident).unwrap_or(i64::MAX),
                    wall(arrived_at),
                ));
            }
            let waited = (committed - wall(arrived_at)).as_seconds_f64().max(0.0);
            metrics::histogram!(m::SIGNAL_TO_OFFER, "priority" => priority.as_str()).record(waited);
            metrics::counter!(m::INCIDENTS_OFFERED, "priority" => priority.as_str()).increment(1);
        }
        for e in &self.late {
            tracing::warn!(effect = ?e, "incident unanswered past its threshold");
        }
        if let Some(open) = self.open {
            metrics::gauge!(m::INCIDENTS_OPEN)
                .set(f64::from(u32::try_from(open).unwrap_or(u32::MAX)));
        }
        if !self.incidents.is_empty() {
            // No subscriber (no console connected) is not an error.
            let _ = changes.send(Arc::new(Changes {
                incidents: self.incidents,
                offered_life_critical,
            }));
        }
    }
}

/// Commits one batch, retrying until it is durable; `false` if shutdown came first.
async fn commit(store: &Store, batch: &TriageBatch, shutdown: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        match store.commit_triage(batch).await {
            Ok(()) => {
                metrics::histogram!(m::ENGINE_COMMIT).record(started.elapsed().as_secs_f64());
                return true;
            }
            Err(e) => {
                // The core has moved on; its effects must become durable before anything that
                // depends on them, so the engine holds here (ingest keeps committing signals,
                // which a restart would replay).
                tracing::error!(error = %e, retry_in = ?delay, "triage batch not persisted; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn row_of(i: &Incident) -> IncidentRow {
    IncidentRow {
        id: i64::try_from(i.id.0).unwrap_or(i64::MAX),
        priority: i.priority.as_str().to_owned(),
        kind: i.kind.as_str().to_owned(),
        state: match i.state {
            IncidentState::Raised => "raised",
            IncidentState::Offered => "offered",
            IncidentState::Claimed => "claimed",
            IncidentState::Resolved => "resolved",
        }
        .into(),
        device_id: i.device,
        raised_at: wall(i.raised_at),
        offered_at: i.offered_at.map(wall),
        claimed_at: i.claimed_at.map(wall),
        answer_time_us: i.answer_time.map(Micros::as_micros),
        resolved_at: i.resolved_at.map(wall),
        signal_count: i32::try_from(i.signal_count).unwrap_or(i32::MAX),
        doc: serde_json::to_value(i).unwrap_or_default(),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
