//! A fleet of simulated MQTT alarm units speaking Warden's v1 uplink.
//!
//! Each unit publishes on `{prefix}/v1/devices/{id}/up` with `QoS` 1: `presence: online` after
//! every (re)connect, a heartbeat every `heartbeat_interval` (each unit starting at a random
//! phase), alarms drawn from a weighted mix at `alarm_rate_per_s` for the whole fleet
//! (Poisson arrivals), plus whatever a [`FleetHandle`] schedules: storms, single alarms and
//! deliberately bad payloads.
//!
//! Connections: with `connections = 0` every unit has its own MQTT connection (client id = the
//! unit id) and a last will of `{"v":1,"presence":"offline"}` on its own topic, like a real IP
//! alarm unit. With `connections = k > 0` the units are split into `k` contiguous groups, each
//! publishing through one shared connection, like a gateway: this scales to tens of
//! thousands of units without as many sockets, but MQTT allows one will per connection, so
//! shared connections carry no last will.
//!
//! Every message gets a unique `msg_id`, `{unit}-{run}-{n}`: `run` is derived from the start
//! time so a second run of the same fleet does not reuse ids a database has already seen, and
//! `n` counts per unit. The fleet records when each message was queued, when rumqttc wrote it
//! (`Event::Outgoing(Outgoing::Publish(pkid))`) and when its PUBACK arrived
//! (`Event::Incoming(Packet::PubAck)`, matched by packet id), so tests can compute
//! publish→PUBACK latency and check that every acknowledged message reached the database.
//!
//! Matching packet ids: rumqttc assigns a packet id inside its event loop and reports it only
//! in the `Outgoing::Publish` event. It handles requests strictly in channel order, so each
//! connection keeps a FIFO of the messages it handed to rumqttc, in that order, and pairs each
//! `Outgoing::Publish` with the FIFO's head. When a connection drops, rumqttc moves what was
//! in flight and what was still in its channel into `EventLoop::pending`; the fleet counts
//! those, clears `pending` itself and publishes the same messages again after reconnecting
//! (same `msg_id`, so Warden can drop duplicates). A unit thus keeps a message until it is
//! acknowledged, as real firmware does, and the FIFO stays exact.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Request,
};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_protocol::mqtt::{self, Alarm, AlarmKind, Heartbeat, Payload, Presence};

use crate::rng::Rng;
use crate::{LatencySummary, alarm_name};

/// Requests a connection's rumqttc channel holds before publishing waits.
pub const CLIENT_CHANNEL_CAPACITY: usize = 64;
/// Scheduling commands a connection's queue holds before [`FleetHandle`] calls wait.
pub const COMMAND_CAPACITY: usize = 64;
/// Longest unit id accepted, leaving room in the 64-character `msg_id` for the run and count.
pub const MAX_DEVICE_ID: usize = 40;

/// Why a fleet could not be set up or a command was refused.
#[derive(Debug, Error)]
pub enum FleetError {
    #[error("invalid fleet configuration: {0}")]
    Config(String),
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("the fleet is not running any more")]
    Stopped,
}

/// How connections end when the fleet stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disconnect {
    /// Send MQTT DISCONNECT: the broker discards the last wills.
    #[default]
    Graceful,
    /// Drop the sockets, as a power cut would: the broker publishes the last wills.
    Abrupt,
}

/// What the fleet looks like and how it behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub host: String,
    pub port: u16,
    /// Topic prefix: units publish on `{prefix}/v1/devices/{id}/up`.
    pub prefix: String,
    pub devices: usize,
    /// Units are named `{id_prefix}{n:05}`, n from 1.
    pub id_prefix: String,
    /// 0: one connection per unit (with a last will); k: k shared connections (no will).
    pub connections: usize,
    pub heartbeat_interval: Duration,
    /// Alarms per second across the whole fleet (Poisson arrivals); 0 for none.
    pub alarm_rate_per_s: f64,
    /// Weighted alarm kinds for the random alarms.
    pub alarm_mix: Vec<(AlarmKind, u32)>,
    pub keep_alive: Duration,
    /// `QoS` 1 messages in flight per connection before rumqttc waits for PUBACKs.
    pub inflight: u16,
    pub reconnect_delay: Duration,
    /// How long [`Fleet::run`] waits for outstanding PUBACKs after shutdown.
    pub drain_timeout: Duration,
    pub disconnect: Disconnect,
    /// Include the device clock (`sent_at`, RFC 3339) in payloads.
    pub sent_at: bool,
    pub seed: u64,
    /// Broker passwords by unit id (user name = client id = unit id), for a broker that
    /// requires logins; units not in it connect without one.
    pub passwords: UnitPasswords,
}

/// Broker passwords of simulated units; `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UnitPasswords(pub std::sync::Arc<std::collections::HashMap<String, String>>);

impl std::fmt::Debug for UnitPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnitPasswords({} units, [redacted])", self.0.len())
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            prefix: "warden".into(),
            devices: 10,
            id_prefix: "sim-".into(),
            connections: 0,
            heartbeat_interval: Duration::from_mins(1),
            alarm_rate_per_s: 0.0,
            alarm_mix: crate::default_alarm_mix(),
            keep_alive: Duration::from_secs(30),
            inflight: 100,
            reconnect_delay: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
            disconnect: Disconnect::Graceful,
            sent_at: true,
            seed: 1,
            passwords: UnitPasswords::default(),
        }
    }
}

impl FleetConfig {
    /// Checks the configuration, reporting every problem at once.
    pub fn validate(&self) -> Result<(), FleetError> {
        let mut problems = Vec::new();
        if self.devices == 0 {
            problems.push("devices must be at least 1".to_owned());
        }
        let widest = device_id(&self.id_prefix, self.devices.max(1) - 1);
        if widest.len() > MAX_DEVICE_ID
            || !self
                .id_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            problems.push(format!(
                "id_prefix {:?} must be A-Z a-z 0-9 . _ - and keep ids within {MAX_DEVICE_ID} characters",
                self.id_prefix
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['+', '#']) {
            problems.push(format!(
                "prefix {:?} must be a non-empty topic without wildcards",
                self.prefix
            ));
        }
        if self.heartbeat_interval.is_zero() {
            problems.push("heartbeat_interval must be above zero".into());
        }
        if !self.alarm_rate_per_s.is_finite() || self.alarm_rate_per_s < 0.0 {
            problems.push("alarm_rate_per_s must be zero or positive".into());
        }
        if self.alarm_rate_per_s > 0.0 && self.alarm_mix.iter().all(|&(_, w)| w == 0) {
            problems.push("alarm_mix needs a non-zero weight when alarm_rate_per_s is set".into());
        }
        if self.keep_alive < Duration::from_secs(1) {
            problems.push("keep_alive must be at least 1 s".into());
        }
        if self.inflight == 0 {
            problems.push("inflight must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FleetError::Config(problems.join("; ")))
        }
    }
}

fn device_id(prefix: &str, index: usize) -> String {
    format!("{prefix}{:05}", index + 1)
}

/// What a scheduled job publishes.
#[derive(Debug, Clone)]
enum Job {
    Heartbeat(usize),
    Alarm(usize, AlarmKind),
    /// A payload sent as is; `device` names the record, `topic` is where it goes.
    Raw {
        device: Arc<str>,
        topic: Arc<str>,
        payload: Vec<u8>,
    },
}

#[derive(Debug)]
enum Command {
    Schedule(Vec<(Instant, Job)>),
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    order: u64,
    job: Job,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so the max-heap pops the earliest job (ties in scheduling order).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// Per-connection bookkeeping, shared by its publisher and event-loop tasks. The lock is
/// never held across an `.await`.
#[derive(Debug, Default)]
struct ConnState {
    records: Vec<MessageRecord>,
    /// Payload and topic of each unacknowledged record, kept for publishing again.
    unsent: HashMap<usize, (Arc<str>, Vec<u8>)>,
    /// Records handed to rumqttc whose `Outgoing::Publish` has not been seen, in channel order.
    fifo: VecDeque<usize>,
    by_pkid: HashMap<u16, usize>,
    /// A publish rumqttc parked on a packet-id collision (`Outgoing::AwaitAck`).
    collided: Option<(u16, usize)>,
    /// Records lost with a broken connection, to publish again after reconnecting.
    retry: Vec<usize>,
    pubacked: usize,
}

impl ConnState {
    fn on_outgoing_publish(&mut self, pkid: u16, now: Instant) {
        let idx = match self.collided {
            Some((p, idx)) if p == pkid => {
                self.collided = None;
                Some(idx)
            }
            _ => self.fifo.pop_front(),
        };
        let Some(idx) = idx else {
            warn!(pkid, "outgoing publish matches no queued message");
            return;
        };
        if let Some(r) = self.records.get_mut(idx) {
            r.published_at.get_or_insert(now);
        }
        if let Some(old) = self.by_pkid.insert(pkid, idx) {
            warn!(pkid, old, "packet id reused before its puback");
        }
    }

    fn on_await_ack(&mut self, pkid: u16) {
        if let Some(idx) = self.fifo.pop_front() {
            self.collided = Some((pkid, idx));
        }
    }

    fn on_puback(&mut self, pkid: u16, now: Instant) {
        let Some(idx) = self.by_pkid.remove(&pkid) else {
            warn!(pkid, "puback for an unknown packet id");
            return;
        };
        if let Some(r) = self.records.get_mut(idx)
            && r.pubacked_at.is_none()
        {
            r.pubacked_at = Some(now);
            self.pubacked += 1;
            self.unsent.remove(&idx);
        }
    }

    /// The connection broke: rumqttc has moved what was in flight (packet id set) and what
    /// was in its channel (packet id 0) into `pending`. Those channel requests are the FIFO's
    /// head, in order; requests handed over after the break are still in the channel and stay
    /// in the FIFO. Everything taken out is published again after the reconnect.
    fn on_connection_lost(&mut self, pending: &mut VecDeque<Request>) {
        let drained = pending
            .iter()
            .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
            .count();
        pending.clear();
        let mut lost: Vec<usize> = self.by_pkid.drain().map(|(_, idx)| idx).collect();
        lost.extend(self.collided.take().map(|(_, idx)| idx));
        let n = drained.min(self.fifo.len());
        lost.extend(self.fifo.drain(..n));
        lost.retain(|&idx| {
            self.records
                .get(idx)
                .is_some_and(|r| r.pubacked_at.is_none())
        });
        self.retry.extend(lost);
        self.retry.sort_unstable();
        self.retry.dedup();
    }

    fn unacked(&self) -> usize {
        self.records.len() - self.pubacked
    }
}

/// What a connection's tasks share.
#[derive(Debug)]
struct Conn {
    index: usize,
    client_id: String,
    /// Global indices of the units on this connection.
    devices: std::ops::Range<usize>,
    state: Mutex<ConnState>,
    /// Incremented on every CONNACK; 0 until the first.
    generation: watch::Sender<u64>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What every part of the fleet reads.
#[derive(Debug)]
struct FleetShared {
    config: FleetConfig,
    ids: Vec<Arc<str>>,
    topics: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    per_conn: usize,
    conns: Vec<Arc<Conn>>,
    run_tag: String,
}

impl FleetShared {
    fn conn_of(&self, device: usize) -> usize {
        (device / self.per_conn).min(self.conns.len() - 1)
    }
}

/// A cloneable handle for scheduling traffic and reading the fleet's records while it runs.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    shared: Arc<FleetShared>,
    commands: Vec<mpsc::Sender<Command>>,
    seed: Arc<Mutex<Rng>>,
}

impl FleetHandle {
    /// The unit ids, in order.
    pub fn device_ids(&self) -> Vec<String> {
        self.shared.ids.iter().map(ToString::to_string).collect()
    }

    /// A power cut: `devices` units (the first ones, or all if fewer) each send one alarm of
    /// `kind` at a random moment within `within` from now.
    pub async fn storm(
        &self,
        kind: AlarmKind,
        devices: usize,
        within: Duration,
    ) -> Result<(), FleetError> {
        let now = Instant::now();
        let mut rng = self.fork_rng();
        let n = devices.min(self.shared.ids.len());
        let mut per_conn: HashMap<usize, Vec<(Instant, Job)>> = HashMap::new();
        for d in 0..n {
            let at = now + rng.duration_below(within);
            per_conn
                .entry(self.shared.conn_of(d))
                .or_default()
                .push((at, Job::Alarm(d, kind)));
        }
        info!(
            kind = alarm_name(kind),
            devices = n,
            ?within,
            "storm scheduled"
        );
        for (c, jobs) in per_conn {
            self.send(c, Command::Schedule(jobs)).await?;
        }
        Ok(())
    }

    /// One alarm from one unit, now.
    pub async fn alarm(&self, device: &str, kind: AlarmKind) -> Result<(), FleetError> {
        let d = *self
            .shared
            .index
            .get(device)
            .ok_or_else(|| FleetError::UnknownDevice(device.to_owned()))?;
        let job = Job::Alarm(d, kind);
        self.send(
            self.shared.conn_of(d),
            Command::Schedule(vec![(Instant::now(), job)]),
        )
        .await
    }

    /// Publishes `payload` as it is on `device`'s topic, now. `device` need not belong to the
    /// fleet (to test unknown units); such payloads go through the first connection.
    pub async fn publish_raw(&self, device: &str, payload: Vec<u8>) -> Result<(), FleetError> {
        let topic: Arc<str> = mqtt::topic(&self.shared.config.prefix, device).into();
        self.publish_raw_on(device, topic, payload).await
    }

    /// Publishes `payload` on any topic (a wrong version in the path, a malformed topic),
    /// recorded under `device`.
    pub async fn publish_raw_on(
        &self,
        device: &str,
        topic: impl Into<Arc<str>>,
        payload: Vec<u8>,
    ) -> Result<(), FleetError> {
        let conn = self
            .shared
            .index
            .get(device)
            .map_or(0, |&d| self.shared.conn_of(d));
        let job = Job::Raw {
            device: device.into(),
            topic: topic.into(),
            payload,
        };
        self.send(conn, Command::Schedule(vec![(Instant::now(), job)]))
            .await
    }

    /// Waits until every connection has been accepted by the broker at least once.
    pub async fn wait_connected(&self) {
        for conn in &self.shared.conns {
            let mut rx = conn.generation.subscribe();
            // The sender lives in the shared state this handle keeps alive.
            let _ = rx.wait_for(|g| *g > 0).await;
        }
    }

    /// Connections the broker has accepted at least once so far.
    pub fn connected(&self) -> usize {
        self.shared
            .conns
            .iter()
            .filter(|c| *c.generation.borrow() > 0)
            .count()
    }

    /// Messages not yet acknowledged (PUBACK), across the fleet.
    pub fn unacked(&self) -> usize {
        self.shared.conns.iter().map(|c| c.lock().unacked()).sum()
    }

    /// A snapshot report of everything so far.
    pub fn report(&self) -> FleetReport {
        let messages = self
            .shared
            .conns
            .iter()
            .flat_map(|c| c.lock().records.clone())
            .collect();
        FleetReport::from_records(self.shared.ids.len(), self.shared.conns.len(), messages)
    }

    fn fork_rng(&self) -> Rng {
        let mut seed = self.seed.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = seed.next_u64();
        seed.fork(stream)
    }

    async fn send(&self, conn: usize, cmd: Command) -> Result<(), FleetError> {
        let tx = self.commands.get(conn).ok_or(FleetError::Stopped)?;
        tx.send(cmd).await.map_err(|_| FleetError::Stopped)
    }
}

/// The fleet. Create it with [`Fleet::new`], take a [`handle`](Self::handle), then drive it
/// with [`run`](Self::run).
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<FleetShared>,
    handle: FleetHandle,
    receivers: Vec<mpsc::Receiver<Command>>,
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Result<Self, FleetError> {
        config.validate()?;
        let n = config.devices;
        let conns = if config.connections == 0 {
            n
        } else {
            config.connections.min(n)
        };
        let per_conn = n.div_ceil(conns);
        let ids: Vec<Arc<str>> = (0..n)
            .map(|i| device_id(&config.id_prefix, i).into())
            .collect();
        let topics = ids
            .iter()
            .map(|id| mqtt::topic(&config.prefix, id).into())
            .collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (Arc::clone(id), i))
            .collect();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let run_tag = base36(started.as_secs() * 1000 + u64::from(started.subsec_millis()));
        let shared_conns = (0..conns)
            .map(|c| {
                let devices = (c * per_conn).min(n)..((c + 1) * per_conn).min(n);
                let client_id = if config.connections == 0 {
                    ids[c].to_string()
                } else {
                    format!("{}gw{:04}-{run_tag}", config.id_prefix, c + 1)
                };
                Arc::new(Conn {
                    index: c,
                    client_id,
                    devices,
                    state: Mutex::new(ConnState::default()),
                    generation: watch::channel(0).0,
                })
            })
            .collect();
        let (commands, receivers) = (0..conns).map(|_| mpsc::channel(COMMAND_CAPACITY)).unzip();
        let seed = Arc::new(Mutex::new(Rng::new(config.seed ^ 0x5EED)));
        let shared = Arc::new(FleetShared {
            config,
            ids,
            topics,
            index,
            per_conn,
            conns: shared_conns,
            run_tag,
        });
        Ok(Self {
            handle: FleetHandle {
                shared: Arc::clone(&shared),
                commands,
                seed,
            },
            shared,
            receivers,
        })
    }

    pub fn handle(&self) -> FleetHandle {
        self.handle.clone()
    }

    /// Connects every unit and publishes until `shutdown` completes, then stops creating
    /// messages, waits up to `drain_timeout` for outstanding PUBACKs, disconnects (gracefully
    /// or abruptly, per the configuration) and returns the report.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> FleetReport {
        let Self {
            shared,
            handle,
            receivers,
        } = self;
        let config = &shared.config;
        let stop = CancellationToken::new();
        let finish = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut clients = Vec::with_capacity(shared.conns.len());
        let rng = Rng::new(config.seed);
        info!(
            devices = config.devices,
            connections = shared.conns.len(),
            broker = %format!("{}:{}", config.host, config.port),
            "fleet starting"
        );
        for (conn, commands) in shared.conns.iter().zip(receivers) {
            let (client, eventloop) =
                AsyncClient::new(mqtt_options(&shared, conn), CLIENT_CHANNEL_CAPACITY);
            clients.push(client.clone());
            let span =
                info_span!("mqtt_connection", conn = conn.index, client_id = %conn.client_id);
            tasks.spawn(
                poll_loop(
                    eventloop,
                    Arc::clone(conn),
                    finish.clone(),
                    config.reconnect_delay,
                )
                .instrument(span.clone()),
            );
            let publisher = Publisher {
                shared: Arc::clone(&shared),
                conn: Arc::clone(conn),
                client,
                rng: rng.fork(conn.index as u64),
                counters: vec![0; conn.devices.len()],
                order: 0,
            };
            tasks.spawn(
                publisher
                    .run(commands, stop.clone(), finish.clone())
                    .instrument(span),
            );
        }
        drop(handle);
        shutdown.await;
        info!("fleet stopping, waiting for outstanding pubacks");
        stop.cancel();
        let deadline = Instant::now() + config.drain_timeout;
        while Instant::now() < deadline && shared.conns.iter().any(|c| c.lock().unacked() > 0) {
            sleep(Duration::from_millis(10)).await;
        }
        if config.disconnect == Disconnect::Graceful {
            for client in &clients {
                // A full channel means the connection is stuck; it is then cut below.
                let _ = client.try_disconnect();
            }
            let grace = Instant::now() + Duration::from_secs(2);
            while Instant::now() < grace && tasks.len() > shared.conns.len() {
                let _ = tokio::time::timeout_at(grace, tasks.join_next()).await;
            }
        }
        finish.cancel();
        while tasks.join_next().await.is_some() {}
        let report = FleetReport::from_records(
            shared.ids.len(),
            shared.conns.len(),
            shared
                .conns
                .iter()
                .flat_map(|c| c.lock().records.clone())
                .collect(),
        );
        info!(
            published = report.published,
            pubacked = report.pubacked,
            unacked = report.unacked,
            "fleet stopped"
        );
        report
    }
}

fn mqtt_options(shared: &FleetShared, conn: &Conn) -> MqttOptions {
    let config = &shared.config;
    let mut options = MqttOptions::new(conn.client_id.clone(), config.host.clone(), config.port);
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(true)
        .set_inflight(config.inflight);
    if let Some(password) = config.passwords.0.get(&conn.client_id) {
        options.set_credentials(conn.client_id.clone(), password.clone());
    }
    if config.connections == 0 {
        let will = mqtt::encode_payload(&payload(None, None, |p| {
            p.presence = Some(Presence::Offline);
        }));
        options.set_last_will(LastWill::new(
            shared.topics[conn.devices.start].to_string(),
            will,
            QoS::AtLeastOnce,
            false,
        ));
    }
    options
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).unwrap_or(0)]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A v1 payload with one body filled in by `body`.
fn payload(
    msg_id: Option<String>,
    sent_at: Option<String>,
    body: impl FnOnce(&mut Payload),
) -> Payload {
    let mut p = Payload {
        v: mqtt::VERSION,
        msg_id,
        sent_at,
        seq: None,
        alarm: None,
        heartbeat: None,
        battery: None,
        signal: None,
        contact_id: None,
        presence: None,
    };
    body(&mut p);
    p
}

fn now_rfc3339() -> Option<String> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Drives rumqttc's event loop: records publishes and PUBACKs and reconnects after errors.
async fn poll_loop(
    mut eventloop: EventLoop,
    conn: Arc<Conn>,
    finish: CancellationToken,
    reconnect_delay: Duration,
) {
    let mut errors_in_a_row = 0u32;
    loop {
        let event = tokio::select! {
            biased;
            // Cancelling `poll` may abandon a half-written packet; it is only done when the
            // connection is being dropped anyway.
            () = finish.cancelled() => break,
            event = eventloop.poll() => event,
        };
        let now = Instant::now();
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                errors_in_a_row = 0;
                conn.generation.send_modify(|g| *g += 1);
                debug!(session_present = ack.session_present, "mqtt connected");
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => conn.lock().on_puback(ack.pkid, now),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                conn.lock().on_outgoing_publish(pkid, now);
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => conn.lock().on_await_ack(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                debug!("mqtt disconnected");
                break;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(error) => {
                conn.lock().on_connection_lost(&mut eventloop.pending);
                errors_in_a_row += 1;
                // The first failure is worth a warning; a broker that stays down would
                // otherwise fill the log once a second per connection.
                if errors_in_a_row == 1 {
                    warn!(%error, "mqtt connection lost, reconnecting");
                } else {
                    debug!(%error, errors_in_a_row, "mqtt reconnect failed");
                }
                tokio::select! {
                    biased;
                    // Cancel-safe: both branches only wait.
                    () = finish.cancelled() => break,
                    () = sleep(reconnect_delay) => {}
                }
            }
        }
    }
}

mod publisher;
mod report;
#[cfg(test)]
mod tests;

use publisher::Publisher;
pub use report::*;
