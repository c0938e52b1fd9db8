//! `warden-sim`: drive Warden like real equipment from the command line.
//!
//! Prints a JSON report on stdout when it stops. Exit status: 0 when every message was
//! acknowledged (ACK on the serial line, PUBACK over MQTT), 1 when some were not or the run
//! failed, 64 for a bad command line or scenario file. Logs go to stderr (`RUST_LOG`).
//!
//! Ctrl-C (or SIGTERM) stops cleanly: no new traffic, outstanding acknowledgements are awaited
//! up to the drain timeout, then the report is printed. A second Ctrl-C exits at once (130).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Disconnect, Fleet, FleetConfig};
use warden_sim::scenario::{self, Scenario, Targets};
use warden_sim::surgard::{
    ReceiverConfig, ReceiverHandle, SerialSettings, SurGardReceiver, open_serial,
};
use warden_sim::{contact_id_code, default_alarm_mix};
use warden_types::Qualifier;

/// Exit status for a bad command line or configuration (sysexits `EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "warden-sim",
    version,
    about = "Simulated Sur-Gard receivers and MQTT alarm-unit fleets for driving Warden"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Emulate a Sur-Gard MLR2 receiver on a serial port (or pty).
    Surgard(SurgardArgs),
    /// Run a fleet of MQTT alarm units against a broker.
    Fleet(FleetArgs),
    /// Run a scenario file (see firmware-sim/scenarios/).
    Run(RunArgs),
    /// Parse and validate scenario files without running them.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct SerialArgs {
    /// Serial line speed.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Data bits, parity and stop bits, e.g. 8N1 or 7E1.
    #[arg(long, default_value = "8N1")]
    format: String,
}

impl SerialArgs {
    fn settings(&self) -> anyhow::Result<SerialSettings> {
        Ok(SerialSettings {
            baud: self.baud,
            ..SerialSettings::default()
        }
        .with_format(&self.format)?)
    }
}

#[derive(Debug, clap::Args)]
struct SurgardArgs {
    /// Serial device to write to, e.g. /dev/pts/3 or /dev/ttyUSB0.
    #[arg(long)]
    port: String,
    #[command(flatten)]
    serial: SerialArgs,
    /// Contact ID events per second (0: heartbeats only).
    #[arg(long, default_value_t = 1.0)]
    events_per_s: f64,
    /// Account the events come from (4 or 10 hex digits).
    #[arg(long, default_value = "1234")]
    account: String,
    /// Contact ID event code for every event; a default telecare mix when absent.
    #[arg(long)]
    code: Option<u16>,
    /// Send this many events, wait for their ACKs (up to --drain-timeout), then stop.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long (e.g. 5m); otherwise run until --count is reached or Ctrl-C.
    #[arg(long)]
    duration: Option<humantime::Duration>,
    #[arg(long, default_value = "01")]
    receiver: String,
    #[arg(long, default_value = "1")]
    line: String,
    #[arg(long, default_value = "30s")]
    heartbeat: humantime::Duration,
    #[arg(long, default_value = "4s")]
    ack_timeout: humantime::Duration,
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    /// How long to wait for outstanding ACKs before stopping.
    #[arg(long, default_value = "30s")]
    drain_timeout: humantime::Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// 0: one MQTT connection (with last will) per unit; k: k shared connections.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    #[arg(long, default_value = "warden")]
    prefix: String,
    #[arg(long, default_value = "sim-")]
    id_prefix: String,
    #[arg(long, default_value = "60s")]
    heartbeat: humantime::Duration,
    /// Random alarms per second across the fleet.
    #[arg(long, default_value_t = 0.0)]
    alarm_rate: f64,
    /// Stop after this long; otherwise run until Ctrl-C.
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Start a storm this long after connecting.
    #[arg(long)]
    storm_at: Option<humantime::Duration>,
    /// Units in the storm (default: all).
    #[arg(long)]
    storm_devices: Option<usize>,
    #[arg(long, default_value = "10s")]
    storm_within: humantime::Duration,
    /// Alarm kind of the storm, e.g. `mains_fail`.
    #[arg(long, default_value = "mains_fail", value_parser = parse_kind)]
    storm_kind: AlarmKind,
    #[arg(long, default_value = "30s")]
    drain_timeout: humantime::Duration,
    /// graceful (DISCONNECT) or abrupt (drop sockets: the broker sends the last wills).
    #[arg(long, default_value = "graceful", value_parser = parse_disconnect)]
    disconnect: Disconnect,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file, e.g. firmware-sim/scenarios/storm.toml.
    scenario: PathBuf,
    /// Serial device for the scenario's [surgard] receiver.
    #[arg(long)]
    serial: Option<String>,
    #[command(flatten)]
    serial_settings: SerialArgs,
    /// Broker for the scenario's [mqtt] fleet, HOST:PORT.
    #[arg(long)]
    mqtt: Option<String>,
}

fn parse_kind(s: &str) -> Result<AlarmKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown alarm kind {s:?}"))
}

fn parse_disconnect(s: &str) -> Result<Disconnect, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not graceful or abrupt"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Command::Check { files } = &cli.command {
        return check(files);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli.command))
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match Scenario::load(file) {
            Ok(s) => println!(
                "{}: ok ({}, {} steps)",
                file.display(),
                s.name,
                s.steps.len()
            ),
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", file.display());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// A run's outcome: a report to print, and whether everything was acknowledged.
struct Outcome {
    json: serde_json::Value,
    acknowledged: bool,
}

async fn async_main(command: Command) -> ExitCode {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()).instrument(info_span!("signals")));
    let result = match command {
        Command::Surgard(args) => surgard(args, shutdown).await,
        Command::Fleet(args) => fleet(args, shutdown).await,
        Command::Run(args) => run(args, shutdown).await,
        Command::Check { .. } => return ExitCode::SUCCESS,
    };
    match result {
        Ok(outcome) => {
            match serde_json::to_string_pretty(&outcome.json) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("warden-sim: cannot print the report: {e}"),
            }
            if outcome.acknowledged {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(Failure::Config(e)) => {
            eprintln!("warden-sim: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Run(e)) => {
            eprintln!("warden-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Bad arguments or files, found before any traffic.
    Config(anyhow::Error),
    Run(anyhow::Error),
}

/// Ctrl-C or SIGTERM: stop cleanly.
async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot watch sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        // Cancel-safe: each branch only waits for a signal.
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                warn!(error = %e, "cannot watch ctrl-c");
                return;
            }
        }
        () = term => {}
    }
    info!("signal received, stopping");
    shutdown.cancel();
    // A second Ctrl-C means "now": skip the drain and the report.
    if tokio::signal::ctrl_c().await.is_ok() {
        warn!("second signal, exiting without waiting");
        std::process::exit(130);
    }
}

fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

async fn surgard(args: SurgardArgs, shutdown: CancellationToken) -> Result<Outcome, Failure> {
    let config = ReceiverConfig {
        receiver: args.receiver.clone(),
        line: args.line.clone(),
        heartbeat_interval: args.heartbeat.into(),
        ack_timeout: args.ack_timeout.into(),
        max_attempts: args.max_attempts,
        link_retry_interval: args.heartbeat.into(),
        ..ReceiverConfig::default()
    };
    if !args.events_per_s.is_finite() || args.events_per_s < 0.0 {
        return Err(Failure::Config(anyhow::anyhow!(
            "--events-per-s must be zero or positive"
        )));
    }
    let settings = args.serial.settings().map_err(Failure::Config)?;
    let port = open_serial(&args.port, &settings).map_err(|e| Failure::Config(e.into()))?;
    let receiver = SurGardReceiver::new(port, config).map_err(|e| Failure::Config(e.into()))?;
    let handle = receiver.handle();
    // Check the event fields once before any traffic, so a typo fails fast with status 64.
    handle
        .contact_id_frame(
            &args.account,
            Qualifier::New,
            args.code.unwrap_or(602),
            1,
            1,
        )
        .map_err(|e| Failure::Config(e.into()))?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        receiver
            .run(stop.clone().cancelled_owned())
            .instrument(info_span!("surgard_receiver", port = %args.port)),
    );
    info!(port = %args.port, baud = settings.baud, "sur-gard receiver running");
    let end = args.duration.map(|d| Instant::now() + Duration::from(d));
    let generated = generate(&args, &handle, end, &shutdown).await;
    if generated.is_ok() && args.count.is_none() {
        // Without --count, keep answering heartbeats until --duration ends or Ctrl-C.
        let until = async {
            match end {
                Some(e) => sleep_until(e).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Cancel-safe: both branches only wait.
            () = shutdown.cancelled() => {}
            () = until => {}
        }
    }
    // Stopping is clean: no new events, but what is buffered gets its chance to be
    // acknowledged (a second Ctrl-C exits at once).
    if tokio::time::timeout(args.drain_timeout.into(), handle.flushed())
        .await
        .is_err()
    {
        warn!(
            unacked = handle.stats().unacked_buffered,
            "drain timeout on the serial link"
        );
    }
    stop.cancel();
    let report = task
        .await
        .context("receiver task")
        .and_then(|r| r.context("sur-gard link"))
        .map_err(Failure::Run)?;
    generated.map_err(Failure::Run)?;
    let summary = report.summary();
    Ok(Outcome {
        acknowledged: summary.all_acknowledged,
        json: to_json(&summary),
    })
}

/// Queues `--count` events (or events until `end`/Ctrl-C) at `--events-per-s`.
async fn generate(
    args: &SurgardArgs,
    handle: &ReceiverHandle,
    end: Option<Instant>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if args.events_per_s <= 0.0 || args.count == Some(0) {
        return Ok(());
    }
    let gap = Duration::from_secs_f64(1.0 / args.events_per_s);
    let mix = default_alarm_mix();
    let total: u32 = mix.iter().map(|&(_, w)| w).sum();
    let mut next = Instant::now();
    let mut sent = 0u64;
    let mut state = args.seed;
    while args.count.is_none_or(|c| sent < c) && end.is_none_or(|e| next < e) {
        tokio::select! {
            biased;
            // Cancel-safe: both branches only wait.
            () = shutdown.cancelled() => return Ok(()),
            () = sleep_until(next) => {}
        }
        let code = args.code.unwrap_or_else(|| {
            // A tiny linear congruential step is plenty to vary the codes here.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mut roll = u32::try_from((state >> 33) % u64::from(total.max(1))).unwrap_or(0);
            let mut kind = AlarmKind::Test;
            for &(k, w) in &mix {
                if roll < w {
                    kind = k;
                    break;
                }
                roll -= w;
            }
            contact_id_code(kind)
        });
        let zone = u16::try_from(sent % 8 + 1).unwrap_or(1);
        let queue_event = handle.send_event(&args.account, Qualifier::New, code, 1, zone);
        tokio::select! {
            biased;
            // Cancel-safe: a send dropped while waiting for buffer space queues nothing.
            () = shutdown.cancelled() => return Ok(()),
            r = queue_event => { r?; }
        }
        sent += 1;
        next += gap;
    }
    Ok(())
}

async fn fleet(args: FleetArgs, shutdown: CancellationToken) -> Result<Outcome, Failure> {
    let config = FleetConfig {
        host: args.host.clone(),
        port: args.port,
        prefix: args.prefix.clone(),
        devices: args.devices,
        id_prefix: args.id_prefix.clone(),
        connections: args.connections,
        heartbeat_interval: args.heartbeat.into(),
        alarm_rate_per_s: args.alarm_rate,
        drain_timeout: args.drain_timeout.into(),
        disconnect: args.disconnect,
        seed: args.seed,
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(config).map_err(|e| Failure::Config(e.into()))?;
    let handle = fleet.handle();
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        fleet
            .run(stop.clone().cancelled_owned())
            .instrument(info_span!("fleet", broker = %format!("{}:{}", args.host, args.port))),
    );
    let script = async {
        handle.wait_connected().await;
        info!(devices = args.devices, "fleet connected");
        let t0 = Instant::now();
        if let Some(at) = args.storm_at {
            sleep_until(t0 + Duration::from(at)).await;
            let devices = args.storm_devices.unwrap_or(args.devices);
            if let Err(e) = handle
                .storm(args.storm_kind, devices, args.storm_within.into())
                .await
            {
                warn!(error = %e, "storm not scheduled");
            }
        }
        match args.duration {
            Some(d) => sleep_until(t0 + Duration::from(d)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        // Cancel-safe: dropping the script only stops scheduling more traffic.
        () = shutdown.cancelled() => {}
        () = script => {}
    }
    stop.cancel();
    let report = task.await.context("fleet task").map_err(Failure::Run)?;
    Ok(Outcome {
        acknowledged: report.all_acknowledged(),
        json: to_json(&report),
    })
}

async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<Outcome, Failure> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| Failure::Config(e.into()))?;
    let mut targets = Targets::default();
    if let Some(path) = &args.serial {
        let settings = args.serial_settings.settings().map_err(Failure::Config)?;
        let port = open_serial(path, &settings).map_err(|e| Failure::Config(e.into()))?;
        targets.serial = Some(Box::new(port));
    }
    if let Some(addr) = &args.mqtt {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| Failure::Config(anyhow::anyhow!("--mqtt {addr:?} is not HOST:PORT")))?;
        targets.mqtt = Some((host, port));
    }
    let report = scenario::run(&scenario, targets, shutdown.cancelled_owned())
        .await
        .map_err(|e| match e {
            scenario::ScenarioError::MissingTarget(_) | scenario::ScenarioError::Invalid(_) => {
                Failure::Config(e.into())
            }
            other => Failure::Run(other.into()),
        })?;
    Ok(Outcome {
        acknowledged: report.all_acknowledged,
        json: to_json(&report),
    })
}
