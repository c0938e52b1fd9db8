//! Turning what arrived on a link into durable records, with the log line and the metric
//! for each outcome emitted in one place.

use std::time::Instant;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use warden_store::{
    Committed, LinkKind, NewQuarantine, NewSignal, Record, Source, WriteError, WriterHandle,
};
use warden_telemetry as m;

use warden_engine::CommittedSignal;

use crate::DeviceCache;

/// What an adapter needs to make signals durable.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub writer: WriterHandle,
    pub devices: DeviceCache,
    pub store: warden_store::Store,
    /// The triage engine, handed every newly committed signal; `None` runs ingest alone
    /// (tools, tests). Signals committed while it is absent are replayed when it starts.
    pub engine: Option<warden_engine::EngineHandle>,
}

/// A decoded signal on its way to the store.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub source: Source,
    pub link_id: String,
    pub account: Option<String>,
    pub kind: &'static str,
    pub raw: Vec<u8>,
    pub decoded: Value,
    pub received_at: OffsetDateTime,
    pub dedupe_key: Option<String>,
}

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
    /// Resolves the account, then writes the signal, or quarantines it when the account is
    /// unknown. Resolves only after commit.
    pub(crate) async fn signal(&self, a: Arrival) -> Result<Outcome, WriteError> {
        metrics::counter!(m::SIGNALS_RECEIVED, "source" => a.source.as_str()).increment(1);
        let device_id = match &a.account {
            Some(acct) => match self.devices.resolve(acct).await {
                Ok(Some(id)) => Some(id),
                Ok(None) => {
                    let reason = format!("unknown account {acct:?} on link {}", a.link_id);
                    return self
                        .quarantine_counted(
                            a.source,
                            a.link_id,
                            a.raw,
                            "unknown_account",
                            reason,
                            a.received_at,
                        )
                        .await;
                }
                // Not known to be durable: the adapter NAKs or retries before PUBACK.
                Err(e) => return Err(WriteError::Commit(format!("device lookup failed: {e}"))),
            },
            None => None,
        };
        let id = Uuid::now_v7();
        // Kept for quarantine should the database refuse the record itself.
        let raw = a.raw.clone();
        let for_engine = self
            .engine
            .as_ref()
            .map(|_| (a.link_id.clone(), a.account.clone(), a.decoded.clone()));
        let rec = Record::Signal(NewSignal {
            id,
            source: a.source,
            link_id: a.link_id.clone(),
            account: a.account,
            device_id,
            kind: a.kind.to_owned(),
            raw: a.raw,
            decoded: a.decoded,
            received_at: a.received_at,
            dedupe_key: a.dedupe_key,
        });
        let written = match self.writer.write(rec).await {
            // Postgres refused this one record for its data (the writer isolates it from
            // its batch): keep it as evidence in quarantine instead of retrying forever.
            Err(WriteError::Rejected { code, message }) => {
                let reason = format!("database refused the signal ({code}): {message}");
                return self
                    .quarantine_counted(
                        a.source,
                        a.link_id,
                        raw,
                        "db_rejected",
                        reason,
                        a.received_at,
                    )
                    .await;
            }
            other => other?,
        };
        match written {
            Committed::Stored(id) => {
                if let (Some(engine), Some((link, account, decoded))) = (&self.engine, &for_engine)
                {
                    let handed = engine
                        .submit(&CommittedSignal {
                            id,
                            source: a.source,
                            link,
                            account: account.as_deref(),
                            device_id,
                            kind: a.kind,
                            decoded,
                            received_at: a.received_at,
                        })
                        .await;
                    if !handed {
                        tracing::warn!(%id, "triage engine stopped; the signal will be replayed on restart");
                    }
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
                    id,
                    duplicate: true,
                })
            }
            Committed::Quarantined(id) => Ok(Outcome::Quarantined { id }),
        }
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
            Committed::Quarantined(id) | Committed::Stored(id) => Ok(Outcome::Quarantined { id }),
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
        let kind = if up { "link_restored" } else { "link_lost" };
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
        if let Err(e) = self
            .store
            .set_link_state(link_id, kind_of_link, up, OffsetDateTime::now_utc())
            .await
        {
            tracing::error!(link = link_id, error = %e, "could not update link state");
        }
        if !evidence {
            return;
        }
        let received_at = OffsetDateTime::now_utc();
        let rec = Record::Signal(NewSignal {
            id: Uuid::now_v7(),
            source: Source::Internal,
            link_id: link_id.to_owned(),
            account: None,
            device_id: None,
            kind: kind.to_owned(),
            raw: Vec::new(),
            decoded: serde_json::json!({ "kind": kind, "link": link_id, "detail": detail }),
            received_at,
            dedupe_key: None,
        });
        let decoded = match &rec {
            Record::Signal(s) => s.decoded.clone(),
            Record::Quarantine(_) => serde_json::Value::Null,
        };
        match self.writer.write(rec).await {
            Ok(Committed::Stored(id)) => {
                if let Some(engine) = &self.engine {
                    let c = CommittedSignal {
                        id,
                        source: Source::Internal,
                        link: link_id,
                        account: None,
                        device_id: None,
                        kind,
                        decoded: &decoded,
                        received_at,
                    };
                    engine.submit(&c).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(link = link_id, error = %e, "could not record link state change");
            }
        }
    }
}
