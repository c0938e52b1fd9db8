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
/// Triage batches published but not yet committed (degraded mode: kept until the spool
/// has drained).
pub const ENGINE_DEFERRED: &str = "warden_engine_deferred_batches";
/// Operators' commands kept in the engine's journal on disk (degraded mode: carried out
/// from memory, not yet committed).
pub const ENGINE_JOURNAL_ENTRIES: &str = "warden_engine_journal_entries";
/// The journal could not be written or read (`op`): commands answered meanwhile are held in
/// memory only.
pub const ENGINE_JOURNAL_ERRORS: &str = "warden_engine_journal_errors_total";
/// Journalled commands found on start (left by a process that died before committing
/// them), by `outcome`: `applied`, `already` (committed before the crash), `gone` (their
/// incident is no longer open).
pub const ENGINE_JOURNAL_RECOVERED: &str = "warden_engine_journal_recovered_total";
/// 1 while the writer is in degraded mode: Postgres unreachable or slower than the
/// senders' windows, records made durable in the local spool.
pub const DEGRADED: &str = "warden_degraded";
/// Records in the local spool, not yet drained into Postgres.
pub const SPOOL_RECORDS: &str = "warden_spool_records";
/// Bytes the local spool takes on disk.
pub const SPOOL_BYTES: &str = "warden_spool_bytes";
/// The spool's bytes over its bound (`spool.max_bytes`), 0 to 1.
pub const SPOOL_FILL: &str = "warden_spool_fill_ratio";
/// Seconds since the oldest undrained record was spooled; 0 when empty.
pub const SPOOL_OLDEST_AGE: &str = "warden_spool_oldest_age_seconds";
/// Records written to the spool (made durable there instead of in Postgres).
pub const SPOOL_APPENDED: &str = "warden_spool_appended_total";
/// Spooled records drained into Postgres. Labels: `outcome` (`stored`, `duplicate`,
/// `already`, `refused`).
pub const SPOOL_DRAINED: &str = "warden_spool_drained_total";
/// Records the spool could not take (full, or a disk error): not durable, not acknowledged.
/// Labels: `reason` (`full`, `io`).
pub const SPOOL_REFUSED: &str = "warden_spool_refused_total";
/// Corrupt records found when the spool was read back (kept aside as `*.corrupt`).
pub const SPOOL_CORRUPT: &str = "warden_spool_corrupt_total";
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
/// Serial frames not durable within the receiver's ACK window, left unanswered so the
/// receiver resends them. Labels: `link`.
pub const SERIAL_LATE_FRAMES: &str = "warden_serial_late_frames_total";
/// Serial frames recognised as a receiver's retransmission of the previous frame and not
/// stored again. Labels: `link`.
pub const SERIAL_RETRANSMISSIONS: &str = "warden_serial_retransmissions_total";
/// MQTT device online/offline changes seen. Labels: `state`.
pub const DEVICE_PRESENCE: &str = "warden_device_presence_total";
/// The MQTT broker's own count of messages it dropped (Mosquitto's
/// `$SYS/broker/publish/messages/dropped`), as last seen. Labels: `link`.
pub const MQTT_BROKER_DROPPED: &str = "warden_mqtt_broker_dropped_messages";
/// Gaps in a unit's MQTT sequence numbers (`seq`): messages lost between unit and centre.
pub const MQTT_SEQUENCE_GAPS: &str = "warden_mqtt_sequence_gaps_total";

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
/// Console login attempts. Labels: `outcome` (ok, bad_credentials, unknown_user, delayed,
/// rate_limited, disabled).
pub const CONSOLE_LOGINS: &str = "warden_console_logins_total";
/// Sealed values (key-safe codes, medical notes) that could not be opened: a key missing
/// from the configuration, or damage.
pub const SEAL_FAILURES: &str = "warden_store_seal_failures_total";
/// Key-safe code reveals asked for. Labels: `outcome` (held: for an incident the user holds;
/// override: a supervisor's, with a reason; refused; rate_limited).
pub const CONSOLE_KEY_SAFE_REVEALS: &str = "warden_console_key_safe_reveals_total";
/// Consoles connected to the live queue push.
pub const CONSOLE_CONNECTIONS: &str = "warden_console_connections";
/// Signal arrival to the incident being pushed to connected consoles. Labels: `priority`.
pub const CONSOLE_PUSH: &str = "warden_console_push_seconds";
/// Consoles that fell behind the push and were told to re-read the queue.
pub const CONSOLE_PUSH_LAGGED: &str = "warden_console_push_lagged_total";
/// Open HTTP connections (WebSockets included) on wardend's own listeners. Labels:
/// `listener` (console, admin).
pub const LISTENER_CONNECTIONS: &str = "warden_http_connections";
/// HTTP connections closed at once, unread, for a connection cap. Labels: `listener`
/// (console, admin), `reason` (total: the listener's `max_connections`; per_address:
/// `max_connections_per_address`).
pub const LISTENER_REFUSED: &str = "warden_http_connections_refused_total";
/// HTTP connections closed because the client did not send a request's head within the
/// listener's `header_read_timeout` (slow or idle clients). Labels: `listener`.
pub const LISTENER_HEADER_TIMEOUTS: &str = "warden_http_header_timeouts_total";
/// TLS handshakes on an HTTPS listener that failed or did not finish within the
/// listener's `header_read_timeout`. Labels: `listener`.
pub const LISTENER_TLS_HANDSHAKE_FAILURES: &str = "warden_http_tls_handshake_failures_total";
/// Reloads of a listener's certificate and key after their files changed. Labels:
/// `listener`, `result` (ok: the new pair is served; error: the files did not load and the
/// previous pair is still served).
pub const LISTENER_TLS_RELOADS: &str = "warden_http_tls_reloads_total";
/// Out-of-hours jobs logged. Labels: `routed` (true/false).
pub const OOH_JOBS: &str = "warden_ooh_jobs_total";
/// Pages delivered, given up or cancelled (the incident was answered before the channel
/// sent it). Labels: `channel` (console, webhook, email, sms, voice, none), `status`
/// (delivered, failed, cancelled).
pub const PAGES: &str = "warden_pages_total";
/// Pages acknowledged. Labels: `via` (console, link, sms).
pub const PAGES_ACKNOWLEDGED: &str = "warden_pages_acknowledged_total";
/// SMS replies received through the gateway's webhook. Labels: `outcome` (acknowledged,
/// not_understood, no_open_page, refused).
pub const PAGE_REPLIES: &str = "warden_page_replies_total";
/// Escalation work more than 30 s past due, found by the auditor (0 when every due step
/// ran). Labels: `what` (escalations, deliveries, outbox).
pub const ESCALATION_OVERDUE: &str = "warden_escalation_overdue";
/// Messages to out-of-hours callers delivered or given up. Labels: `channel` (sms, email),
/// `status` (delivered, failed).
pub const CALLER_MESSAGES: &str = "warden_caller_messages_total";
/// Open DC-09 TCP connections.
pub const DC09_CONNECTIONS: &str = "warden_dc09_connections";
/// DC-09 TCP connections closed at once for a limit. Labels: `reason` (total, per_address).
pub const DC09_CONNECTIONS_REFUSED: &str = "warden_dc09_connections_refused_total";
/// DC-09 frames answered. Labels: `transport` (tcp, udp), `reply` (ack, nak, duh, none).
pub const DC09_REPLIES: &str = "warden_dc09_replies_total";
/// UDP datagrams the kernel dropped on a receiver's socket before Warden read them
/// (`receiver`: `dc09`, `scaip`), from `/proc/net/udp`.
pub const UDP_RECEIVE_DROPS: &str = "warden_udp_receive_drops_total";
/// Open SCAIP TCP connections.
pub const SCAIP_CONNECTIONS: &str = "warden_scaip_connections";
/// SCAIP TCP connections refused at a limit, by `reason` (`total`, `per_address`).
pub const SCAIP_CONNECTIONS_REFUSED: &str = "warden_scaip_connections_refused_total";
/// SIP responses sent to SCAIP units, by `transport` and `reply` (`200`, `400`, `405`, `415`,
/// `other`, or `none` when nothing was sent).
pub const SCAIP_REPLIES: &str = "warden_scaip_replies_total";
/// Calls of the dead-man heartbeat URL. Labels: `outcome` (ok, failed, withheld: not
/// called because a pass failed or the engine is unhealthy).
pub const HEARTBEATS: &str = "warden_heartbeats_total";
/// Escalations started (an answer-time threshold passed, a unit failed to report).
pub const ESCALATIONS_STARTED: &str = "warden_escalations_started_total";
/// Incidents that should have escalated but no route matched them.
pub const ESCALATIONS_UNROUTED: &str = "warden_escalations_unrouted_total";
/// Chain targets that reached nobody (nobody on call, an empty team); the fallback was paged.
pub const ESCALATION_GAPS: &str = "warden_escalation_gaps_total";
/// Escalations that could page nobody at all (no target and no fallback, unreadable chain).
pub const ESCALATIONS_UNREACHABLE: &str = "warden_escalations_unreachable_total";
/// Chains that ran every round unanswered.
pub const ESCALATIONS_EXHAUSTED: &str = "warden_escalations_exhausted_total";
/// Escalation passes that failed (nothing of them was committed; the next one retries).
pub const ESCALATOR_FAILURES: &str = "warden_escalator_failures_total";
/// Problems the on-call configuration check found for the next 14 days. Labels: `finding`
/// (nobody_on_call, no_verified_contact, no_fallback, empty_on_bank_holiday, missing_target,
/// unreadable).
pub const ONCALL_FINDINGS: &str = "warden_oncall_findings";
/// From a page being recorded to its acknowledgement.
pub const PAGE_TO_ACK: &str = "warden_page_acknowledged_seconds";
/// From an answer-time threshold passing (the engine's outbox entry) to the escalation's
/// first page being recorded.
pub const ESCALATION_FIRST_PAGE: &str = "warden_escalation_first_page_seconds";

/// Every `outcome` of [`CONSOLE_LOGINS`].
pub const CONSOLE_LOGIN_OUTCOMES: &[&str] = &[
    "ok",
    "bad_credentials",
    "unknown_user",
    "delayed",
    "rate_limited",
    "disabled",
    "otp_required",
    "bad_otp",
];
/// Every `outcome` of [`CONSOLE_KEY_SAFE_REVEALS`].
pub const KEY_SAFE_REVEAL_OUTCOMES: &[&str] = &["held", "override", "refused", "rate_limited"];
/// Every `listener` of [`LISTENER_CONNECTIONS`], [`LISTENER_REFUSED`] and
/// [`LISTENER_HEADER_TIMEOUTS`].
pub const LISTENERS: &[&str] = &["console", "admin", "broker"];
/// Every `reason` of [`LISTENER_REFUSED`].
pub const LISTENER_REFUSE_REASONS: &[&str] = &["total", "per_address"];
/// Every `result` of [`LISTENER_TLS_RELOADS`].
pub const TLS_RELOAD_RESULTS: &[&str] = &["ok", "error"];
/// Every `routed` value of [`OOH_JOBS`].
pub const OOH_ROUTED: &[&str] = &["true", "false"];

/// A counter whose label sets are known in advance, so it can be registered at zero at
/// start: a rate or an alert on a counter that has never been incremented sees no series
/// at all (not a zero) until the first event, which hides "nothing has gone wrong yet"
/// from "this is not being measured".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroCounter {
    /// The metric name.
    pub name: &'static str,
    /// Each label with every value it takes; one series is registered per combination
    /// (none: one series without labels).
    pub labels: &'static [(&'static str, &'static [&'static str])],
}

impl ZeroCounter {
    /// Every label set of the counter: the cross product of the label values.
    pub fn label_sets(&self) -> Vec<Vec<(&'static str, &'static str)>> {
        let mut sets = vec![Vec::new()];
        for (label, values) in self.labels {
            sets = sets
                .iter()
                .flat_map(|set| {
                    values.iter().map(move |v| {
                        let mut s: Vec<(&'static str, &'static str)> = set.clone();
                        s.push((label, v));
                        s
                    })
                })
                .collect();
        }
        sets
    }
}

/// The console's counters with a fixed label set (requests are labelled by route and
/// status, an open set, so they are not here).
pub const CONSOLE_ZERO: &[ZeroCounter] = &[
    ZeroCounter {
        name: CONSOLE_LOGINS,
        labels: &[("outcome", CONSOLE_LOGIN_OUTCOMES)],
    },
    ZeroCounter {
        name: CONSOLE_KEY_SAFE_REVEALS,
        labels: &[("outcome", KEY_SAFE_REVEAL_OUTCOMES)],
    },
    ZeroCounter {
        name: OOH_JOBS,
        labels: &[("routed", OOH_ROUTED)],
    },
    ZeroCounter {
        name: CONSOLE_PUSH_LAGGED,
        labels: &[],
    },
];

/// The HTTP listeners' counters, registered at zero when a listener starts.
pub const LISTENER_ZERO: &[ZeroCounter] = &[
    ZeroCounter {
        name: LISTENER_REFUSED,
        labels: &[("listener", LISTENERS), ("reason", LISTENER_REFUSE_REASONS)],
    },
    ZeroCounter {
        name: LISTENER_HEADER_TIMEOUTS,
        labels: &[("listener", LISTENERS)],
    },
    ZeroCounter {
        name: LISTENER_TLS_HANDSHAKE_FAILURES,
        labels: &[("listener", LISTENERS)],
    },
    ZeroCounter {
        name: LISTENER_TLS_RELOADS,
        labels: &[("listener", LISTENERS), ("result", TLS_RELOAD_RESULTS)],
    },
];

/// Links of signals (`source` label): `warden_types::Source`'s names.
pub const SOURCES: &[&str] = &["serial", "mqtt", "dc09", "internal"];

/// Every `reason` of [`SIGNALS_REJECTED`]: the decoders' reason codes (Sur-Gard framing,
/// MQTT payloads) and the problems that keep a signal from its device. warden-ingest's
/// tests check that every code it can emit is listed here.
pub const REJECT_REASONS: &[&str] = &[
    "bad_frame",
    "oversized",
    "unsupported_protocol",
    "bad_json",
    "unknown_version",
    "schema",
    "bad_contact_id",
    "bad_topic",
    "unknown_account",
    "protocol_mismatch",
    "not_a_bridge",
    "db_rejected",
    "dc09_no_key",
    "dc09_decrypt_failed",
    "dc09_not_encrypted",
    "dc09_timestamp",
    "dc09_unknown_token",
    "dc09_unreadable",
];

/// Ingest and engine counters with fixed label sets, registered at zero when the daemon
/// starts so alerts and dashboards never see a missing series.
pub const INGEST_ZERO: &[ZeroCounter] = &[
    ZeroCounter {
        name: SIGNALS_RECEIVED,
        labels: &[("source", SOURCES)],
    },
    ZeroCounter {
        name: SIGNALS_ACKED,
        labels: &[("source", SOURCES)],
    },
    ZeroCounter {
        name: SIGNALS_DUPLICATE,
        labels: &[("source", SOURCES)],
    },
    ZeroCounter {
        name: SIGNALS_REJECTED,
        labels: &[("source", SOURCES), ("reason", REJECT_REASONS)],
    },
    ZeroCounter {
        name: DEDUPE_CONFLICTS,
        labels: &[("source", SOURCES)],
    },
    ZeroCounter {
        name: MQTT_SEQUENCE_GAPS,
        labels: &[],
    },
    ZeroCounter {
        name: DEVICE_PRESENCE,
        labels: &[("state", &["online", "offline"])],
    },
    ZeroCounter {
        name: DB_COMMIT_ERRORS,
        labels: &[],
    },
    ZeroCounter {
        name: SPOOL_APPENDED,
        labels: &[],
    },
    ZeroCounter {
        name: SPOOL_CORRUPT,
        labels: &[],
    },
    ZeroCounter {
        name: ENGINE_REPLAYED,
        labels: &[],
    },
    ZeroCounter {
        name: ENGINE_INPUT_FAILURES,
        labels: &[("input", &["signal", "command", "tick"])],
    },
    ZeroCounter {
        name: ENGINE_BATCH_FAILURES,
        labels: &[("reason", &["timeout", "database", "refused"])],
    },
    ZeroCounter {
        name: PAGES,
        labels: &[
            (
                "channel",
                &["console", "webhook", "email", "sms", "voice", "none"],
            ),
            ("status", &["delivered", "failed", "cancelled"]),
        ],
    },
    ZeroCounter {
        name: PAGES_ACKNOWLEDGED,
        labels: &[("via", &["console", "link", "sms"])],
    },
    ZeroCounter {
        name: PAGE_REPLIES,
        labels: &[(
            "outcome",
            &["acknowledged", "not_understood", "no_open_page", "refused"],
        )],
    },
    ZeroCounter {
        name: ESCALATIONS_STARTED,
        labels: &[],
    },
    ZeroCounter {
        name: ESCALATIONS_UNROUTED,
        labels: &[],
    },
    ZeroCounter {
        name: ESCALATION_GAPS,
        labels: &[],
    },
    ZeroCounter {
        name: ESCALATIONS_UNREACHABLE,
        labels: &[],
    },
    ZeroCounter {
        name: ESCALATIONS_EXHAUSTED,
        labels: &[],
    },
    ZeroCounter {
        name: ESCALATOR_FAILURES,
        labels: &[],
    },
];

/// Registers the per-link counters of one configured link at zero.
pub fn register_link_zero(link: &str) {
    for state in ["up", "down"] {
        metrics::counter!(LINK_TRANSITIONS, "link" => link.to_owned(), "state" => state)
            .increment(0);
    }
    for name in [
        NAKS_SENT,
        SERIAL_OPEN_ERRORS,
        LINK_TASK_RESTARTS,
        SERIAL_LATE_FRAMES,
        SERIAL_RETRANSMISSIONS,
    ] {
        metrics::counter!(name, "link" => link.to_owned()).increment(0);
    }
}

/// Registers every series of `counters` at zero on the installed recorder (incrementing by
/// zero: a counter already counting keeps its value). Call at start, once the recorder is
/// installed; calling again is harmless.
pub fn register_zero(counters: &[ZeroCounter]) {
    for c in counters {
        for set in c.label_sets() {
            let labels: Vec<metrics::Label> = set
                .into_iter()
                .map(|(k, v)| metrics::Label::from_static_parts(k, v))
                .collect();
            metrics::counter!(c.name, labels).increment(0);
        }
    }
}

/// Buckets for latencies that must stay in the low milliseconds (ACK, commit).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 4.0, 10.0,
];
/// Buckets for how long people take (a page to its acknowledgement): seconds to an hour.
const PERSON_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
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
        ENGINE_DEFERRED,
        Unit::Count,
        "Triage batches published but not yet committed (degraded mode)"
    );
    describe_gauge!(
        ENGINE_JOURNAL_ENTRIES,
        Unit::Count,
        "Operators' commands kept in the journal on disk, not yet committed (degraded mode)"
    );
    describe_counter!(
        ENGINE_JOURNAL_ERRORS,
        "Failures to write or read the operators' command journal, by op"
    );
    describe_counter!(
        ENGINE_JOURNAL_RECOVERED,
        "Journalled commands found on start, by outcome (applied, already, gone)"
    );
    describe_gauge!(
        DEGRADED,
        "1 while Postgres is unreachable or too slow and records are spooled locally"
    );
    describe_gauge!(
        SPOOL_RECORDS,
        Unit::Count,
        "Records in the local spool not yet drained into Postgres"
    );
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes the local spool takes");
    describe_gauge!(SPOOL_FILL, "Local spool bytes over its bound, 0 to 1");
    describe_gauge!(
        SPOOL_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undrained spooled record"
    );
    describe_counter!(
        SPOOL_APPENDED,
        "Records made durable in the local spool instead of Postgres"
    );
    describe_counter!(
        SPOOL_DRAINED,
        "Spooled records drained into Postgres, by outcome"
    );
    describe_counter!(
        SPOOL_REFUSED,
        "Records the spool could not take (full or disk error): not acknowledged"
    );
    describe_counter!(
        SPOOL_CORRUPT,
        "Corrupt spool records found on start, kept aside"
    );
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
    describe_counter!(
        SEAL_FAILURES,
        "Sealed values (key-safe codes, medical notes) that could not be opened"
    );
    describe_counter!(
        CONSOLE_KEY_SAFE_REVEALS,
        "Key-safe code reveals asked for, by outcome (held, override, refused, rate_limited)"
    );
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
    describe_gauge!(
        LISTENER_CONNECTIONS,
        "Open HTTP connections (WebSockets included) by listener"
    );
    describe_counter!(
        LISTENER_REFUSED,
        "HTTP connections closed at once for a connection cap, by listener and cap"
    );
    describe_counter!(
        LISTENER_HEADER_TIMEOUTS,
        "HTTP connections closed because the request head was not sent in time"
    );
    describe_counter!(
        LISTENER_TLS_HANDSHAKE_FAILURES,
        "TLS handshakes on an HTTPS listener that failed or timed out"
    );
    describe_counter!(
        LISTENER_TLS_RELOADS,
        "Reloads of a listener's certificate and key after their files changed, by result"
    );
    describe_counter!(
        OOH_JOBS,
        "Out-of-hours jobs logged, by whether they were routed"
    );
    describe_counter!(
        PAGES,
        "Pages the escalator recorded, by channel and delivery status"
    );
    describe_counter!(PAGES_ACKNOWLEDGED, "Pages acknowledged by the person paged");
    describe_counter!(
        ESCALATIONS_STARTED,
        "Escalations started by an answer-time threshold or a failure to report"
    );
    describe_counter!(
        ESCALATIONS_UNROUTED,
        "Incidents that should have escalated but matched no route"
    );
    describe_counter!(
        ESCALATION_GAPS,
        "Chain targets that reached nobody; the fallback was paged"
    );
    describe_counter!(
        ESCALATIONS_UNREACHABLE,
        "Escalations that could page nobody at all"
    );
    describe_counter!(
        ESCALATIONS_EXHAUSTED,
        "Escalation chains that ran every round unanswered"
    );
    describe_counter!(
        ESCALATOR_FAILURES,
        "Escalation passes that failed and were retried"
    );
    describe_counter!(
        PAGE_REPLIES,
        "SMS replies received through the gateway, by what they did"
    );
    describe_gauge!(
        ESCALATION_OVERDUE,
        "Escalation steps, page deliveries and threshold events more than 30 s past due"
    );
    describe_counter!(
        CALLER_MESSAGES,
        "Messages to out-of-hours callers (reference, status changes) by channel and outcome"
    );
    describe_gauge!(DC09_CONNECTIONS, "Open DC-09 TCP connections");
    describe_gauge!(SCAIP_CONNECTIONS, "Open SCAIP TCP connections");
    describe_counter!(
        UDP_RECEIVE_DROPS,
        "UDP datagrams the kernel dropped on a receiver's socket before Warden read them"
    );
    describe_counter!(
        SCAIP_CONNECTIONS_REFUSED,
        "SCAIP TCP connections refused at a limit, by reason"
    );
    describe_counter!(
        SCAIP_REPLIES,
        "SIP responses sent to SCAIP units, by transport and reply code (none: no answer)"
    );
    describe_counter!(
        DC09_CONNECTIONS_REFUSED,
        "DC-09 TCP connections closed at once for a connection limit"
    );
    describe_counter!(
        DC09_REPLIES,
        "DC-09 frames answered, by transport and reply (none: bad CRC, or not durable)"
    );
    describe_counter!(
        HEARTBEATS,
        "Calls of the dead-man heartbeat URL, by outcome"
    );
    describe_gauge!(
        ONCALL_FINDINGS,
        "Problems in rotas and chains over the next 14 days, by kind (0 when none)"
    );
    describe_histogram!(
        PAGE_TO_ACK,
        Unit::Seconds,
        "From a page being sent to its acknowledgement by the person paged"
    );
    describe_histogram!(
        ESCALATION_FIRST_PAGE,
        Unit::Seconds,
        "Answer-time threshold passed to the escalation's first page"
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
    describe_counter!(
        NAKS_SENT,
        "NAKs sent to a receiver for undecodable frames or failed writes"
    );
    describe_counter!(
        SERIAL_LATE_FRAMES,
        "Serial frames not durable within the receiver's ACK window and left unanswered (the receiver resends)"
    );
    describe_counter!(
        SERIAL_RETRANSMISSIONS,
        "Serial frames recognised as a retransmission of the previous frame and not stored again"
    );
    describe_counter!(
        DEVICE_PRESENCE,
        "MQTT device online/offline (last will) messages"
    );
    describe_gauge!(
        MQTT_BROKER_DROPPED,
        "Messages the MQTT broker reports it dropped since it started ($SYS)"
    );
    describe_counter!(
        MQTT_SEQUENCE_GAPS,
        "Gaps in MQTT units' sequence numbers (messages lost between unit and centre)"
    );
}

/// Installs the global Prometheus recorder and returns the handle that renders `/metrics`.
/// Only the binary calls this; libraries only emit.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DB_BATCH_SIZE.into()), BATCH_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(PAGE_TO_ACK.into()), PERSON_BUCKETS))
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
    /// Registering at zero makes every series of a counter appear in `/metrics` with the
    /// value 0, and leaves a series that already counts alone.
    #[test]
    fn counters_registered_at_zero_show_every_label_set_before_the_first_event() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(super::CONSOLE_LOGINS, "outcome" => "ok").increment(3);
            super::register_zero(super::CONSOLE_ZERO);
            super::register_zero(&[super::ZeroCounter {
                name: "warden_test_pairs_total",
                labels: &[
                    ("source", &["serial", "mqtt"]),
                    ("reason", &["a", "b", "c"]),
                ],
            }]);
        });
        let text = handle.render();
        for outcome in super::CONSOLE_LOGIN_OUTCOMES {
            let value = if *outcome == "ok" { 3 } else { 0 };
            let line = format!("warden_console_logins_total{{outcome=\"{outcome}\"}} {value}");
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
        for routed in super::OOH_ROUTED {
            let line = format!("warden_ooh_jobs_total{{routed=\"{routed}\"}} 0");
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
        assert!(
            text.contains("warden_console_push_lagged_total 0"),
            "{text}"
        );
        let pairs = text
            .lines()
            .filter(|l| l.starts_with("warden_test_pairs_total{"))
            .count();
        assert_eq!(pairs, 6, "{text}");
    }

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
            super::DEGRADED,
            super::ENGINE_DEFERRED,
            super::ENGINE_JOURNAL_ENTRIES,
            super::ENGINE_JOURNAL_ERRORS,
            super::ENGINE_JOURNAL_RECOVERED,
            super::SPOOL_RECORDS,
            super::SPOOL_BYTES,
            super::SPOOL_FILL,
            super::SPOOL_OLDEST_AGE,
            super::SPOOL_APPENDED,
            super::SPOOL_DRAINED,
            super::SPOOL_REFUSED,
            super::SPOOL_CORRUPT,
            super::LINK_UP,
            super::LINK_TRANSITIONS,
            super::SERIAL_OPEN_ERRORS,
            super::NAKS_SENT,
            super::SERIAL_LATE_FRAMES,
            super::SERIAL_RETRANSMISSIONS,
            super::DEVICE_PRESENCE,
            super::MQTT_BROKER_DROPPED,
            super::MQTT_SEQUENCE_GAPS,
            super::SIGNAL_TO_OFFER,
            super::INCIDENTS_OFFERED,
            super::INCIDENTS_OPEN,
            super::ENGINE_COMMIT,
            super::ENGINE_RUNNING,
            super::ENGINE_REPLAYING,
            super::ENGINE_REPLAYED,
            super::ENGINE_LAST_BATCH,
            super::ENGINE_LANE_DEPTH,
            super::ENGINE_INPUT_FAILURES,
            super::ENGINE_BATCH_FAILURES,
            super::LINK_TASK_RESTARTS,
            super::CONSOLE_REQUESTS,
            super::CONSOLE_REQUEST_TIME,
            super::CONSOLE_LOGINS,
            super::CONSOLE_CONNECTIONS,
            super::CONSOLE_PUSH,
            super::CONSOLE_PUSH_LAGGED,
            super::LISTENER_CONNECTIONS,
            super::LISTENER_REFUSED,
            super::LISTENER_HEADER_TIMEOUTS,
            super::LISTENER_TLS_HANDSHAKE_FAILURES,
            super::LISTENER_TLS_RELOADS,
            super::OOH_JOBS,
            super::PAGES,
            super::PAGES_ACKNOWLEDGED,
            super::ESCALATIONS_STARTED,
            super::ESCALATIONS_UNROUTED,
            super::ESCALATION_GAPS,
            super::ESCALATIONS_UNREACHABLE,
            super::ESCALATIONS_EXHAUSTED,
            super::ESCALATOR_FAILURES,
            super::ESCALATION_FIRST_PAGE,
            super::ONCALL_FINDINGS,
            super::PAGE_TO_ACK,
            super::PAGE_REPLIES,
            super::ESCALATION_OVERDUE,
            super::HEARTBEATS,
            super::CALLER_MESSAGES,
            super::DC09_CONNECTIONS,
            super::DC09_CONNECTIONS_REFUSED,
            super::DC09_REPLIES,
            super::SCAIP_CONNECTIONS,
            super::UDP_RECEIVE_DROPS,
            super::SCAIP_CONNECTIONS_REFUSED,
            super::SCAIP_REPLIES,
            super::CONSOLE_KEY_SAFE_REVEALS,
            super::SEAL_FAILURES,
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
