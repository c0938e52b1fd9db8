//! Scenario files: TOML scripts that drive a Sur-Gard receiver and an MQTT fleet together,
//! and the runner behind `warden-sim run`.
//!
//! A scenario has background traffic (the `[mqtt]` fleet's heartbeats and random alarms, the
//! `[surgard]` receiver's events and heartbeats) and a list of timed `[[step]]`s, each with
//! exactly one action:
//!
//! ```toml
//! [[step]]
//! at = "5s"
//! storm = { kind = "mains_fail", devices = 5000, within = "10s" }
//!
//! [[step]]
//! at = "10s"
//! mqtt_alarm = { device = "sim-02500", kind = "pendant" }
//!
//! [[step]]
//! at = "11s"
//! mqtt_raw = { device = "sim-00001", payload = "{not json" }
//!
//! [[step]]
//! at = "12s"
//! surgard_event = { account = "1234", code = 101, zone = 3 }
//!
//! [[step]]
//! at = "13s"
//! surgard_raw = { text = "9", repeat = 600, dc4 = true, expect_reply = true }
//! ```
//!
//! Step times count from the moment the fleet is connected (or from the start when there is
//! no fleet), so a slow broker does not eat into the script.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use warden_protocol::DC4;
use warden_protocol::mqtt::AlarmKind;
use warden_types::Qualifier;

use crate::fleet::{Disconnect, Fleet, FleetConfig, FleetHandle, FleetReport};
use crate::rng::Rng;
use crate::surgard::{
    ReceiverConfig, ReceiverHandle, ReceiverReport, ReceiverSummary, SurGardReceiver,
};
use crate::{BoxedIo, contact_id_code, default_alarm_mix};

/// Why a scenario could not be loaded or run.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario is not valid TOML for this schema: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid scenario: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("scenario needs {0}")]
    MissingTarget(&'static str),
    #[error(transparent)]
    Receiver(#[from] crate::surgard::ReceiverError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_seed() -> u64 {
    1
}
fn default_prefix() -> String {
    "warden".into()
}
fn default_id_prefix() -> String {
    "sim-".into()
}
fn default_mqtt_heartbeat() -> Duration {
    Duration::from_mins(1)
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_inflight() -> u16 {
    100
}
fn default_receiver() -> String {
    "01".into()
}
fn default_line() -> String {
    "1".into()
}
fn default_surgard_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(4)
}
fn default_max_attempts() -> u32 {
    4
}
fn default_accounts() -> Vec<String> {
    vec!["1234".into()]
}
fn default_qualifier() -> Qualifier {
    Qualifier::New
}
fn default_one() -> usize {
    1
}
fn default_zone() -> u16 {
    1
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How long background traffic runs; steps must fall within it.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// How long to wait for outstanding ACKs/PUBACKs at the end.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long to wait for the fleet to connect before starting the clock anyway.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Seed for every random choice, so a run can be repeated.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub mqtt: Option<MqttSection>,
    pub surgard: Option<SurGardSection>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// The `[mqtt]` fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub devices: usize,
    #[serde(default = "default_id_prefix")]
    pub id_prefix: String,
    /// 0: one connection (and last will) per unit; k: k shared gateway connections.
    #[serde(default)]
    pub connections: usize,
    #[serde(default = "default_mqtt_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(default)]
    pub alarm_rate_per_s: f64,
    /// Weights by alarm kind, e.g. `{ pendant = 5, test = 10 }`; a default mix when absent.
    pub alarm_mix: Option<HashMap<AlarmKind, u32>>,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    #[serde(default)]
    pub disconnect: Disconnect,
}

/// The `[surgard]` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurGardSection {
    #[serde(default = "default_receiver")]
    pub receiver: String,
    #[serde(default = "default_line")]
    pub line: String,
    #[serde(default = "default_surgard_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after giving up before trying again; the heartbeat interval when absent.
    #[serde(default, with = "humantime_serde")]
    pub link_retry_interval: Option<Duration>,
    /// Background Contact ID events per second (evenly spaced); 0 for none.
    #[serde(default)]
    pub events_per_s: f64,
    /// Accounts the background events come from, in turn.
    #[serde(default = "default_accounts")]
    pub accounts: Vec<String>,
    /// Weights by alarm kind, mapped to Contact ID codes; a default mix when absent.
    pub alarm_mix: Option<HashMap<AlarmKind, u32>>,
}

/// One timed action. Exactly one of the action fields must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// When, counted from the start of the script.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Free text, logged when the step runs.
    #[serde(default)]
    pub note: String,
    pub storm: Option<StormStep>,
    pub mqtt_alarm: Option<MqttAlarmStep>,
    pub mqtt_raw: Option<MqttRawStep>,
    pub surgard_event: Option<SurGardEventStep>,
    pub surgard_raw: Option<SurGardRawStep>,
}

/// `devices` units each send one `kind` alarm at a random moment within `within`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormStep {
    pub kind: AlarmKind,
    pub devices: usize,
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// One alarm from one unit of the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttAlarmStep {
    pub device: String,
    pub kind: AlarmKind,
}

/// A payload published as it is (bad JSON, wrong version, unknown unit, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttRawStep {
    /// The unit whose topic it goes to; need not belong to the fleet.
    pub device: String,
    pub payload: String,
    /// A topic other than the unit's own (e.g. a `v2` path).
    pub topic: Option<String>,
}

/// A Contact ID event through the receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurGardEventStep {
    pub account: String,
    #[serde(default = "default_qualifier")]
    pub qualifier: Qualifier,
    pub code: u16,
    #[serde(default)]
    pub group: u8,
    #[serde(default = "default_zone")]
    pub zone: u16,
}

/// Raw bytes on the serial line: `text` (TOML escapes such as `\u0014` allowed) or `hex`,
/// repeated `repeat` times, then DC4 if `dc4`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurGardRawStep {
    pub text: Option<String>,
    pub hex: Option<String>,
    #[serde(default = "default_one")]
    pub repeat: usize,
    #[serde(default)]
    pub dc4: bool,
    /// Wait for one reply like a frame (counted as raw ACK/NAK/unanswered, never resent);
    /// otherwise the bytes run into the next frame.
    #[serde(default)]
    pub expect_reply: bool,
}

impl SurGardRawStep {
    /// The bytes this step writes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let unit = match (&self.text, &self.hex) {
            (Some(t), None) => t.as_bytes().to_vec(),
            (None, Some(h)) => decode_hex(h)?,
            _ => return Err("surgard_raw needs exactly one of text or hex".into()),
        };
        let mut bytes = unit.repeat(self.repeat);
        if self.dc4 {
            bytes.push(DC4);
        }
        if bytes.is_empty() {
            return Err("surgard_raw writes no bytes".into());
        }
        Ok(bytes)
    }
}

fn decode_hex(h: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = h.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex {h:?} has an odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("hex {h:?} is not hex digits"))
        })
        .collect()
}

/// Orders a weight map the way [`AlarmKind::ALL`] lists kinds, so a seed gives the same
/// choices whatever the map's iteration order.
fn mix(map: Option<&HashMap<AlarmKind, u32>>) -> Vec<(AlarmKind, u32)> {
    match map {
        None => default_alarm_mix(),
        Some(m) => AlarmKind::ALL
            .iter()
            .filter_map(|k| m.get(k).map(|&w| (*k, w)))
            .collect(),
    }
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks everything that can be checked without running, reporting every problem.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut problems = Vec::new();
        if self.duration.is_zero() {
            problems.push("duration must be above zero".to_owned());
        }
        if let Some(m) = &self.mqtt
            && let Err(e) = self.fleet_config(m, "127.0.0.1", 1883).validate()
        {
            problems.push(e.to_string());
        }
        if let Some(s) = &self.surgard {
            if let Err(e) = receiver_config(s).origin() {
                problems.push(e.to_string());
            }
            if !s.events_per_s.is_finite() || s.events_per_s < 0.0 {
                problems.push("surgard.events_per_s must be zero or positive".into());
            }
            if s.events_per_s > 0.0 && s.accounts.is_empty() {
                problems.push("surgard.accounts must name at least one account".into());
            }
            for a in &s.accounts {
                if let Err(e) = check_account(a) {
                    problems.push(e);
                }
            }
            if s.events_per_s > 0.0 && mix(s.alarm_mix.as_ref()).iter().all(|&(_, w)| w == 0) {
                problems.push("surgard.alarm_mix needs a non-zero weight".into());
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            for p in self.step_problems(step) {
                problems.push(format!(
                    "step {} (at {}): {p}",
                    i + 1,
                    humantime::format_duration(step.at)
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(problems))
        }
    }

    fn step_problems(&self, step: &Step) -> Vec<String> {
        let mut problems = Vec::new();
        let actions = [
            step.storm.is_some(),
            step.mqtt_alarm.is_some(),
            step.mqtt_raw.is_some(),
            step.surgard_event.is_some(),
            step.surgard_raw.is_some(),
        ];
        if actions.iter().filter(|a| **a).count() != 1 {
            problems.push(
                "needs exactly one of storm, mqtt_alarm, mqtt_raw, surgard_event, surgard_raw"
                    .into(),
            );
        }
        if step.at > self.duration {
            problems.push("falls after the scenario's duration".into());
        }
        let needs_mqtt =
            step.storm.is_some() || step.mqtt_alarm.is_some() || step.mqtt_raw.is_some();
        if needs_mqtt && self.mqtt.is_none() {
            problems.push("an MQTT step needs an [mqtt] section".into());
        }
        if (step.surgard_event.is_some() || step.surgard_raw.is_some()) && self.surgard.is_none() {
            problems.push("a Sur-Gard step needs a [surgard] section".into());
        }
        if let (Some(storm), Some(m)) = (&step.storm, &self.mqtt)
            && storm.devices > m.devices
        {
            problems.push(format!(
                "storm of {} devices in a fleet of {}",
                storm.devices, m.devices
            ));
        }
        if let (Some(a), Some(m)) = (&step.mqtt_alarm, &self.mqtt) {
            let known = (0..m.devices).any(|i| format!("{}{:05}", m.id_prefix, i + 1) == a.device);
            if !known {
                problems.push(format!(
                    "mqtt_alarm device {:?} is not in the fleet",
                    a.device
                ));
            }
        }
        if let Some(e) = &step.surgard_event {
            if let Err(p) = check_account(&e.account) {
                problems.push(p);
            }
            if e.code > 999 || e.group > 99 || e.zone > 999 {
                problems
                    .push("surgard_event code, group and zone must fit 3, 2 and 3 digits".into());
            }
        }
        if let Some(r) = &step.surgard_raw
            && let Err(p) = r.bytes()
        {
            problems.push(p);
        }
        problems
    }

    /// The fleet configuration for the `[mqtt]` section against a broker.
    pub fn fleet_config(&self, m: &MqttSection, host: &str, port: u16) -> FleetConfig {
        FleetConfig {
            host: host.to_owned(),
            port,
            prefix: m.prefix.clone(),
            devices: m.devices,
            id_prefix: m.id_prefix.clone(),
            connections: m.connections,
            heartbeat_interval: m.heartbeat_interval,
            alarm_rate_per_s: m.alarm_rate_per_s,
            alarm_mix: mix(m.alarm_mix.as_ref()),
            keep_alive: m.keep_alive,
            inflight: m.inflight,
            drain_timeout: self.drain_timeout,
            disconnect: m.disconnect,
            seed: self.seed,
            ..FleetConfig::default()
        }
    }
}

fn check_account(a: &str) -> Result<(), String> {
    if matches!(a.len(), 4 | 10) && a.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("account {a:?} must be 4 or 10 hex digits"))
    }
}

/// The receiver configuration for a `[surgard]` section.
pub fn receiver_config(s: &SurGardSection) -> ReceiverConfig {
    ReceiverConfig {
        receiver: s.receiver.clone(),
        line: s.line.clone(),
        heartbeat_interval: s.heartbeat_interval,
        ack_timeout: s.ack_timeout,
        max_attempts: s.max_attempts,
        link_retry_interval: s.link_retry_interval.unwrap_or(s.heartbeat_interval),
        ..ReceiverConfig::default()
    }
}

/// Where a scenario's traffic goes.
#[derive(Default)]
pub struct Targets {
    /// The serial line (or any byte stream) the receiver writes to.
    pub serial: Option<BoxedIo>,
    /// The MQTT broker, host and port.
    pub mqtt: Option<(String, u16)>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("serial", &self.serial.is_some())
            .field("mqtt", &self.mqtt)
            .finish()
    }
}

/// What a scenario run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub elapsed_s: f64,
    /// True when shutdown cut the run short.
    pub interrupted: bool,
    pub steps_run: usize,
    pub surgard: Option<ReceiverSummary>,
    pub mqtt: Option<FleetReport>,
    /// Every Sur-Gard event acknowledged (ACK) and every MQTT message too (PUBACK).
    pub all_acknowledged: bool,
    #[serde(skip)]
    pub receiver: Option<ReceiverReport>,
}

type ReceiverTask = tokio::task::JoinHandle<Result<ReceiverReport, crate::surgard::ReceiverError>>;

/// The running parts of a scenario.
struct Running {
    receiver: Option<(ReceiverHandle, ReceiverTask)>,
    receiver_stop: CancellationToken,
    fleet: Option<(FleetHandle, tokio::task::JoinHandle<FleetReport>)>,
    fleet_stop: CancellationToken,
}

/// Runs a scenario until its duration is over (then drains) or `shutdown` completes.
pub async fn run(
    scenario: &Scenario,
    targets: Targets,
    shutdown: impl Future<Output = ()>,
) -> Result<ScenarioReport, ScenarioError> {
    scenario.validate()?;
    let started = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut interrupted = false;
    let running = start(scenario, targets)?;

    if let Some((handle, _)) = &running.fleet {
        let connected = tokio::time::timeout(scenario.connect_timeout, handle.wait_connected());
        match unless(connected, &mut shutdown, &mut interrupted).await {
            Some(Ok(())) => info!("fleet connected"),
            Some(Err(_)) => warn!(
                connected = handle.connected(),
                timeout = ?scenario.connect_timeout,
                "fleet not fully connected, starting anyway"
            ),
            None => {}
        }
    }

    let t0 = Instant::now();
    let generator_stop = CancellationToken::new();
    let generator = match (&scenario.surgard, &running.receiver) {
        (Some(s), Some((handle, _))) if s.events_per_s > 0.0 && !interrupted => Some(tokio::spawn(
            generate_events(
                s.clone(),
                handle.clone(),
                Rng::new(scenario.seed).fork(0x5),
                t0 + scenario.duration,
                generator_stop.clone(),
            )
            .instrument(info_span!("surgard_events", scenario = %scenario.name)),
        )),
        _ => None,
    };
    let steps_run = run_steps(scenario, &running, t0, &mut shutdown, &mut interrupted).await;
    let _ = unless(
        sleep_until(t0 + scenario.duration),
        &mut shutdown,
        &mut interrupted,
    )
    .await;

    generator_stop.cancel();
    if let Some(task) = generator {
        let _ = task.await;
    }
    // Draining is part of a clean stop, so it runs after a shutdown too (bounded by
    // drain_timeout); the fleet drains its PUBACKs the same way inside `Fleet::run`.
    if let Some((handle, _)) = &running.receiver {
        info!("waiting for the computer to acknowledge the buffer");
        if tokio::time::timeout(scenario.drain_timeout, handle.flushed())
            .await
            .is_err()
        {
            warn!(
                unacked = handle.stats().unacked_buffered,
                "drain timeout on the serial link"
            );
        }
    }
    let mut report = finish(scenario, running).await;
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.interrupted = interrupted;
    report.steps_run = steps_run;
    Ok(report)
}

/// Starts the receiver and the fleet the scenario asks for.
fn start(scenario: &Scenario, targets: Targets) -> Result<Running, ScenarioError> {
    if scenario.surgard.is_some() && targets.serial.is_none() {
        return Err(ScenarioError::MissingTarget("a serial port (--serial)"));
    }
    if scenario.mqtt.is_some() && targets.mqtt.is_none() {
        return Err(ScenarioError::MissingTarget(
            "an MQTT broker (--mqtt HOST:PORT)",
        ));
    }
    let fleet_parts = match (&scenario.mqtt, targets.mqtt) {
        (Some(m), Some((host, port))) => Some(Fleet::new(scenario.fleet_config(m, &host, port))?),
        _ => None,
    };
    let receiver_parts = match (&scenario.surgard, targets.serial) {
        (Some(s), Some(io)) => Some(SurGardReceiver::new(io, receiver_config(s))?),
        _ => None,
    };
    let receiver_stop = CancellationToken::new();
    let receiver = receiver_parts.map(|receiver| {
        let handle = receiver.handle();
        let task = tokio::spawn(
            receiver
                .run(receiver_stop.clone().cancelled_owned())
                .instrument(info_span!("surgard_receiver", scenario = %scenario.name)),
        );
        (handle, task)
    });
    let fleet_stop = CancellationToken::new();
    let fleet = fleet_parts.map(|fleet| {
        let handle = fleet.handle();
        let task = tokio::spawn(
            fleet
                .run(fleet_stop.clone().cancelled_owned())
                .instrument(info_span!("fleet", scenario = %scenario.name)),
        );
        (handle, task)
    });
    Ok(Running {
        receiver,
        receiver_stop,
        fleet,
        fleet_stop,
    })
}

/// Runs the steps at their times; returns how many ran.
async fn run_steps(
    scenario: &Scenario,
    running: &Running,
    t0: Instant,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    interrupted: &mut bool,
) -> usize {
    let mut steps: Vec<&Step> = scenario.steps.iter().collect();
    steps.sort_by_key(|s| s.at);
    let fleet = running.fleet.as_ref().map(|(h, _)| h);
    let receiver = running.receiver.as_ref().map(|(h, _)| h);
    let mut steps_run = 0;
    for step in steps {
        if unless(sleep_until(t0 + step.at), shutdown, interrupted)
            .await
            .is_none()
        {
            break;
        }
        match unless(run_step(step, fleet, receiver), shutdown, interrupted).await {
            Some(Ok(())) => steps_run += 1,
            Some(Err(e)) => warn!(error = %e, at = ?step.at, "scenario step failed"),
            None => break,
        }
    }
    steps_run
}

/// Stops the receiver and the fleet (which drains its PUBACKs) and builds the report.
async fn finish(scenario: &Scenario, running: Running) -> ScenarioReport {
    running.receiver_stop.cancel();
    running.fleet_stop.cancel();
    let receiver_report = match running.receiver {
        Some((_, task)) => match task.await {
            Ok(Ok(report)) => Some(report),
            Ok(Err(e)) => {
                warn!(error = %e, "sur-gard receiver failed");
                None
            }
            Err(e) => {
                warn!(error = %e, "sur-gard receiver task failed");
                None
            }
        },
        None => None,
    };
    let fleet_report = match running.fleet {
        Some((_, task)) => task.await.ok(),
        None => None,
    };
    let surgard_ok = match (&scenario.surgard, &receiver_report) {
        (None, _) => true,
        (Some(_), Some(r)) => r.all_acknowledged(),
        (Some(_), None) => false,
    };
    let mqtt_ok = match (&scenario.mqtt, &fleet_report) {
        (None, _) => true,
        (Some(_), Some(r)) => r.all_acknowledged(),
        (Some(_), None) => false,
    };
    ScenarioReport {
        scenario: scenario.name.clone(),
        elapsed_s: 0.0,
        interrupted: false,
        steps_run: 0,
        surgard: receiver_report.as_ref().map(ReceiverReport::summary),
        mqtt: fleet_report,
        all_acknowledged: surgard_ok && mqtt_ok,
        receiver: receiver_report,
    }
}

/// Awaits `fut` unless shutdown comes first (or came earlier), then `None`.
async fn unless<F: Future>(
    fut: F,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    interrupted: &mut bool,
) -> Option<F::Output> {
    if *interrupted {
        return None;
    }
    tokio::select! {
        biased;
        // Cancel-safe: the pinned shutdown future is polled by reference and never again
        // once it has completed (the flag records that).
        () = shutdown.as_mut() => {
            info!("shutdown requested");
            *interrupted = true;
            None
        }
        v = fut => Some(v),
    }
}

async fn run_step(
    step: &Step,
    fleet: Option<&FleetHandle>,
    receiver: Option<&ReceiverHandle>,
) -> anyhow::Result<()> {
    if !step.note.is_empty() {
        info!(note = %step.note, "scenario step");
    }
    let fleet = || fleet.ok_or_else(|| anyhow::anyhow!("no fleet is running"));
    let receiver = || receiver.ok_or_else(|| anyhow::anyhow!("no receiver is running"));
    if let Some(s) = &step.storm {
        fleet()?.storm(s.kind, s.devices, s.within).await?;
    }
    if let Some(a) = &step.mqtt_alarm {
        fleet()?.alarm(&a.device, a.kind).await?;
    }
    if let Some(r) = &step.mqtt_raw {
        let payload = r.payload.as_bytes().to_vec();
        match &r.topic {
            Some(topic) => {
                fleet()?
                    .publish_raw_on(&r.device, topic.as_str(), payload)
                    .await?;
            }
            None => fleet()?.publish_raw(&r.device, payload).await?,
        }
    }
    if let Some(e) = &step.surgard_event {
        receiver()?
            .send_event(&e.account, e.qualifier, e.code, e.group, e.zone)
            .await?;
    }
    if let Some(r) = &step.surgard_raw {
        let bytes = r.bytes().map_err(anyhow::Error::msg)?;
        if r.expect_reply {
            receiver()?.send_raw_expecting_reply(bytes).await?;
        } else {
            receiver()?.send_raw(bytes).await?;
        }
    }
    Ok(())
}

/// Background Contact ID events, evenly spaced, accounts in turn, codes from the mix.
async fn generate_events(
    section: SurGardSection,
    handle: ReceiverHandle,
    mut rng: Rng,
    until: Instant,
    stop: CancellationToken,
) {
    let mix = mix(section.alarm_mix.as_ref());
    let gap = Duration::from_secs_f64(1.0 / section.events_per_s);
    let mut next = Instant::now();
    let mut n: usize = 0;
    while next < until {
        tokio::select! {
            biased;
            // Cancel-safe: both branches only wait.
            () = stop.cancelled() => return,
            () = sleep_until(next) => {}
        }
        let Some(kind) = rng.pick(&mix) else { return };
        let account = &section.accounts[n % section.accounts.len()];
        let zone = u16::try_from(n % 8 + 1).unwrap_or(1);
        let event = handle.send_event(account, Qualifier::New, contact_id_code(kind), 1, zone);
        let sent = tokio::select! {
            biased;
            // Cancel-safe: a send dropped while waiting for buffer space queues nothing.
            () = stop.cancelled() => return,
            r = event => r,
        };
        if let Err(error) = sent {
            warn!(%error, "background event not queued");
            return;
        }
        n += 1;
        next += gap;
    }
}
