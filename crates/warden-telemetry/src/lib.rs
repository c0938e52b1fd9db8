//! Metric names, their descriptions, the Prometheus recorder and tracing setup.
//!
//! Every metric Warden emits is named here once, so `ops/` alert rules and dashboards can be
//! checked against this list, and label sets stay bounded (labels are link names, sources
//! and reason codes from fixed enums, never payload data).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Signals read off a link, decodable or not. Labels: `source`.
pub const SIGNALS_RECEIVED: &str = "warden_signals_received_total";
/// Signals acknowledged to their sender after commit. Labels: `source`.
pub const SIGNALS_ACKED: &str = "warden_signals_acked_total";
/// Inputs rejected (and quarantined). Labels: `source`, `reason`.
pub const SIGNALS_REJECTED: &str = "warden_signals_rejected_total";
/// Redelivered MQTT messages recognised by their message id and payload within the dedupe
/// window. Labels: `source`.
pub const SIGNALS_DUPLICATE: &str = "warden_signals_duplicate_total";
/// Message ids reused for a different payload within the dedupe window (a unit whose
/// counter restarted, say); each such message is stored as a new signal. Labels: `source`.
pub const DEDUPE_CONFLICTS: &str = "warden_dedupe_conflicts_total";
/// Arrival of the first byte of a signal to its ACK/PUBACK being sent. Labels: `source`.
pub const ACK_LATENCY: &str = "warden_ack_latency_seconds";
/// Time of one group-commit transaction.
pub const DB_COMMIT: &str = "warden_db_commit_seconds";
/// Records per group-commit transaction.
pub const DB_BATCH_SIZE: &str = "warden_db_batch_records";
/// Failed group-commit transactions.
pub const DB_COMMIT_ERRORS: &str = "warden_db_commit_errors_total";
/// Records waiting for the writer.
pub const WRITER_QUEUE: &str = "warden_writer_queue_records";
/// 1 when a link (serial port, MQTT connection, receiver heartbeat) is up. Labels: `link`.
pub const LINK_UP: &str = "warden_link_up";
/// Link state changes. Labels: `link`, `state`.
pub const LINK_TRANSITIONS: &str = "warden_link_transitions_total";
/// Link tasks that failed and were restarted by their supervisor. Labels: `link`.
pub const LINK_TASK_RESTARTS: &str = "warden_link_task_restarts_total";
/// Serial port (re)open failures. Labels: `link`.
pub const SERIAL_OPEN_ERRORS: &str = "warden_serial_open_errors_total";
/// NAKs sent to a receiver. Labels: `link`.
pub const NAKS_SENT: &str = "warden_naks_sent_total";
/// MQTT device online/offline changes seen. Labels: `state`.
pub const DEVICE_PRESENCE: &str = "warden_device_presence_total";

/// Signal arrival to its incident being offered (persisted). Labels: `priority`.
pub const SIGNAL_TO_OFFER: &str = "warden_signal_to_offer_seconds";
/// Incidents put in front of operators. Labels: `priority`.
pub const INCIDENTS_OFFERED: &str = "warden_incidents_offered_total";
/// Incidents open in the triage core.
pub const INCIDENTS_OPEN: &str = "warden_incidents_open";
/// Time to persist one triage batch.
pub const ENGINE_COMMIT: &str = "warden_engine_commit_seconds";

/// 1 while the triage engine task runs (0 once it stopped or died).
pub const ENGINE_RUNNING: &str = "warden_engine_running";
/// 1 while the engine replays signals committed but never triaged.
pub const ENGINE_REPLAYING: &str = "warden_engine_replaying";
/// Signals replayed into triage (after a start or a database outage).
pub const ENGINE_REPLAYED: &str = "warden_engine_replayed_signals_total";
/// Unix time (seconds) of the engine's last finished batch.
pub const ENGINE_LAST_BATCH: &str = "warden_engine_last_batch_timestamp_seconds";
/// Inputs waiting for the engine. Labels: `lane` (life_critical, bulk, commands).
pub const ENGINE_LANE_DEPTH: &str = "warden_engine_lane_depth";
/// Inputs the core failed on, isolated and raised as "could not triage". Labels: `input`
/// (signal, command, tick).
pub const ENGINE_INPUT_FAILURES: &str = "warden_engine_input_failures_total";
/// Triage batches Postgres would not take. Labels: `reason` (timeout, database, refused).
pub const ENGINE_BATCH_FAILURES: &str = "warden_engine_batch_failures_total";
/// Console HTTP requests answered. Labels: `route` (the matched route pattern), `status`.
pub const CONSOLE_REQUESTS: &str = "warden_console_requests_total";
/// Console HTTP request handling time. Labels: `route`.
pub const CONSOLE_REQUEST_TIME: &str = "warden_console_request_seconds";
/// Console login attempts. Labels: `outcome` (ok, bad_credentials, locked, rate_limited, disabled).
pub const CONSOLE_LOGINS: &str = "warden_console_logins_total";
/// Consoles connected to the live queue push.
pub const CONSOLE_CONNECTIONS: &str = "warden_console_connections";
/// Signal arrival to the incident being pushed to connected consoles. Labels: `priority`.
pub const CONSOLE_PUSH: &str = "warden_console_push_seconds";
/// Consoles that fell behind the push and were told to re-read the queue.
pub const CONSOLE_PUSH_LAGGED: &str = "warden_console_push_lagged_total";
/// Out-of-hours jobs logged. Labels: `routed` (true/false).
pub const OOH_JOBS: &str = "warden_ooh_jobs_total";

/// Buckets for latencies that must stay in the low milliseconds (ACK, commit).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 4.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0,
];

/// Registers descriptions for every metric, so `/metrics` documents itself.
pub fn describe() {
    describe_counter!(
        SIGNALS_RECEIVED,
        "Signals read off a link, decodable or not"
    );
    describe_counter!(
        SIGNALS_ACKED,
        "Signals acknowledged to their sender after they were durable"
    );
    describe_counter!(
        SIGNALS_REJECTED,
        "Inputs rejected and quarantined, by reason"
    );
    describe_counter!(
        SIGNALS_DUPLICATE,
        "Redelivered messages recognised by message id and payload and not stored twice"
    );
    describe_counter!(
        DEDUPE_CONFLICTS,
        "Message ids reused for a different payload within the dedupe window, stored as new signals"
    );
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "Signal arrival to ACK/PUBACK sent"
    );
    describe_histogram!(
        DB_COMMIT,
        Unit::Seconds,
        "Duration of one group-commit transaction"
    );
    describe_histogram!(
        DB_BATCH_SIZE,
        Unit::Count,
        "Records written per group-commit transaction"
    );
    describe_counter!(DB_COMMIT_ERRORS, "Group-commit transactions that failed");
    describe_gauge!(
        WRITER_QUEUE,
        Unit::Count,
        "Records waiting for the group-commit writer"
    );
    describe_gauge!(LINK_UP, "1 when the link is up, 0 when it is down");
    describe_counter!(LINK_TRANSITIONS, "Link state changes");
    describe_counter!(
        LINK_TASK_RESTARTS,
        "Link tasks that failed and were restarted (each recorded as link lost)"
    );
    describe_counter!(SERIAL_OPEN_ERRORS, "Serial port open or reopen failures");
    describe_counter!(
        CONSOLE_REQUESTS,
        "Console HTTP requests answered, by route and status"
    );
    describe_histogram!(
        CONSOLE_REQUEST_TIME,
        Unit::Seconds,
        "Console HTTP request handling time"
    );
    describe_counter!(CONSOLE_LOGINS, "Console login attempts by outcome");
    describe_gauge!(
        CONSOLE_CONNECTIONS,
        "Consoles connected to the live queue push"
    );
    describe_histogram!(
        CONSOLE_PUSH,
        Unit::Seconds,
        "Signal arrival to the incident pushed to connected consoles"
    );
    describe_counter!(
        CONSOLE_PUSH_LAGGED,
        "Consoles that fell behind the live push and re-read the queue"
    );
    describe_counter!(
        OOH_JOBS,
        "Out-of-hours jobs logged, by whether they were routed"
    );
    describe_gauge!(ENGINE_RUNNING, "1 while the triage engine task runs");
    describe_gauge!(
        ENGINE_REPLAYING,
        "1 while the engine replays committed signals never triaged"
    );
    describe_counter!(ENGINE_REPLAYED, "Signals replayed into triage");
    describe_gauge!(
        ENGINE_LAST_BATCH,
        Unit::Seconds,
        "Unix time of the engine's last finished batch"
    );
    describe_gauge!(
        ENGINE_LANE_DEPTH,
        Unit::Count,
        "Inputs waiting for the triage engine, by lane"
    );
    describe_counter!(
        ENGINE_INPUT_FAILURES,
        "Inputs the triage core failed on, isolated and raised as could-not-triage incidents"
    );
    describe_counter!(
        ENGINE_BATCH_FAILURES,
        "Triage batch commits that failed, by reason"
    );
    describe_counter!(NAKS_SENT, "NAKs sent to a receiver for undecodable frames");
    describe_counter!(
        DEVICE_PRESENCE,
        "MQTT device online/offline (last will) messages"
    );
}

/// Installs the global Prometheus recorder and returns the handle that renders `/metrics`.
/// Only the binary calls this; libraries only emit.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DB_BATCH_SIZE.into()), BATCH_BUCKETS))
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

/// Sets up structured logs: JSON when `json` is true, human-readable otherwise; the filter
/// comes from `RUST_LOG`, defaulting to `info`.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless; ignore the "already set" error.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    /// Every `warden_*` name used in `ops/` (minus histogram suffixes) is one this crate
    /// defines, so alerts and dashboards cannot silently watch a metric that does not exist.
    #[test]
    fn ops_rules_and_dashboards_use_only_defined_metrics() {
        let defined = [
            super::SIGNALS_RECEIVED,
            super::SIGNALS_ACKED,
            super::SIGNALS_REJECTED,
            super::SIGNALS_DUPLICATE,
            super::DEDUPE_CONFLICTS,
            super::ACK_LATENCY,
            super::DB_COMMIT,
            super::DB_BATCH_SIZE,
            super::DB_COMMIT_ERRORS,
            super::WRITER_QUEUE,
            super::LINK_UP,
            super::LINK_TRANSITIONS,
            super::SERIAL_OPEN_ERRORS,
            super::NAKS_SENT,
            super::DEVICE_PRESENCE,
            super::SIGNAL_TO_OFFER,
            super::INCIDENTS_OFFERED,
            super::INCIDENTS_OPEN,
            super::ENGINE_COMMIT,
            super::CONSOLE_REQUESTS,
            super::CONSOLE_REQUEST_TIME,
            super::CONSOLE_LOGINS,
            super::CONSOLE_CONNECTIONS,
            super::CONSOLE_PUSH,
            super::CONSOLE_PUSH_LAGGED,
            super::OOH_JOBS,
        ];
        let files = [
            include_str!("../../../ops/prometheus/warden-alerts.yml"),
            include_str!("../../../ops/grafana/warden-ingest.json"),
        ];
        let mut used = 0;
        for text in files {
            for (i, _) in text.match_indices("warden_") {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(name.clone(), |n, s| {
                        n.strip_suffix(s).map_or(n.clone(), str::to_owned)
                    });
                assert!(
                    defined.contains(&base.as_str()),
                    "ops/ uses undefined metric {name}"
                );
                used += 1;
            }
        }
        assert!(used > 10, "expected the ops files to reference the metrics");
    }
}
