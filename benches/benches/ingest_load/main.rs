//! Sustained ingest load through the real `wardend` binary (issue "ingest daemon", item 10):
//! serial and MQTT in, signals/s persisted and arrival→ACK latency out, and in the same run a
//! raw `COPY` of the same rows into the same Postgres as the ceiling.
//!
//! ```sh
//! SQLX_OFFLINE=true cargo build --release --bin wardend
//! DATABASE_URL=$(./tests/pg.sh start) cargo bench -p warden-benches --bench ingest_load
//! ```
//!
//! Everything is real and local: a fresh database on the `DATABASE_URL` server, Mosquitto on
//! a free loopback port, a socat pty pair as the RS-232 cable, and `wardend run` (the release
//! build) with `[[serial]]` on the pty and `[mqtt]` on the broker. The senders are
//! `warden-sim`'s MQTT fleet (shared connections, like gateways) and its Sur-Gard receiver.
//!
//! * Phase A, "steady": the fleet publishes alarms at a paced rate (default 2,000/s) while the
//!   receiver sends Contact ID events as fast as its stop-and-wait allows, for
//!   `WARDEN_LOAD_SECONDS` (default 20) after a short warm-up.
//! * Phase B, "max": a bounded burst of MQTT alarms (default 40,000) pushed as fast as the
//!   fleet can; the sustained persisted rate is taken from the rows' `committed_at`.
//! * Phase C, "ceiling": phase B's rows are read back and written again with
//!   `warden_store::raw_copy` (new ids, no dedupe keys) into the same `signals` table.
//!
//! Timing targets are printed next to each figure (PASS/MISS) and never asserted: a slow or
//! busy machine must not fail CI. Correctness is asserted: every message the broker
//! PUBACKed to the fleet is stored exactly once, every event frame the daemon ACKed on the
//! serial line is stored, nothing is quarantined.
//!
//! Without `--bench` (`cargo test --workspace --all-targets` runs bench targets that way) a
//! smoke version runs in a few seconds against whichever binary `wardend_binary()` picks (the
//! debug build by default): same wiring, same checks, tiny volumes. `WARDEN_BIN` names another
//! daemon binary in either mode.
//!
//! `benches/README.md` explains every figure and how it is measured.
//!
//! Layout: `rig` starts the real parts (database, broker, pty, daemon, probe) and waits on
//! them; `phases` drives the load (A, B, C) and collects [`report::Results`]; `figures`
//! turns rows, scrapes and sender reports into figures and checks that nothing was lost;
//! `metrics` reads `/metrics` and `/proc`; `report` prints the table and the JSON line.

#[path = "../common/copy.rs"]
mod copy;
mod figures;
mod metrics;
mod phases;
mod report;
mod rig;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use phases::run;
use report::print_results;

/// Seconds of measured steady load (phase A).
const ENV_SECONDS: &str = "WARDEN_LOAD_SECONDS";

/// MQTT alarms per second in phase A.
const ENV_RATE: &str = "WARDEN_LOAD_RATE";

/// MQTT alarms pushed in phase B.
const ENV_BURST: &str = "WARDEN_LOAD_BURST";

/// Simulated MQTT units (each publishes `presence: online` when its connection comes up).
const ENV_UNITS: &str = "WARDEN_LOAD_UNITS";

/// What one run does: the full benchmark or the smoke version.
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    /// Paced traffic before phase A's measurement window opens (device cache, pools, TCP).
    warmup: Duration,
    /// Phase A's measurement window.
    steady: Duration,
    /// MQTT alarms per second in phase A.
    rate: u32,
    devices: usize,
    connections: usize,
    /// MQTT alarms in phase B.
    burst: usize,
    copy_runs: usize,
    /// Bound on every wait: a phase's signals being stored after its senders stopped, a
    /// sender task finishing. Past it the run fails and everything is torn down.
    drain: Duration,
}

impl Plan {
    fn new(bench: bool) -> Self {
        if !bench {
            return Self {
                smoke: true,
                warmup: Duration::ZERO,
                steady: Duration::from_secs(2),
                rate: 100,
                devices: 16,
                connections: 2,
                burst: 400,
                copy_runs: 1,
                drain: Duration::from_secs(30),
            };
        }
        Self {
            smoke: false,
            warmup: Duration::from_secs(2),
            steady: Duration::from_secs(env_number(ENV_SECONDS, 20, 1..=600)),
            rate: u32::try_from(env_number(ENV_RATE, 2_000, 1..=50_000)).unwrap_or(2_000),
            devices: usize::try_from(env_number(ENV_UNITS, 10_000, 1..=99_999)).unwrap_or(10_000),
            connections: 8,
            burst: usize::try_from(env_number(ENV_BURST, 40_000, 1..=1_000_000)).unwrap_or(40_000),
            copy_runs: 3,
            drain: Duration::from_mins(3),
        }
    }
}

/// A whole-number setting from the environment, within `range`, or `default`.
fn env_number(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => n,
            _ => panic!("{name}={text:?}: expected a whole number in {range:?}"),
        },
    }
}

fn main() -> ExitCode {
    let bench = std::env::args().skip(1).any(|a| a == "--bench");
    let Some(binary) = daemon_binary(bench) else {
        return ExitCode::from(2);
    };
    let plan = Plan::new(bench);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Blocking work (psql, HTTP scrapes, polling) stays on this thread; the senders run on the
    // runtime's workers. The guard lets this thread create tokio objects (the serial port).
    let _guard = rt.enter();
    let results = run(&rt, &plan, &binary);
    print_results(&plan, &results);
    ExitCode::SUCCESS
}

/// The daemon to drive: `$WARDEN_BIN`; else, in bench mode, the release build (which must
/// exist); in smoke mode whatever `warden_tests::wardend_binary()` picks (the debug build
/// unless `WARDEN_PROFILE=release`). `None` after explaining what is missing.
fn daemon_binary(bench: bool) -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("WARDEN_BIN") {
        if Path::new(&bin).is_file() {
            return Some(PathBuf::from(bin));
        }
        eprintln!("ingest_load: WARDEN_BIN={bin} is not a file");
        return None;
    }
    if !bench {
        return Some(warden_tests::wardend_binary());
    }
    let release = warden_tests::target_dir().join("release").join("wardend");
    if !release.is_file() {
        eprintln!(
            "ingest_load: the load benchmark drives the release daemon, and {} is not built.\n\
             Build it first:\n\n    SQLX_OFFLINE=true cargo build --release --bin wardend\n",
            release.display()
        );
        return None;
    }
    warn_if_stale(&release);
    Some(release)
}

/// Warns when a source file of the daemon is newer than the release binary: the figures
/// would then describe old code.
fn warn_if_stale(binary: &Path) {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return;
    };
    let root = warden_tests::workspace_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("fuzz") {
                    stack.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "sql" || e == "toml")
                && let Ok(t) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(n, _)| t > *n)
            {
                newest = Some((t, path));
            }
        }
    }
    if let Some((t, path)) = newest
        && t > built
    {
        eprintln!(
            "ingest_load: warning: {} is newer than {}; rebuild with \
             `SQLX_OFFLINE=true cargo build --release --bin wardend` to measure current code",
            path.display(),
            binary.display()
        );
    }
}
