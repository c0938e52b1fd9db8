//! Turning what arrived on a link into durable records, with the log line and the metric
//! for each outcome emitted in one place.

use std::time::Instant;

use time::OffsetDateTime;
use uuid::Uuid;
use warden_core::{Decoded, Problem, clip};
use warden_store::{
    Committed, DeviceProtocol, LinkKind, NewQuarantine, NewSignal, Record, Source, WriteError,
    WriterHandle,
};
use warden_telemetry as m;

use warden_engine::CommittedSignal;

use crate::DeviceCache;
use crate::reuse::ReusedIds;

/// What an adapter needs to make signals durable.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub writer: WriterHandle,
    pub devices: DeviceCache,
    pub store: warden_store::Store,
    /// The triage engine, handed every newly committed signal; `None` runs ingest alone
    /// (tools, tests). Signals committed while it is absent are replayed when it starts.
    pub engine: Option<warden_engine::EngineHandle>,
    /// Reused message ids per device: a burst raises one path fault for the unit.
    pub reused_ids: ReusedIds,
}

impl Ingest {
    /// Ingest over a writer, the account cache and the store, handing committed signals to
    /// `engine` when there is one.
    pub fn new(
        writer: WriterHandle,
        devices: DeviceCache,
        store: warden_store::Store,
        engine: Option<warden_engine::EngineHandle>,
    ) -> Self {
        Ingest {
            writer,
            devices,
            store,
            engine,
            reused_ids: ReusedIds::default(),
        }
    }
}

/// A decoded signal on its way to the store.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub source: Source,
    pub link_id: String,
    /// The account the signal names, when the protocol has one.
    pub account: Option<String>,
    /// The protocols a device registered for `account` may use to speak on this path: a
    /// signal from any other path may not speak for it (an MQTT topic naming a serial
    /// panel's account, say).
    pub speaks: &'static [DeviceProtocol],
    pub raw: Vec<u8>,
    pub decoded: Decoded,
    pub received_at: OffsetDateTime,
    pub dedupe_key: Option<String>,
}

/// Protocols a Sur-Gard receiver reports for: Contact ID and SIA panels.
pub(crate) const RECEIVER_PROTOCOLS: &[DeviceProtocol] =
    &[DeviceProtocol::ContactId, DeviceProtocol::Sia];
/// An MQTT uplink speaks only for a device registered with protocol `mqtt`.
pub(crate) const MQTT_PROTOCOLS: &[DeviceProtocol] = &[DeviceProtocol::Mqtt];

/// How a record ended, for the adapter to answer its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Committed as a signal (or recognised as already committed).
    Stored { id: Uuid, duplicate: bool },
    /// Committed to quarantine.
    Quarantined { id: Uuid },
}

impl Outcome {
    pub fn id(self) -> Uuid {
        match self {
            Outcome::Stored { id, .. } | Outcome::Quarantined { id } => id,
        }
    }
}

impl Ingest {
    /// Resolves the account and writes the signal. A signal that cannot be attributed to a
    /// registered device (unknown account, a device registered for another protocol) is
    /// still stored and triaged, without a device and marked with its [`Problem`], so an
    /// operator sees it; its bytes also go to quarantine as evidence for the supervisors'
    /// "rejected signals" view. Resolves only after commit.
    pub(crate) async fn signal(&self, mut a: Arrival) -> Result<Outcome, WriteError> {
        metrics::counter!(m::SIGNALS_RECEIVED, "source" => a.source.as_str()).increment(1);
        let (device_id, unattributed) = match (&a.account, &a.decoded.problem) {
            // The adapter already found why this signal may not speak for its account (a
            // pass-through from a unit that is not the panel's bridge): no device.
            (_, Some(p @ Problem::NotABridge { .. })) => (None, Some(p.clone())),
            (None, _) => (None, None),
            (Some(acct), _) => match self.devices.resolve(acct).await {
                Ok(Some(dev)) if a.speaks.contains(&dev.protocol) => (Some(dev.id), None),
                Ok(Some(dev)) => (
                    None,
                    Some(Problem::ProtocolMismatch {
                        account: acct.clone(),
                        registered: dev.protocol.as_str().to_owned(),
                        arrived: a.source.as_str().to_owned(),
                    }),
                ),
                Ok(None) => (
                    None,
                    Some(Problem::UnknownAccount {
                        account: acct.clone(),
                    }),
                ),
                // Not known to be durable: the adapter NAKs or retries before PUBACK.
                Err(e) => return Err(WriteError::Commit(format!("device lookup failed: {e}"))),
            },
        };
        if let Some(p) = &unattributed {
            a.decoded = a.decoded.with_problem(p.clone());
        }
        let evidence = unattributed.as_ref().map(|p| {
            self.quarantine_counted(
                a.source,
                a.link_id.clone(),
                a.raw.clone(),
                p.code(),
                format!("{p}; stored as a signal without a device and triaged"),
                a.received_at,
            )
        });
        let stored = self.store_signal(&a, device_id, a.decoded.to_json());
        let written = match evidence {
            // Written side by side, so the writer commits both in one batch. The evidence
            // row is a convenience for supervisors; the signal is what the sender waits for.
            Some(evidence) => {
                let (stored, evidence) = tokio::join!(stored, evidence);
                if let Err(e) = evidence {
                    tracing::error!(error = %e, "could not keep the evidence of a problem signal");
                }
                stored
            }
            None => stored.await,
        };
        let written = match written {
            // Postgres refused this record for its data (the writer isolates it from its
            // batch). Keep the bytes in quarantine and store a stand-in that carries the
            // same events without the decoder's text, so the alarm still reaches a person.
            Err(WriteError::Rejected { code, message }) => {
                let reason = format!("database refused the signal ({code}): {message}");
                let problem = Problem::DatabaseRefused {
                    message: clip(&reason, 300),
                };
                let (_, stand_in) = tokio::join!(
                    self.quarantine_counted(
                        a.source,
                        a.link_id.clone(),
                        a.raw.clone(),
                        problem.code(),
                        reason,
                        a.received_at,
                    ),
                    async {
                        let mut d = a.decoded.clone().sanitized();
                        d.frame = serde_json::Value::Null;
                        d = d.with_problem(problem.clone());
                        a.account = a.account.as_deref().map(without_nul);
                        a.link_id = without_nul(&a.link_id);
                        a.decoded = d;
                        self.store_signal(&a, device_id, a.decoded.to_json()).await
                    }
                );
                stand_in?
            }
            other => other?,
        };
        match written {
            // Spooled: durable in the local spool while Postgres is away; triaged from memory
            // now (the engine commits its effects after the drain), acknowledged.
            Committed::Stored(id) | Committed::Spooled(id) => {
                self.triage(&a, id, device_id).await;
                Ok(Outcome::Stored {
                    id,
                    duplicate: false,
                })
            }
            // The sender used this message id for another message within the dedupe window:
            // a new signal (a unit whose counter restarted), never to be mistaken for a
            // redelivery and swallowed.
            Committed::Reused { id, key } => {
                tracing::warn!(source = a.source.as_str(), %key, %id, device_id, "message id reused for a different payload; stored as a new signal");
                metrics::counter!(m::DEDUPE_CONFLICTS, "source" => a.source.as_str()).increment(1);
                self.triage(&a, id, device_id).await;
                if let Some(device) = device_id {
                    self.id_reused(&a, device).await;
                }
                Ok(Outcome::Stored {
                    id,
                    duplicate: false,
                })
            }
            Committed::Duplicate { existing_key } => {
                tracing::info!(source = a.source.as_str(), key = %existing_key, "redelivered signal recognised");
                metrics::counter!(m::SIGNALS_DUPLICATE, "source" => a.source.as_str()).increment(1);
                Ok(Outcome::Stored {
                    id: Uuid::nil(),
                    duplicate: true,
                })
            }
            Committed::Quarantined(id) => Ok(Outcome::Quarantined { id }),
        }
    }

    /// Hands a committed signal to the triage engine, if one runs.
    async fn triage(&self, a: &Arrival, id: Uuid, device_id: Option<i64>) {
        let Some(engine) = &self.engine else { return };
        let handed = engine
            .submit(&CommittedSignal {
                id,
                source: a.source,
                link: &a.link_id,
                account: a.account.as_deref(),
                device_id,
                decoded: &a.decoded,
                received_at: a.received_at,
            })
            .await;
        if !handed {
            tracing::warn!(%id, "triage engine stopped; the signal will be replayed on restart");
        }
    }

    /// Counts a reused message id against its device and, when a burst crosses the
    /// threshold, stores and triages one technical path fault for the unit ("message ids
    /// reused: firmware reset?"). Awaited before the reusing message is acknowledged, which
    /// delays that one acknowledgement by one commit, once per window per device. A fault
    /// that cannot be stored is logged and tried again at the next reuse.
    async fn id_reused(&self, a: &Arrival, device: i64) {
        let Some(burst) = self.reused_ids.note(device, Instant::now()) else {
            return;
        };
        let detail = burst.detail();
        tracing::warn!(device_id = device, count = burst.count, %detail, "message ids reused in a burst; raising a path fault");
        let fault = Arrival {
            source: Source::Internal,
            link_id: a.link_id.clone(),
            account: a.account.clone(),
            speaks: &[],
            raw: Vec::new(),
            decoded: Decoded::path_fault(&detail),
            received_at: OffsetDateTime::now_utc(),
            dedupe_key: None,
        };
        if let Err(e) = self.internal(fault, Some(device)).await {
            tracing::error!(device_id = device, error = %e, "could not record the path fault of reused message ids");
            self.reused_ids.unraise(device);
        }
    }

    /// Writes one signal row; resolves after COMMIT.
    async fn store_signal(
        &self,
        a: &Arrival,
        device_id: Option<i64>,
        decoded: serde_json::Value,
    ) -> Result<Committed, WriteError> {
        self.writer
            .write(Record::Signal(NewSignal {
                id: Uuid::now_v7(),
                source: a.source,
                link_id: a.link_id.clone(),
                account: a.account.clone(),
                device_id,
                kind: a.decoded.kind_label().to_owned(),
                raw: a.raw.clone(),
                decoded,
                received_at: a.received_at,
                dedupe_key: a.dedupe_key.clone(),
            }))
            .await
    }

    /// Well-framed input that could not be decoded: kept in quarantine, and stored and
    /// triaged as an unreadable signal (urgent unless configured otherwise) of the device
    /// it names, or of the link when it names none, so a person looks at it.
    ///
    /// `salvaged` is what could still be read of it (an MQTT body whose envelope broke the
    /// schema): it is triaged as read, marked [`Problem::Malformed`], so a readable pendant
    /// stays life-critical.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn unreadable(
        &self,
        source: Source,
        link_id: String,
        account: Option<String>,
        speaks: &'static [DeviceProtocol],
        raw: Vec<u8>,
        reason_code: &'static str,
        reason: String,
        received_at: OffsetDateTime,
        salvaged: Option<Decoded>,
    ) -> Result<Outcome, WriteError> {
        let decoded = match salvaged {
            // A problem the adapter already found (not a bridge) says more than "malformed".
            Some(d) if d.problem.is_some() => d,
            Some(d) => d.with_problem(Problem::Malformed {
                detail: clip(&reason, warden_core::MAX_SUMMARY_BYTES),
            }),
            None => Decoded::new(
                vec![warden_core::SignalWhat::Unknown {
                    raw_summary: clip(&reason, warden_core::MAX_SUMMARY_BYTES),
                }],
                serde_json::Value::Null,
            ),
        };
        let evidence = self.quarantine_counted(
            source,
            link_id.clone(),
            raw.clone(),
            reason_code,
            format!("{reason}; stored as an unreadable signal and triaged"),
            received_at,
        );
        let signal = self.signal(Arrival {
            source,
            link_id,
            account,
            speaks,
            raw,
            decoded,
            received_at,
            dedupe_key: None,
        });
        let (evidence, signal) = tokio::join!(evidence, signal);
        if let Err(e) = evidence {
            tracing::error!(error = %e, "could not keep the evidence of an unreadable signal");
        }
        signal
    }

    /// Quarantines input that could not be decoded. Counts it as received and rejected.
    pub(crate) async fn reject(
        &self,
        source: Source,
        link_id: String,
        raw: Vec<u8>,
        reason_code: &'static str,
        reason: String,
        received_at: OffsetDateTime,
    ) -> Result<Outcome, WriteError> {
        metrics::counter!(m::SIGNALS_RECEIVED, "source" => source.as_str()).increment(1);
        self.quarantine_counted(source, link_id, raw, reason_code, reason, received_at)
            .await
    }

    async fn quarantine_counted(
        &self,
        source: Source,
        link_id: String,
        raw: Vec<u8>,
        reason_code: &'static str,
        reason: String,
        received_at: OffsetDateTime,
    ) -> Result<Outcome, WriteError> {
        tracing::warn!(source = source.as_str(), link = %link_id, reason_code, %reason, "input quarantined");
        metrics::counter!(m::SIGNALS_REJECTED, "source" => source.as_str(), "reason" => reason_code).increment(1);
        let id = Uuid::now_v7();
        let rec = Record::Quarantine(NewQuarantine {
            id,
            source,
            link_id,
            raw,
            reason_code,
            reason,
            received_at,
        });
        match self.writer.write(rec).await? {
            Committed::Quarantined(id)
            | Committed::Stored(id)
            | Committed::Reused { id, .. }
            | Committed::Spooled(id) => Ok(Outcome::Quarantined { id }),
            Committed::Duplicate { .. } => Ok(Outcome::Quarantined { id }),
        }
    }

    /// Records that the peer was acknowledged: metrics plus the `acked_at` mark.
    pub(crate) fn acked(&self, source: Source, outcome: Outcome, arrived: Instant) {
        metrics::counter!(m::SIGNALS_ACKED, "source" => source.as_str()).increment(1);
        metrics::histogram!(m::ACK_LATENCY, "source" => source.as_str())
            .record(arrived.elapsed().as_secs_f64());
        if !matches!(
            outcome,
            Outcome::Stored {
                duplicate: true,
                ..
            }
        ) {
            self.writer.mark_acked(vec![outcome.id()]);
        }
    }

    /// Records a link going down or coming back: gauge, links table, and (when `evidence`)
    /// an internal signal, so the outage is in the same evidence table as the alarms it may
    /// have delayed. The state at start-up and the first connection are not outages and are
    /// not recorded as signals.
    pub(crate) async fn link_change(&self, link_id: &str, up: bool, detail: &str, evidence: bool) {
        metrics::gauge!(m::LINK_UP, "link" => link_id.to_owned()).set(if up { 1.0 } else { 0.0 });
        metrics::counter!(m::LINK_TRANSITIONS, "link" => link_id.to_owned(), "state" => if up { "up" } else { "down" })
            .increment(1);
        match (up, evidence) {
            (true, _) => tracing::info!(link = link_id, detail, "link up"),
            (false, true) => tracing::warn!(link = link_id, detail, "link lost"),
            (false, false) => tracing::info!(link = link_id, detail, "link down"),
        }
        let kind_of_link = LinkKind::parse(link_id.split(':').next().unwrap_or_default())
            .unwrap_or(LinkKind::Serial);
        // The `links` row is the current view; the link's history is the internal signal
        // below, which the writer makes durable (spooled while the database is away). The
        // link task must not wait on an unavailable database for the view.
        let stored = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.store
                .set_link_state(link_id, kind_of_link, up, OffsetDateTime::now_utc()),
        )
        .await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(link = link_id, error = %e, "could not update link state");
            }
            Err(_) => {
                tracing::error!(
                    link = link_id,
                    "could not update link state: database did not answer within 1 s"
                );
            }
        }
        if !evidence {
            return;
        }
        let decoded = Decoded::link(up, link_id, detail);
        let a = Arrival {
            source: Source::Internal,
            link_id: link_id.to_owned(),
            account: None,
            speaks: &[],
            raw: Vec::new(),
            decoded,
            received_at: OffsetDateTime::now_utc(),
            dedupe_key: None,
        };
        if let Err(e) = self.internal(a, None).await {
            tracing::error!(link = link_id, error = %e, "could not record link state change");
        }
    }

    /// Records the result of one of Warden's own checks (the on-call configuration, overdue
    /// escalation work) as an internal signal on the link `warden:<check>`: a failing check
    /// raises a technical incident, a passing one restores it.
    pub async fn self_check(&self, check: &str, ok: bool, detail: &str) {
        let link_id = format!("warden:{check}");
        let a = Arrival {
            source: Source::Internal,
            link_id: link_id.clone(),
            account: None,
            speaks: &[],
            raw: Vec::new(),
            decoded: Decoded::self_check(check, ok, detail),
            received_at: OffsetDateTime::now_utc(),
            dedupe_key: None,
        };
        if let Err(e) = self.internal(a, None).await {
            tracing::error!(link = %link_id, error = %e, "could not record a self-check");
        }
    }

    /// Stores a signal Warden raised itself (a link change, a fault found on a unit's path)
    /// and hands it to the engine.
    pub(crate) async fn internal(
        &self,
        a: Arrival,
        device_id: Option<i64>,
    ) -> Result<(), WriteError> {
        let json = a.decoded.to_json();
        // Without a dedupe key the store answers `Stored`, or `Spooled` in degraded mode.
        if let Committed::Stored(id) | Committed::Spooled(id) =
            self.store_signal(&a, device_id, json).await?
        {
            self.triage(&a, id, device_id).await;
        }
        Ok(())
    }
}

/// Text with NUL characters (which Postgres text cannot hold) replaced by U+FFFD.
fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use warden_protocol::mqtt::{parse_payload, parse_topic};
    use warden_telemetry::REJECT_REASONS;

    /// Every reason ingest can count is registered at zero at start, so a rejection alert
    /// never watches a series that does not exist yet.
    #[test]
    fn every_rejection_reason_ingest_can_emit_is_registered_at_zero() {
        let mut emitted: Vec<&str> = warden_core::Problem::CODES.to_vec();
        emitted.extend(["bad_frame", "oversized", "unsupported_protocol"]);
        for payload in [
            "{not json".to_owned(),
            r#"{"v":9,"msg_id":"a","heartbeat":{}}"#.to_owned(),
            r#"{"msg_id":"a","teleport":{}}"#.to_owned(),
            r#"{"v":1,"heartbeat":{}}"#.to_owned(),
            r#"{"v":1,"msg_id":"a","contact_id":{"message":"1234181131010159"}}"#.to_owned(),
            format!(
                r#"{{"v":1,"msg_id":"{}","heartbeat":{{}}}}"#,
                "x".repeat(9000)
            ),
        ] {
            let e = parse_payload("unit-1", payload.as_bytes()).expect_err("bad payload");
            emitted.push(e.reason());
        }
        emitted.push(
            parse_topic("warden", "warden/v1/devices/a/b/up")
                .expect_err("bad topic")
                .reason(),
        );
        for reason in emitted {
            assert!(
                REJECT_REASONS.contains(&reason),
                "{reason} missing from REJECT_REASONS"
            );
        }
    }
}
