//! Escalation delivery: the shell around `warden_core::oncall`.
//!
//! ```text
//! engine ──outbox row (overflow, critical, fail_to_report, link/self-check opened)──▶
//!                                                      escalator pass ──▶ escalations
//!                                                               │  (one transaction)
//!                          due escalation rows, FOR UPDATE SKIP LOCKED, with incident state
//!                                                               ▼
//!                                              Escalation::fire ──▶ pages + incident history
//! console, signed link, SMS reply ──acknowledge_as(page)──▶ Escalation::acknowledge
//!                                        (same row lock) ──▶ pages acknowledged (who, how, when)
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
//! Channels ([`channel`]): the console inbox (the `on_call` role sees its pages and
//! acknowledges there), recorded as delivered in the pass itself; and the ones this centre
//! configured (signed [`webhook`]s, [`email`], SMS and voice through an HTTP [`gateway`]),
//! recorded as pending in the pass and delivered after it commits: leased so two processes
//! never send one page twice, retried with backoff, every attempt kept, cancelled if the
//! incident was answered meanwhile. A page goes to the person's first verified method this
//! centre can deliver; a person with none gets a page recorded as failed with the reason, and
//! the chain moves on. Out-of-hours callers' messages go out the same way.
//!
//! Beside the passes the escalator checks the on-call configuration (on every change and
//! hourly) and audits that due work ran, reporting both through [`SelfCheck`] as technical
//! incidents, and calls an optional dead-man heartbeat URL while Warden is healthy.

mod acknowledge;
pub mod channel;
mod directory;
pub mod email;
pub mod gateway;
pub mod links;
pub mod message;
pub mod reply;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
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

pub use acknowledge::{
    Acked, Reply, Via, acknowledge, acknowledge_as, acknowledge_link, acknowledge_reply,
};
pub use channel::{Channels, ChannelsConfig, WebhookConfig};
pub use directory::{Oncall, OohContact, RouteQuery};

/// How long a delivery is leased to the process sending it.
const DELIVERY_LEASE: Duration = Duration::from_mins(1);

/// How far ahead the configuration check looks.
pub const LINT_HORIZON: Duration = Duration::from_hours(14 * 24);

/// How often the configuration check runs.
const LINT_EVERY: Duration = Duration::from_hours(1);

/// The outbox kinds that start an escalation.
const STARTS: &[&str] = &["overflow", "critical", "fail_to_report", "incident_opened"];

/// The outbox kinds that start an escalation only when a route names them: a link lost or
/// a self-check failed pages the ops rota if one is routed, and is otherwise left to the
/// console (not recorded as unrouted).
const OPT_IN: &[&str] = &["incident_opened"];

/// Incident states in which an escalation keeps paging: nobody holds it yet.
const UNANSWERED: &[&str] = &["raised", "offered"];

/// Tuning of the escalator.
#[derive(Debug, Clone)]
pub struct EscalatorConfig {
    /// How often a pass runs (default 1 s): the latency from a threshold to the first page.
    pub every: Duration,
    /// Most outbox entries, due escalations and deliveries one pass takes (default 200).
    pub batch: i64,
    /// The channels besides the console; a contact method of a kind not configured is not
    /// deliverable, and the person's next verified method is used.
    pub channels: ChannelsConfig,
    /// The console's address as people outside reach it (`https://warden.centre.example`):
    /// messages carry a signed acknowledgement link under it. `None`: no links.
    pub public_url: Option<String>,
    /// Replies to SMS reach Warden (the gateway's inbound webhook points at the console), so
    /// messages may say "reply ACK".
    pub sms_replies: bool,
    /// The control room's number, for messages ("then call the control room on …").
    pub control_room: Option<String>,
    /// A URL called every minute while the escalator works (a dead-man switch for outside
    /// monitoring); `None`: off.
    pub heartbeat_url: Option<String>,
}

impl Default for EscalatorConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            batch: 200,
            channels: ChannelsConfig::default(),
            public_url: None,
            sms_replies: false,
            control_room: None,
            heartbeat_url: None,
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
    /// A channel could not be set up.
    #[error("channel set-up: {0}")]
    Client(String),
    /// An acknowledgement link that is not genuine or has expired.
    #[error(transparent)]
    Link(#[from] links::LinkError),
}

/// What a page attempt's outcome was, for the counters.
fn count_page(channel: &str, status: &'static str) {
    counter!(m::PAGES, "channel" => channel.to_owned(), "status" => status).increment(1);
}

/// Where the escalator reports faults it finds in Warden itself (its on-call configuration,
/// escalation work that did not run): each becomes a technical incident, so an operator sees
/// it and a route can page the ops rota. wardend implements it over ingest (an internal signal on the link
/// `warden:<check>`).
pub trait SelfCheck: Send + Sync + std::fmt::Debug {
    /// Records the state of `check`: `ok == false` raises (or keeps) its incident with
    /// `detail`; `ok == true` restores it.
    fn report<'a>(
        &'a self,
        check: &'a str,
        ok: bool,
        detail: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// What is wrong with the rest of Warden right now (the triage engine stalled or
    /// stopped), in words; empty when healthy. While not empty the dead-man heartbeat is
    /// withheld, so outside monitoring sees what no incident can show.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The self-check names.
pub mod checks {
    /// The configuration check found a problem.
    pub const ONCALL_CONFIG: &str = "oncall_config";
    /// An escalation step, page delivery or outbox entry is overdue.
    pub const ESCALATION_OVERDUE: &str = "escalation_overdue";
}

/// The escalator: passes over the outbox and due escalations, and deliveries after them.
#[derive(Debug, Clone)]
pub struct Escalator {
    store: Store,
    cfg: EscalatorConfig,
    channels: Channels,
}

impl Escalator {
    /// An escalator on `store`; checks the channels' configuration and builds their clients.
    pub fn new(store: Store, cfg: EscalatorConfig) -> Result<Self, NotifyError> {
        let channels = Channels::new(cfg.channels.clone())?;
        Ok(Self {
            store,
            cfg,
            channels,
        })
    }

    /// The contact-method kinds this escalator delivers.
    pub fn channels(&self) -> &[&'static str] {
        self.channels.kinds()
    }

    /// One pass at `now` (see [`pass`]).
    pub async fn pass(&self, now: OffsetDateTime) -> Result<Pass, NotifyError> {
        pass(&self.store, now, self.cfg.batch, self.channels()).await
    }

    /// Checks the rotas and chains for the next 14 days ([`LINT_HORIZON`]): findings are
    /// logged one by one and published as `warden_oncall_findings{finding}` (unreadable rows
    /// as `unreadable`). Returns them, and the unreadable rows.
    pub async fn lint(
        &self,
        now: OffsetDateTime,
    ) -> Result<(Vec<Finding>, Vec<String>), NotifyError> {
        let oncall = Oncall::from_config(self.store.oncall_config(now).await?);
        Ok(self.lint_on(&oncall, now))
    }

    /// [`Escalator::lint`] of a configuration already read.
    pub fn lint_on(&self, oncall: &Oncall, now: OffsetDateTime) -> (Vec<Finding>, Vec<String>) {
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
            warn!(finding = f.name(), detail = %f, "on-call configuration problem");
        }
        (findings, oncall.errors.clone())
    }

    /// The words of page `p` sent at `now`, with its signed link when there is a public
    /// address.
    async fn message(
        &self,
        p: &warden_store::PendingPage,
        now: OffsetDateTime,
        key: &mut Option<Vec<u8>>,
    ) -> Result<message::Message, NotifyError> {
        let link = match &self.cfg.public_url {
            Some(base) => {
                if key.is_none() {
                    *key = Some(links::key(&self.store).await?);
                }
                let k = key.as_deref().unwrap_or_default();
                let expires = now.unix_timestamp() + links::TTL_SECS;
                Some(format!(
                    "{}/ack/{}",
                    base.trim_end_matches('/'),
                    links::token(k, p.id, expires)
                ))
            }
            None => None,
        };
        Ok(message::page(
            p,
            message::Ways {
                link: link.as_deref(),
                sms_reply: self.cfg.sms_replies,
                control_room: self.cfg.control_room.as_deref(),
            },
        ))
    }

    /// Delivers the pages due at `now` through their channels; returns how many were
    /// attempted.
    pub async fn deliver(&self, now: OffsetDateTime) -> Result<u32, NotifyError> {
        // Claimed or resolved since the pass recorded them: not sent.
        for channel in self.store.cancel_answered_deliveries().await? {
            count_page(&channel, "cancelled");
        }
        let due = self
            .store
            .lease_deliveries(now, DELIVERY_LEASE, self.cfg.batch)
            .await?;
        let mut attempted = 0;
        let mut key = None;
        for p in &due {
            attempted += 1;
            let msg = self.message(p, now, &mut key).await?;
            let (status, text, next) = self
                .channels
                .send_page(p, &msg, now)
                .await
                .settle(p.attempts, now);
            if status == "failed" {
                warn!(page = p.id, incident = p.incident_id, channel = %p.channel, outcome = %text, "page could not be delivered");
            }
            if status != "pending" {
                count_page(&p.channel, status);
            }
            self.store
                .delivery_attempted(p.id, status, &text, next, now)
                .await?;
        }
        Ok(attempted)
    }

    /// Delivers the out-of-hours callers' messages due at `now` (by SMS or e-mail, retried
    /// like pages); returns how many were attempted.
    pub async fn deliver_to_callers(&self, now: OffsetDateTime) -> Result<u32, NotifyError> {
        let due = self
            .store
            .lease_caller_messages(now, DELIVERY_LEASE, self.cfg.batch)
            .await?;
        let mut attempted = 0;
        for msg in &due {
            attempted += 1;
            let words = message::Message {
                subject: format!("Your reference {}", msg.reference),
                text: msg.body.clone(),
                ack_url: None,
            };
            let to = channel::Envelope {
                channel: &msg.channel,
                address: &msg.address,
                kind: "caller",
                id: msg.id,
                reference: &msg.reference,
            };
            let (status, text, next) = self
                .channels
                .send(&to, &words)
                .await
                .settle(msg.attempts, now);
            if status == "failed" {
                warn!(reference = %msg.reference, channel = %msg.channel, outcome = %text, "caller message could not be delivered");
            }
            if status != "pending" {
                counter!(m::CALLER_MESSAGES, "channel" => msg.channel.clone(), "status" => status)
                    .increment(1);
            }
            self.store
                .caller_message_attempted(msg.id, status, &text, next, now)
                .await?;
        }
        Ok(attempted)
    }

    /// Checks that every due step ran: escalations, page deliveries and outbox entries more
    /// than [`OVERDUE_GRACE`] past due are published as `warden_escalation_overdue{what}`
    /// and returned (a healthy escalator leaves none).
    pub async fn audit(&self, now: OffsetDateTime) -> Result<Overdue, NotifyError> {
        let counts = self
            .store
            .overdue_escalation_work(now - OVERDUE_GRACE)
            .await?;
        let o = Overdue {
            escalations: counts.0,
            deliveries: counts.1,
            outbox: counts.2,
        };
        for (what, n) in [
            ("escalations", o.escalations),
            ("deliveries", o.deliveries),
            ("outbox", o.outbox),
        ] {
            #[allow(clippy::cast_precision_loss)] // small counts
            gauge!(m::ESCALATION_OVERDUE, "what" => what).set(n as f64);
        }
        Ok(o)
    }

    /// Calls the heartbeat URL once; true when it answered 2xx.
    pub async fn heartbeat(&self, url: &str) -> bool {
        let ok = matches!(
            channel::classify(
                self.channels
                    .http()
                    .get(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await,
                "the heartbeat monitor"
            ),
            channel::Attempt::Delivered(_)
        );
        counter!(m::HEARTBEATS, "outcome" => if ok { "ok" } else { "failed" }).increment(1);
        ok
    }
}

/// How far past due escalation work may be before the auditor calls it overdue.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(30);

/// Escalation work past due by more than [`OVERDUE_GRACE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overdue {
    pub escalations: i64,
    pub deliveries: i64,
    pub outbox: i64,
}

impl Overdue {
    fn is_clear(self) -> bool {
        self == Overdue::default()
    }
}

/// Reports `check` to `checks` when its state changed since the last report (always the
/// first time, so a restart closes or confirms what an earlier process raised).
async fn report(
    checks: Option<&dyn SelfCheck>,
    last: &mut std::collections::HashMap<&'static str, bool>,
    check: &'static str,
    ok: bool,
    detail: String,
) {
    if last.get(check) == Some(&ok) {
        return;
    }
    if let Some(c) = checks {
        c.report(check, ok, detail).await;
    }
    last.insert(check, ok);
}

/// Runs passes and deliveries every `every` until `shutdown`, checks the on-call
/// configuration when it changes and hourly, audits that due work ran, and calls the
/// heartbeat URL every minute after a pass that worked. A failed pass is logged and counted;
/// the next one retries (nothing of a failed pass was committed). Findings and overdue work
/// are reported to `checks` as technical incidents.
pub async fn run(esc: Escalator, checks: Option<Arc<dyn SelfCheck>>, shutdown: CancellationToken) {
    info!(
        every_ms = esc.cfg.every.as_millis(),
        channels = ?esc.channels(),
        links = esc.cfg.public_url.is_some(),
        heartbeat = esc.cfg.heartbeat_url.is_some(),
        "escalator started"
    );
    let checks = checks.as_deref();
    let mut ticker = tokio::time::interval(esc.cfg.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_lint = tokio::time::Instant::now();
    let mut next_audit = tokio::time::Instant::now();
    let mut next_heartbeat = tokio::time::Instant::now();
    let mut linted: Option<warden_store::OncallConfig> = None;
    let mut reported = std::collections::HashMap::new();
    loop {
        tokio::select! {
            // Cancel-safe: a pass in progress is not interrupted (it is not in this select).
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = OffsetDateTime::now_utc();
        let config = match esc.store.oncall_config(now).await {
            Ok(c) => c,
            Err(e) => {
                counter!(m::ESCALATOR_FAILURES).increment(1);
                warn!(error = %e, "on-call configuration unreadable; retrying at the next tick");
                continue;
            }
        };
        let oncall = Oncall::from_config(config.clone());
        // On every change of the configuration (a save in the console), and hourly.
        if linted.as_ref() != Some(&config) || tokio::time::Instant::now() >= next_lint {
            next_lint = tokio::time::Instant::now() + LINT_EVERY;
            let (findings, unreadable) = esc.lint_on(&oncall, now);
            let ok = findings.is_empty() && unreadable.is_empty();
            let detail = findings
                .iter()
                .map(Finding::to_string)
                .chain(unreadable)
                .collect::<Vec<_>>()
                .join("; ");
            report(checks, &mut reported, checks::ONCALL_CONFIG, ok, detail).await;
            linted = Some(config);
        }
        let passed = match pass_on(&esc.store, &oncall, now, esc.cfg.batch, esc.channels()).await {
            Ok(_) => true,
            Err(e) => {
                counter!(m::ESCALATOR_FAILURES).increment(1);
                warn!(error = %e, "escalation pass failed; retrying at the next tick");
                false
            }
        };
        if let Err(e) = esc.deliver(OffsetDateTime::now_utc()).await {
            counter!(m::ESCALATOR_FAILURES).increment(1);
            warn!(error = %e, "page delivery failed; retrying at the next tick");
        }
        if let Err(e) = esc.deliver_to_callers(OffsetDateTime::now_utc()).await {
            counter!(m::ESCALATOR_FAILURES).increment(1);
            warn!(error = %e, "caller message delivery failed; retrying at the next tick");
        }
        if tokio::time::Instant::now() >= next_audit {
            next_audit = tokio::time::Instant::now() + AUDIT_EVERY;
            match esc.audit(OffsetDateTime::now_utc()).await {
                Ok(o) => {
                    if !o.is_clear() {
                        error!(?o, "escalation work is overdue: due steps did not run");
                    }
                    let detail = format!(
                        "{} escalation steps, {} page deliveries and {} threshold events are \
                         more than {} s past due",
                        o.escalations,
                        o.deliveries,
                        o.outbox,
                        OVERDUE_GRACE.as_secs()
                    );
                    report(
                        checks,
                        &mut reported,
                        checks::ESCALATION_OVERDUE,
                        o.is_clear(),
                        detail,
                    )
                    .await;
                }
                Err(e) => warn!(error = %e, "escalation audit failed; retrying"),
            }
        }
        if let Some(url) = &esc.cfg.heartbeat_url
            && tokio::time::Instant::now() >= next_heartbeat
        {
            next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_EVERY;
            let problems = checks.map(SelfCheck::problems).unwrap_or_default();
            if !passed || !problems.is_empty() {
                // Withheld: the outside monitor raises the alarm no incident can.
                counter!(m::HEARTBEATS, "outcome" => "withheld").increment(1);
                warn!(
                    ?problems,
                    passed, "dead-man heartbeat withheld: Warden is not healthy"
                );
            } else if !esc.heartbeat(url).await {
                warn!("the heartbeat monitor did not answer 2xx");
            }
        }
    }
    info!("escalator stopped");
}

/// How often the auditor looks for overdue work.
const AUDIT_EVERY: Duration = Duration::from_secs(15);

/// How often the dead-man heartbeat is called.
const HEARTBEAT_EVERY: Duration = Duration::from_mins(1);

/// Spawns [`run`] with its span.
pub fn spawn(
    store: Store,
    cfg: EscalatorConfig,
    checks: Option<Arc<dyn SelfCheck>>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, NotifyError> {
    let esc = Escalator::new(store, cfg)?;
    Ok(tokio::spawn(
        run(esc, checks, shutdown).instrument(info_span!("escalator")),
    ))
}

/// One pass at `now` (reading the configuration first): see [`pass_on`].
pub async fn pass(
    store: &Store,
    now: OffsetDateTime,
    batch: i64,
    channels: &[&str],
) -> Result<Pass, NotifyError> {
    let oncall = Oncall::from_config(store.oncall_config(now).await?);
    pass_on(store, &oncall, now, batch, channels).await
}

/// One pass at `now` with the configuration `oncall`: start escalations for new outbox
/// entries, fire the due ones, and record their pages for the first of each person's
/// verified methods among `channels`.
pub async fn pass_on(
    store: &Store,
    oncall: &Oncall,
    now: OffsetDateTime,
    batch: i64,
    channels: &[&str],
) -> Result<Pass, NotifyError> {
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
        let Some(chain_id) = oncall.route(&RouteQuery {
            priority: entry.priority.as_deref(),
            kind: entry.incident_kind.as_deref(),
            area: entry.area.as_deref(),
            client: entry.client_id,
            ooh_category: None,
        }) else {
            if OPT_IN.contains(&entry.kind.as_str()) {
                continue;
            }
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
            let actions = esc.fire(chain, oncall, at);
            report.pages +=
                record(&mut tx, oncall, channels, incident, &actions, now, None).await?;
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
pub(crate) async fn record(
    tx: &mut warden_store::OncallTx,
    oncall: &Oncall,
    channels: &[&str],
    incident: i64,
    actions: &[Action],
    now: OffsetDateTime,
    via: Option<Via>,
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
                let mut line = detail;
                line["via"] = json!(via.map(Via::as_str));
                tx.incident_event(Some(incident), "escalation_acknowledged", &line)
                    .await?;
            }
        }
    }
    Ok(pages)
}
