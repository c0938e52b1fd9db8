//! Escalation delivery: the shell around `warden_core::oncall`.
//!
//! ```text
//! engine ──outbox row (overflow, critical, fail_to_report)──▶ escalator pass ──▶ escalations
//!                                                               │  (one transaction)
//!                          due escalation rows, FOR UPDATE SKIP LOCKED, with incident state
//!                                                               ▼
//!                                              Escalation::fire ──▶ pages + incident history
//! console ──acknowledge(page)──▶ Escalation::acknowledge (same row lock) ──▶ pages acknowledged
//! ```
//!
//! Every pass is one transaction: outbox entries become escalations, each due escalation is
//! fired with its incident's state read under the row lock, and the pages, the history lines
//! and the new escalation state commit together. So:
//! - a restart resumes every chain where it stood (the state is in Postgres);
//! - two wardend processes never fire the same step (`SKIP LOCKED`), and never page an
//!   incident that was acknowledged, claimed or resolved before the pass committed (the
//!   acknowledgement takes the same row lock; claims and resolutions are read under it);
//! - nothing is skipped silently: a rota with nobody on call pages the fallback and records
//!   the gap, and an incident no route matches is recorded as unrouted.
//!
//! Channels: this build delivers to the console inbox (the `on_call` role sees its pages and
//! acknowledges there). A person whose only verified methods are other channels gets a page
//! recorded as failed with the reason, and the chain moves on.

mod directory;

use std::time::Duration;

use metrics::{counter, histogram};
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};
use warden_core::oncall::{Action, Escalation, Reason};
use warden_store::{NewPage, Store, StoreError};
use warden_telemetry as m;

pub use directory::{Oncall, ts};

/// Contact-method kinds this build delivers.
pub const DELIVERED_CHANNELS: &[&str] = &["console"];

/// The outbox kinds that start an escalation.
const STARTS: &[&str] = &["overflow", "critical", "fail_to_report"];

/// Incident states in which an escalation keeps paging: nobody holds it yet.
const UNANSWERED: &[&str] = &["raised", "offered"];

/// Tuning of the escalator.
#[derive(Debug, Clone, Copy)]
pub struct EscalatorConfig {
    /// How often a pass runs (default 1 s): the latency from a threshold to the first page.
    pub every: Duration,
    /// Most outbox entries and most due escalations one pass takes (default 200).
    pub batch: i64,
}

impl Default for EscalatorConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            batch: 200,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Escalations started from outbox entries.
    pub started: u32,
    /// Due escalations fired (or stopped).
    pub fired: u32,
    /// Pages recorded.
    pub pages: u32,
    /// Escalations stopped because the incident was answered or closed.
    pub stopped: u32,
}

/// Why a pass or an acknowledgement failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such page.
    #[error("no page {0}")]
    UnknownPage(i64),
    /// The console user is not linked to a person of the on-call directory.
    #[error("this account is not linked to anyone on call")]
    NotAPerson,
    /// The page was sent to someone else.
    #[error("page {0} was sent to someone else")]
    NotYours(i64),
    /// The escalation's chain could not be read.
    #[error("chain {0} cannot be read")]
    BadChain(i64),
    /// A stored escalation could not be read or written.
    #[error("escalation of incident {0}: {1}")]
    BadState(i64, String),
}

/// Runs passes every `cfg.every` until `shutdown`. A failed pass is logged and counted; the
/// next one retries (nothing of a failed pass was committed).
pub async fn run(store: Store, cfg: EscalatorConfig, shutdown: CancellationToken) {
    info!(every_ms = cfg.every.as_millis(), "escalator started");
    let mut ticker = tokio::time::interval(cfg.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Cancel-safe: a pass in progress is not interrupted (it is not in this select).
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = pass(&store, OffsetDateTime::now_utc(), cfg.batch).await {
            counter!(m::ESCALATOR_FAILURES).increment(1);
            warn!(error = %e, "escalation pass failed; retrying at the next tick");
        }
    }
    info!("escalator stopped");
}

/// Spawns [`run`] with its span.
pub fn spawn(
    store: Store,
    cfg: EscalatorConfig,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(store, cfg, shutdown).instrument(info_span!("escalator")))
}

/// One pass at `now`: start escalations for new outbox entries, fire the due ones.
pub async fn pass(store: &Store, now: OffsetDateTime, batch: i64) -> Result<Pass, NotifyError> {
    let oncall = Oncall::from_config(store.oncall_config(now).await?);
    for e in &oncall.errors {
        error!(problem = %e, "on-call configuration unreadable");
    }
    let at = ts(now);
    let mut report = Pass::default();
    // When the thresholds of the escalations started in this pass were passed.
    let mut crossed: Vec<OffsetDateTime> = Vec::new();
    let mut tx = store.begin_oncall().await?;

    let entries = tx.pending_outbox(batch).await?;
    for entry in &entries {
        let Some(incident) = entry.incident_id else {
            continue;
        };
        let open = entry
            .state
            .as_deref()
            .is_some_and(|s| UNANSWERED.contains(&s));
        if !STARTS.contains(&entry.kind.as_str()) || !open {
            continue;
        }
        let Some(chain_id) = oncall.route(
            entry.priority.as_deref(),
            entry.incident_kind.as_deref(),
            entry.area.as_deref(),
        ) else {
            tx.incident_event(
                Some(incident),
                "escalation_unrouted",
                &json!({ "reason": entry.kind, "detail": "no escalation route matches this incident" }),
            )
            .await?;
            counter!(m::ESCALATIONS_UNROUTED).increment(1);
            continue;
        };
        let esc = Escalation::start(at);
        let state = serde_json::to_value(&esc)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        if tx
            .start_escalation(incident, chain_id, &state, Some(now), now)
            .await?
        {
            tx.incident_event(
                Some(incident),
                "escalation_started",
                &json!({ "chain": chain_id, "because": entry.kind }),
            )
            .await?;
            counter!(m::ESCALATIONS_STARTED).increment(1);
            crossed.push(entry.created_at);
            report.started += 1;
        }
    }
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    if !ids.is_empty() {
        tx.outbox_done(&ids, now).await?;
    }

    // Escalations started above are due now and fire in the same pass.
    for due in tx.due_escalations(now, batch).await? {
        report.fired += 1;
        let incident = due.incident_id;
        let mut esc: Escalation = serde_json::from_value(due.state)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        let answered = !due
            .incident_state
            .as_deref()
            .is_some_and(|s| UNANSWERED.contains(&s));
        if answered {
            esc.stop();
            report.stopped += 1;
            tx.incident_event(
                Some(incident),
                "escalation_stopped",
                &json!({ "incident_state": due.incident_state }),
            )
            .await?;
        } else if let Some(chain) = oncall.chains.get(&due.chain_id) {
            let actions = esc.fire(chain, &oncall, at);
            report.pages += record(&mut tx, &oncall, incident, &actions).await?;
        } else {
            // Unreadable chain: say so in the incident's history and try again in a minute
            // (the configuration error is logged above and shown by the lint).
            tx.incident_event(
                Some(incident),
                "escalation_unreachable",
                &json!({ "detail": format!("chain {} cannot be read", due.chain_id) }),
            )
            .await?;
            counter!(m::ESCALATIONS_UNREACHABLE).increment(1);
            esc.next_at = Some(at.saturating_add(warden_core::Micros::from_secs(60)));
        }
        let state = serde_json::to_value(&esc)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        tx.save_escalation(incident, &state, esc.due().map(odt))
            .await?;
    }
    tx.commit().await?;
    // Their first step fired in this pass (escalations start due).
    for t in crossed {
        histogram!(m::ESCALATION_FIRST_PAGE).record((now - t).as_seconds_f64().max(0.0));
    }
    Ok(report)
}

/// The database time of a core instant.
fn odt(t: warden_core::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_micros()) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Records a fire's actions: a page row per page (delivered to the console inbox, or failed
/// with the reason), and a history line for every action. Returns the pages recorded.
async fn record(
    tx: &mut warden_store::OncallTx,
    oncall: &Oncall,
    incident: i64,
    actions: &[Action],
) -> Result<u32, NotifyError> {
    let mut pages = 0;
    for action in actions {
        let detail = serde_json::to_value(action).unwrap_or_default();
        match action {
            Action::Page {
                person,
                step,
                round,
                reason,
            } => {
                let channel = oncall.channel(*person);
                let (kind, address, status, outcome) = match channel {
                    Some(c) => (c.kind.as_str(), c.address.as_str(), "delivered", None),
                    None => (
                        "none",
                        "",
                        "failed",
                        Some("no verified contact method this centre can deliver"),
                    ),
                };
                let page = NewPage {
                    incident_id: incident,
                    person_id: *person,
                    step: i32::try_from(*step).unwrap_or(i32::MAX),
                    round: i32::try_from(*round).unwrap_or(i32::MAX),
                    reason: match reason {
                        Reason::Step => "step",
                        Reason::Fallback => "fallback",
                        Reason::Reminder => "reminder",
                    },
                    channel: kind,
                    address,
                    status,
                    outcome,
                };
                let id = tx.insert_page(&page).await?;
                counter!(m::PAGES, "channel" => kind.to_owned(), "status" => status).increment(1);
                if status == "failed" {
                    warn!(
                        incident,
                        person, "page failed: no deliverable contact method"
                    );
                }
                let mut line = detail;
                line["page"] = json!(id);
                line["channel"] = json!(kind);
                line["status"] = json!(status);
                tx.incident_event(Some(incident), "escalation_page", &line)
                    .await?;
                pages += 1;
            }
            Action::Gap { .. } => {
                counter!(m::ESCALATION_GAPS).increment(1);
                warn!(incident, detail = %detail, "escalation target reached nobody; fallback paged");
                tx.incident_event(Some(incident), "escalation_gap", &detail)
                    .await?;
            }
            Action::Unreachable { .. } => {
                counter!(m::ESCALATIONS_UNREACHABLE).increment(1);
                error!(
                    incident,
                    "escalation reached nobody at all and has no fallback"
                );
                tx.incident_event(Some(incident), "escalation_unreachable", &detail)
                    .await?;
            }
            Action::Exhausted { .. } => {
                counter!(m::ESCALATIONS_EXHAUSTED).increment(1);
                tx.incident_event(Some(incident), "escalation_exhausted", &detail)
                    .await?;
            }
            Action::AckExpired { .. } => {
                tx.incident_event(Some(incident), "escalation_ack_expired", &detail)
                    .await?;
            }
            Action::Acknowledged { .. } => {
                tx.incident_event(Some(incident), "escalation_acknowledged", &detail)
                    .await?;
            }
        }
    }
    Ok(pages)
}

/// Acknowledges page `page_id` for the person linked to console user `user_id`: the
/// incident's escalation stops paging until its acknowledgement timeout. Waits for a pass
/// holding the escalation, so a page that pass is about to send is either sent before the
/// acknowledgement or never.
pub async fn acknowledge(
    store: &Store,
    page_id: i64,
    user_id: i64,
    now: OffsetDateTime,
) -> Result<(), NotifyError> {
    let person = store
        .person_of_user(user_id)
        .await?
        .ok_or(NotifyError::NotAPerson)?;
    let oncall = Oncall::from_config(store.oncall_config(now).await?);
    let mut tx = store.begin_oncall().await?;
    let (incident, _) = tx
        .page(page_id)
        .await?
        .ok_or(NotifyError::UnknownPage(page_id))?;
    if let Some(due) = tx.lock_escalation(incident).await? {
        let chain = oncall
            .chains
            .get(&due.chain_id)
            .ok_or(NotifyError::BadChain(due.chain_id))?;
        let mut esc: Escalation = serde_json::from_value(due.state)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        let actions = esc.acknowledge(chain, person, ts(now));
        record(&mut tx, &oncall, incident, &actions).await?;
        let state = serde_json::to_value(&esc)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        tx.save_escalation(incident, &state, esc.due().map(odt))
            .await?;
    }
    tx.acknowledge_pages(incident, person, now).await?;
    tx.commit().await?;
    counter!(m::PAGES_ACKNOWLEDGED).increment(1);
    Ok(())
}
