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
//! Channels: the console inbox (the `on_call` role sees its pages and acknowledges there),
//! recorded as delivered in the pass itself; and, when a webhook secret is configured, signed
//! webhooks ([`webhook`]), recorded as pending in the pass and delivered after it commits
//! (retried with backoff, leased so two processes never send one page twice). A page goes to
//! the person's first verified method this centre can deliver; a person with none gets a
//! page recorded as failed with the reason, and the chain moves on.

mod directory;
pub mod webhook;

use std::collections::BTreeSet;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, info_span, warn};
use warden_core::Timestamp;
use warden_core::oncall::{Action, Escalation, Finding, PersonId, Reason, lint};
use warden_store::{NewPage, Store, StoreError};
use warden_telemetry as m;

pub use directory::Oncall;

/// How long a delivery is leased to the process sending it.
const DELIVERY_LEASE: Duration = Duration::from_mins(1);

/// How far ahead the configuration check looks.
pub const LINT_HORIZON: Duration = Duration::from_hours(14 * 24);

/// How often the configuration check runs.
const LINT_EVERY: Duration = Duration::from_hours(1);

/// The outbox kinds that start an escalation.
const STARTS: &[&str] = &["overflow", "critical", "fail_to_report"];

/// Incident states in which an escalation keeps paging: nobody holds it yet.
const UNANSWERED: &[&str] = &["raised", "offered"];

/// Tuning of the escalator.
#[derive(Debug, Clone)]
pub struct EscalatorConfig {
    /// How often a pass runs (default 1 s): the latency from a threshold to the first page.
    pub every: Duration,
    /// Most outbox entries, due escalations and deliveries one pass takes (default 200).
    pub batch: i64,
    /// The webhook channel; `None` leaves it off (webhook contact methods are then not
    /// deliverable, and the next verified method is used).
    pub webhook: Option<WebhookConfig>,
}

impl Default for EscalatorConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            batch: 200,
            webhook: None,
        }
    }
}

/// Signed webhooks.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The HMAC-SHA256 key receivers verify `X-Warden-Signature` with.
    pub secret: Vec<u8>,
    /// Limit on one request (default 5 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
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
    /// The HTTP client for webhooks could not be set up.
    #[error("webhook client: {0}")]
    Client(String),
}

/// What a page attempt's outcome was, for the counters.
fn count_page(channel: &str, status: &'static str) {
    counter!(m::PAGES, "channel" => channel.to_owned(), "status" => status).increment(1);
}

/// The escalator: passes over the outbox and due escalations, and deliveries after them.
#[derive(Debug, Clone)]
pub struct Escalator {
    store: Store,
    cfg: EscalatorConfig,
    client: Option<reqwest::Client>,
}

impl Escalator {
    /// An escalator on `store`; builds the webhook client when webhooks are configured.
    pub fn new(store: Store, cfg: EscalatorConfig) -> Result<Self, NotifyError> {
        let client = if cfg.webhook.is_some() {
            // The workspace's one TLS provider; a second install is refused, harmlessly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                reqwest::Client::builder()
                    .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| NotifyError::Client(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Self { store, cfg, client })
    }

    /// The contact-method kinds this escalator delivers.
    pub fn channels(&self) -> &'static [&'static str] {
        if self.client.is_some() {
            &["console", "webhook"]
        } else {
            &["console"]
        }
    }

    /// One pass at `now` (see [`pass`]).
    pub async fn pass(&self, now: OffsetDateTime) -> Result<Pass, NotifyError> {
        pass(&self.store, now, self.cfg.batch, self.channels()).await
    }

    /// Checks the rotas and chains for the next 14 days ([`LINT_HORIZON`]): findings are
    /// logged one by one and published as `warden_oncall_findings{finding}` (unreadable rows
    /// as `unreadable`). Returns them.
    pub async fn lint(&self, now: OffsetDateTime) -> Result<Vec<Finding>, NotifyError> {
        let oncall = Oncall::from_config(self.store.oncall_config(now).await?);
        let channels = self.channels();
        let reachable: BTreeSet<PersonId> = oncall
            .contacts
            .keys()
            .copied()
            .filter(|p| oncall.channel(*p, channels).is_some())
            .collect();
        let setup = lint::Setup {
            rotas: &oncall.rotas,
            chains: &oncall.chains,
            teams: &oncall.teams,
            reachable: &reachable,
        };
        let at = Timestamp::from(now);
        let horizon = at.saturating_add(warden_core::Micros::from_secs(
            i64::try_from(LINT_HORIZON.as_secs()).unwrap_or(i64::MAX),
        ));
        let findings = lint::check(&setup, at, horizon);
        for name in Finding::NAMES {
            let n = findings.iter().filter(|f| f.name() == *name).count();
            #[allow(clippy::cast_precision_loss)] // small counts
            gauge!(m::ONCALL_FINDINGS, "finding" => *name).set(n as f64);
        }
        #[allow(clippy::cast_precision_loss)]
        gauge!(m::ONCALL_FINDINGS, "finding" => "unreadable").set(oncall.errors.len() as f64);
        for f in &findings {
            warn!(finding = f.name(), detail = ?f, "on-call configuration problem");
        }
        Ok(findings)
    }

    /// Delivers the pages due at `now` through their channels; returns how many were
    /// attempted.
    pub async fn deliver(&self, now: OffsetDateTime) -> Result<u32, NotifyError> {
        let due = self
            .store
            .lease_deliveries(now, DELIVERY_LEASE, self.cfg.batch)
            .await?;
        let mut attempted = 0;
        for p in &due {
            attempted += 1;
            let outcome = match (p.channel.as_str(), &self.client, &self.cfg.webhook) {
                ("webhook", Some(client), Some(w)) => {
                    webhook::post(client, &w.secret, w.timeout, p, now).await
                }
                (other, _, _) => webhook::Attempt::Permanent(format!(
                    "channel {other} is not configured on this centre"
                )),
            };
            let (status, text, next) = match outcome {
                webhook::Attempt::Delivered(code) => {
                    ("delivered", format!("receiver answered {code}"), None)
                }
                webhook::Attempt::Temporary(why) if p.attempts + 1 < webhook::MAX_ATTEMPTS => {
                    let next = now + webhook::backoff(p.attempts);
                    ("pending", why, Some(next))
                }
                webhook::Attempt::Temporary(why) => (
                    "failed",
                    format!("gave up after {} attempts: {why}", webhook::MAX_ATTEMPTS),
                    None,
                ),
                webhook::Attempt::Permanent(why) => ("failed", why, None),
            };
            if status == "failed" {
                warn!(page = p.id, incident = p.incident_id, outcome = %text, "page could not be delivered");
            }
            if status != "pending" {
                count_page(&p.channel, status);
            }
            self.store
                .delivery_attempted(p.id, status, Some(&text), next)
                .await?;
        }
        Ok(attempted)
    }
}

/// Runs passes and deliveries every `every` until `shutdown`. A failed pass is logged and
/// counted; the next one retries (nothing of a failed pass was committed).
pub async fn run(esc: Escalator, shutdown: CancellationToken) {
    info!(
        every_ms = esc.cfg.every.as_millis(),
        channels = ?esc.channels(),
        "escalator started"
    );
    let mut ticker = tokio::time::interval(esc.cfg.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_lint = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // Cancel-safe: a pass in progress is not interrupted (it is not in this select).
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if tokio::time::Instant::now() >= next_lint {
            next_lint = tokio::time::Instant::now() + LINT_EVERY;
            if let Err(e) = esc.lint(OffsetDateTime::now_utc()).await {
                warn!(error = %e, "on-call configuration check failed; retrying in an hour");
            }
        }
        if let Err(e) = esc.pass(OffsetDateTime::now_utc()).await {
            counter!(m::ESCALATOR_FAILURES).increment(1);
            warn!(error = %e, "escalation pass failed; retrying at the next tick");
        }
        if let Err(e) = esc.deliver(OffsetDateTime::now_utc()).await {
            counter!(m::ESCALATOR_FAILURES).increment(1);
            warn!(error = %e, "page delivery failed; retrying at the next tick");
        }
    }
    info!("escalator stopped");
}

/// Spawns [`run`] with its span.
pub fn spawn(
    store: Store,
    cfg: EscalatorConfig,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, NotifyError> {
    let esc = Escalator::new(store, cfg)?;
    Ok(tokio::spawn(
        run(esc, shutdown).instrument(info_span!("escalator")),
    ))
}

/// One pass at `now`: start escalations for new outbox entries, fire the due ones, and record
/// their pages for the first of each person's verified methods among `channels`.
pub async fn pass(
    store: &Store,
    now: OffsetDateTime,
    batch: i64,
    channels: &[&str],
) -> Result<Pass, NotifyError> {
    let oncall = Oncall::from_config(store.oncall_config(now).await?);
    for e in &oncall.errors {
        error!(problem = %e, "on-call configuration unreadable");
    }
    let at = Timestamp::from(now);
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
        let mut esc: Escalation = match serde_json::from_value(due.state.clone()) {
            Ok(esc) => esc,
            Err(e) => {
                // One unreadable row must not stall every other escalation: say so in the
                // incident's history, count it, and take it out of the due list.
                error!(incident, error = %e, "escalation state unreadable; it will not page");
                counter!(m::ESCALATIONS_UNREACHABLE).increment(1);
                tx.incident_event(
                    Some(incident),
                    "escalation_unreachable",
                    &json!({ "detail": format!("escalation state unreadable: {e}") }),
                )
                .await?;
                tx.save_escalation(incident, &due.state, None).await?;
                continue;
            }
        };
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
            report.pages += record(&mut tx, &oncall, channels, incident, &actions, now).await?;
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
        tx.save_escalation(incident, &state, esc.due().map(Timestamp::to_offset))
            .await?;
    }
    tx.commit().await?;
    // Their first step fired in this pass (escalations start due).
    for t in crossed {
        histogram!(m::ESCALATION_FIRST_PAGE).record((now - t).as_seconds_f64().max(0.0));
    }
    Ok(report)
}

/// Records a fire's actions: a page row per page (delivered to the console inbox, pending for
/// a channel that sends after the commit, or failed with the reason), and a history line for
/// every action. Returns the pages recorded.
async fn record(
    tx: &mut warden_store::OncallTx,
    oncall: &Oncall,
    channels: &[&str],
    incident: i64,
    actions: &[Action],
    now: OffsetDateTime,
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
                let channel = oncall.channel(*person, channels);
                let (kind, address, status, outcome) = match channel {
                    // The console inbox is the page row itself; other channels send it
                    // after the pass commits.
                    Some(c) if c.kind == "console" => {
                        (c.kind.as_str(), c.address.as_str(), "delivered", None)
                    }
                    Some(c) => (c.kind.as_str(), c.address.as_str(), "pending", None),
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
                    due_at: now,
                };
                let id = tx.insert_page(&page).await?;
                if status != "pending" {
                    count_page(kind, status);
                }
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
    let (incident, paged, sent_at) = tx
        .page(page_id)
        .await?
        .ok_or(NotifyError::UnknownPage(page_id))?;
    if paged != person {
        return Err(NotifyError::NotYours(page_id));
    }
    if let Some(due) = tx.lock_escalation(incident).await? {
        let chain = oncall
            .chains
            .get(&due.chain_id)
            .ok_or(NotifyError::BadChain(due.chain_id))?;
        let mut esc: Escalation = serde_json::from_value(due.state)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        let actions = esc.acknowledge(chain, person, Timestamp::from(now));
        record(&mut tx, &oncall, &[], incident, &actions, now).await?;
        let state = serde_json::to_value(&esc)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        tx.save_escalation(incident, &state, esc.due().map(Timestamp::to_offset))
            .await?;
    }
    tx.acknowledge_pages(incident, person, now).await?;
    tx.commit().await?;
    counter!(m::PAGES_ACKNOWLEDGED).increment(1);
    histogram!(m::PAGE_TO_ACK).record((now - sent_at).as_seconds_f64().max(0.0));
    Ok(())
}
