//! `wardend run`: wiring of store, writer, ingest adapters and the admin listener, and an
//! orderly shutdown: stop the sources, let the writer drain and commit, then exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_ingest::{DeviceCache, Ingest, supervise};
use warden_store::{Store, WriterConfig};

use crate::config::Config;
use crate::embedded_pg::EmbeddedPostgres;

/// Where a running daemon can be reached, for `demo` to print and tests to use.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub admin: SocketAddr,
    /// The console's address, when enabled.
    pub console: Option<SocketAddr>,
    /// The DC-09 receiver's TCP and UDP addresses, when configured.
    pub dc09_tcp: Option<SocketAddr>,
    pub dc09_udp: Option<SocketAddr>,
    /// The SCAIP receiver's UDP and TCP addresses, when configured.
    pub scaip_udp: Option<SocketAddr>,
    pub scaip_tcp: Option<SocketAddr>,
}

/// The addresses the IP receivers listen on (the actual ports when configured as 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Receivers {
    pub dc09_tcp: Option<SocketAddr>,
    pub dc09_udp: Option<SocketAddr>,
    pub scaip_udp: Option<SocketAddr>,
    pub scaip_tcp: Option<SocketAddr>,
}

/// The database the configuration names, or a private cluster started for it.
pub struct Database {
    /// What the daemon connects with (with the private cluster: its runtime role).
    pub url: String,
    /// With `url`: the schema owner's URL (`database.migrate_url`).
    migrate_url: Option<String>,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// The configured database, or the private cluster, started, secured and (with
    /// `auto_migrate`) migrated by its owner role.
    pub async fn open(cfg: &Config) -> anyhow::Result<Self> {
        if let Some(url) = cfg.database.effective_url() {
            return Ok(Self {
                url,
                migrate_url: cfg.database.effective_migrate_url(),
                embedded: None,
            });
        }
        let pg = EmbeddedPostgres::start(&cfg.data_dir)?;
        let db = Self {
            url: pg.url(),
            migrate_url: None,
            embedded: Some(pg),
        };
        if let Err(e) = db.prepare(cfg.database.auto_migrate).await {
            db.stop();
            return Err(e);
        }
        Ok(db)
    }

    async fn prepare(&self, migrate: bool) -> anyhow::Result<()> {
        if let Some(pg) = &self.embedded {
            pg.secure().await?;
            if migrate {
                self.migrate().await?;
            }
        }
        Ok(())
    }

    /// Applies the migrations: with the private cluster as its owner role (then the runtime
    /// role is granted what they created), else with the configured URL.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        if self.embedded.is_none()
            && let Some(owner) = &self.migrate_url
        {
            let runtime = Store::connect(&self.url, 1)
                .await
                .context("connecting to postgres")?;
            let done = as_owner(owner, &runtime, true).await;
            runtime.pool().close().await;
            return done;
        }
        let url = self
            .embedded
            .as_ref()
            .map_or_else(|| self.url.clone(), EmbeddedPostgres::owner_url);
        let store = Store::connect(&url, 1)
            .await
            .context("connecting to postgres to migrate")?;
        store.migrate().await.context("applying migrations")?;
        if self.embedded.is_some() {
            grant_runtime(&store, crate::embedded_pg::RUNTIME_ROLE).await?;
        }
        store.pool().close().await;
        Ok(())
    }

    pub fn stop(&self) {
        if let Some(pg) = &self.embedded
            && let Err(e) = pg.stop()
        {
            tracing::error!(error = %e, "could not stop the private postgres");
        }
    }
}

pub async fn connect(cfg: &Config, url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(url, cfg.database.max_connections)
        .await
        .context("connecting to postgres")?;
    // The private cluster was migrated by its owner role when it was opened.
    if cfg.database.url.is_some() {
        if let Some(owner) = cfg.database.effective_migrate_url() {
            as_owner(&owner, &store, cfg.database.auto_migrate).await?;
        } else if cfg.database.auto_migrate {
            store.migrate().await.context("applying migrations")?;
        }
    }
    Ok(store)
}

/// With `database.migrate_url`: connects as the schema's owner, applies the migrations when
/// `migrate`, and grants `runtime`'s role what the daemon needs ([`embedded_pg::grants`]),
/// at every start, so a schema migrated by hand gets its grants too.
///
/// [`embedded_pg::grants`]: crate::embedded_pg::grants
async fn as_owner(owner_url: &str, runtime: &Store, migrate: bool) -> anyhow::Result<()> {
    let owner = Store::connect(owner_url, 1)
        .await
        .context("connecting to postgres as the schema's owner (database.migrate_url)")?;
    let result = async {
        if migrate {
            owner.migrate().await.context("applying migrations")?;
        }
        let who = |store: &Store| {
            let pool = store.pool().clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT current_user::text")
                    .fetch_one(&pool)
                    .await
            }
        };
        let role = who(runtime).await.context("reading the runtime role")?;
        anyhow::ensure!(
            role.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "database.url's role {role:?}: use letters, digits, _ and - only (its name is written into GRANT statements)"
        );
        if role == who(&owner).await.context("reading the owner role")? {
            tracing::warn!(%role, "database.migrate_url names the same role as database.url: it owns the tables and could switch off the append-only triggers");
            return Ok(());
        }
        grant_runtime(&owner, &crate::embedded_pg::quote_ident(&role)).await
    }
    .await;
    owner.pool().close().await;
    result
}

/// Runs [`embedded_pg::grants`](crate::embedded_pg::grants) for `role` (an SQL identifier).
async fn grant_runtime(owner: &Store, role: &str) -> anyhow::Result<()> {
    for g in crate::embedded_pg::grants(role) {
        sqlx::query(sqlx::AssertSqlSafe(g))
            .execute(owner.pool())
            .await
            .context("granting the runtime role")?;
    }
    Ok(())
}

/// Warden's self-checks (on-call configuration, overdue escalation work) become internal
/// signals, triaged like every other: a technical incident on `warden:<check>`.
#[derive(Debug)]
struct SelfChecks(Ingest, warden_engine::EngineHandle);

impl warden_notify::SelfCheck for SelfChecks {
    fn report<'a>(
        &'a self,
        check: &'a str,
        ok: bool,
        detail: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.0.self_check(check, ok, &detail).await })
    }

    fn problems(&self) -> Vec<String> {
        self.1.health().problems()
    }
}

/// Starts the group-commit writer as configured, with the local spool when it is enabled
/// (opened and read back here).
pub fn spawn_writer(
    cfg: &Config,
    store: &Store,
    stop: &CancellationToken,
) -> anyhow::Result<(
    warden_store::WriterHandle,
    tokio::task::JoinHandle<warden_store::WriterReport>,
)> {
    let spool = if cfg.spool.enabled {
        let dir = cfg.spool.dir(&cfg.data_dir);
        let opened = warden_store::Spool::open(&dir, cfg.spool.max_bytes)
            .with_context(|| format!("opening the spool in {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), records = opened.depth().records, max_bytes = cfg.spool.max_bytes, "local spool ready");
        Some(warden_store::SpoolSettings {
            after: cfg.spool.after,
            probe_every: cfg.spool.probe_every,
            ..warden_store::SpoolSettings::new(opened)
        })
    } else {
        tracing::warn!("spool disabled: while postgres is unavailable no signal is acknowledged");
        None
    };
    Ok(warden_store::spawn_writer_spooled(
        store.clone(),
        WriterConfig {
            max_batch: cfg.writer.max_batch,
            max_wait: cfg.writer.max_wait,
            queue_capacity: cfg.writer.queue_capacity,
            dedupe_window: cfg.writer.dedupe_window,
            ..WriterConfig::default()
        },
        spool,
        stop.clone(),
    ))
}

/// Raises and restores the `warden:database` self-check as the writer enters and leaves
/// degraded mode.
async fn database_check(
    mut degraded: tokio::sync::watch::Receiver<warden_store::DegradedState>,
    ingest: Ingest,
) {
    let mut was = degraded.borrow().since;
    if let Some(since) = was {
        ingest
            .self_check("database", false, &outage_detail(since))
            .await;
    }
    while degraded.changed().await.is_ok() {
        let (now, drained) = {
            let d = degraded.borrow();
            (d.since, d.drained)
        };
        match (was, now) {
            (None, Some(since)) => {
                ingest
                    .self_check("database", false, &outage_detail(since))
                    .await;
            }
            (Some(since), None) => {
                let detail = format!(
                    "database available again after an outage from {since}; {drained} spooled records drained since start"
                );
                ingest.self_check("database", true, &detail).await;
            }
            _ => {}
        }
        was = now;
    }
}

fn outage_detail(since: time::OffsetDateTime) -> String {
    format!(
        "database unavailable since {since}: signals are acknowledged from the local spool and triaged from memory until it returns"
    )
}

/// Runs the daemon until `shutdown` fires. `on_ready` is called once everything listens.
pub async fn run(
    cfg: Config,
    database_url: String,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Endpoints),
) -> anyhow::Result<()> {
    warden_telemetry::register_zero(warden_telemetry::INGEST_ZERO);
    crate::encryption::install(&cfg)?;
    let store = match connect(&cfg, &database_url).await {
        Ok(store) => store,
        // A start in the middle of an outage (a crash, a reboot): acknowledge from the
        // spool until the database answers, then start as usual.
        Err(e) if cfg.spool.enabled => {
            tracing::error!(error = %format!("{e:#}"), "database unavailable at start: signals are acknowledged from the local spool until it answers");
            match crate::standby::until_database(&cfg, &database_url, &metrics, &shutdown).await? {
                Some(store) => store,
                None => return Ok(()),
            }
        }
        Err(e) => return Err(e),
    };
    let devices = DeviceCache::load(store.clone())
        .await
        .context("loading devices")?;
    devices.keep_snapshot(crate::standby::snapshot_path(&cfg));
    tracing::info!(devices = devices.len(), "device cache loaded");

    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = spawn_writer(&cfg, &store, &writer_stop)?;
    let degraded = writer.watch_degraded();
    devices.follow_degraded(degraded.clone());
    let engine_stop = CancellationToken::new();
    // The engine follows the writer's degraded mode: triage from memory while it spools.
    let (engine, engine_task) = warden_engine::spawn_watching(
        store.clone(),
        warden_engine::EngineConfig {
            core: cfg.triage.clone(),
            journal: cfg
                .spool
                .enabled
                .then(|| cfg.spool.dir(&cfg.data_dir).join("commands.journal")),
            ..warden_engine::EngineConfig::default()
        },
        Some(degraded.clone()),
        engine_stop.clone(),
    )
    .await
    .context("rebuilding triage state")?;
    let console_stop = CancellationToken::new();
    let console = if cfg.console.enabled {
        // Checked with the configuration; again here, as an error once the console's task
        // runs would not stop the start.
        if let Some(files) = cfg.console.tls_files() {
            warden_console::tls::load(&files).context("loading the console's certificate")?;
        }
        let listener = tokio::net::TcpListener::bind(cfg.console.listen)
            .await
            .with_context(|| format!("binding the console to {}", cfg.console.listen))?;
        let addr = listener.local_addr()?;
        let c = warden_console::Console::new(
            store.clone(),
            engine.clone(),
            warden_console::ConsoleConfig {
                sms_reply_token: cfg
                    .escalation
                    .sms_reply_token()
                    .map(warden_console::SharedToken),
                degraded: Some(degraded.clone()),
                audit_journal: cfg
                    .spool
                    .enabled
                    .then(|| cfg.spool.dir(&cfg.data_dir).join("audit.journal")),
                ..cfg.console.to_console()
            },
            console_stop.clone(),
        );
        let task = tokio::spawn(
            logged(
                "console",
                warden_console::serve(listener, c, console_stop.clone()),
            )
            .instrument(tracing::info_span!("console")),
        );
        Some((addr, task))
    } else {
        None
    };
    let engine_health = engine.clone();

    let ingest = Ingest::new(writer, devices, store.clone(), Some(engine));
    // The outage itself is an incident: raised (from memory, on every console) when the
    // writer goes degraded, restored when the spool has drained; committed with the rest
    // after the drain, so a route naming `self_check` pages the ops rota then.
    tokio::spawn(database_check(degraded.clone(), ingest.clone()));
    // Unanswered incidents climb their escalation chains (outbox → pages); a pass in
    // progress when it stops is either committed or rolled back whole.
    let escalator_stop = CancellationToken::new();
    let escalator = warden_notify::spawn(
        store.clone(),
        cfg.escalation.to_escalator(),
        Some(Arc::new(SelfChecks(ingest.clone(), engine_health.clone()))),
        escalator_stop.clone(),
    )
    .context("starting the escalator")?;

    let sources = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let (links, receivers) = spawn_sources(&cfg, &ingest, &sources, &mut tasks).await?;

    let admin_stop = CancellationToken::new();
    let (admin_addr, admin) = crate::admin::bind(
        &cfg.admin,
        store.clone(),
        metrics,
        links,
        engine_health,
        degraded.clone(),
        admin_stop.clone(),
    )
    .await?;
    let admin_task = tokio::spawn(logged("admin", admin).instrument(tracing::info_span!("admin")));
    let console_addr = console.as_ref().map(|(a, _)| *a);
    let endpoints = Endpoints {
        admin: admin_addr,
        console: console_addr,
        dc09_tcp: receivers.dc09_tcp,
        dc09_udp: receivers.dc09_udp,
        scaip_udp: receivers.scaip_udp,
        scaip_tcp: receivers.scaip_tcp,
    };
    tracing::info!(admin = %endpoints.admin, console = ?endpoints.console, dc09_tcp = ?endpoints.dc09_tcp, dc09_udp = ?endpoints.dc09_udp, scaip_udp = ?endpoints.scaip_udp, scaip_tcp = ?endpoints.scaip_tcp, "wardend ready");
    on_ready(endpoints);

    shutdown.cancelled().await;
    tracing::info!("shutting down: stopping sources");
    // Sources stop first; each answers what it already has before returning.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            "sources did not stop within 10s; aborting them (unacknowledged input will be resent)"
        );
        tasks.abort_all();
    }
    drop(ingest);
    writer_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), writer_task).await {
        Ok(Ok(report)) => tracing::info!(?report, "writer drained"),
        Ok(Err(e)) => tracing::error!(error = %e, "writer task failed"),
        Err(_) => tracing::error!("writer did not drain within 10s"),
    }
    escalator_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), escalator)
        .await
        .is_err()
    {
        tracing::error!("escalator did not stop within 10s");
    }
    // The engine stops last; whatever was committed but not yet triaged is replayed from
    // the database on the next start.
    engine_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), engine_task).await {
        Ok(Ok(report)) => tracing::info!(?report, "triage engine stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "triage engine task failed"),
        Err(_) => tracing::error!("triage engine did not stop within 10s"),
    }
    // Consoles go when the engine has stopped: until then they could still act.
    console_stop.cancel();
    if let Some((_, task)) = console {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    tracing::info!(clean = drained, "wardend stopped");
    Ok(())
}

/// Runs a listener, logging why it stopped if it failed (its certificate no longer loads).
async fn logged(listener: &'static str, serve: impl Future<Output = std::io::Result<()>>) {
    if let Err(e) = serve.await {
        tracing::error!(listener, error = %e, "listener stopped");
    }
}

/// Starts every configured source (serial ports, MQTT, the DC-09 and SCAIP receivers) and
/// the device cache's follower in `tasks`, stopped by `sources`; the link ids for readiness
/// and the receivers' addresses.
pub async fn spawn_sources(
    cfg: &Config,
    ingest: &Ingest,
    sources: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<(Vec<String>, Receivers)> {
    let mut links = Vec::new();
    // Each link task runs under a supervisor that records and restarts a failed task.
    for s in cfg.serial.clone() {
        links.push(s.link_id());
        warden_telemetry::register_link_zero(&s.link_id());
        let span = tracing::info_span!("serial", link = %s.link_id());
        let (ingest2, stop) = (ingest.clone(), sources.clone());
        tasks.spawn(
            supervise(s.link_id(), ingest.clone(), sources.clone(), move || {
                warden_ingest::serial::run(s.clone(), ingest2.clone(), stop.clone())
            })
            .instrument(span),
        );
    }
    if let Some(mut m) = cfg.mqtt.clone() {
        if m.client_id.is_empty() {
            m.client_id =
                warden_ingest::mqtt::persisted_client_id(&cfg.data_dir).with_context(|| {
                    format!(
                        "keeping the generated mqtt client id in {}",
                        cfg.data_dir.display()
                    )
                })?;
        }
        tracing::info!(client_id = %m.client_id, user = ?m.username, tls = m.tls_ca_file.is_some(), "mqtt ingest configured");
        links.push(m.link_id());
        warden_telemetry::register_link_zero(&m.link_id());
        let span = tracing::info_span!("mqtt", link = %m.link_id());
        let (ingest2, stop) = (ingest.clone(), sources.clone());
        tasks.spawn(
            supervise(m.link_id(), ingest.clone(), sources.clone(), move || {
                warden_ingest::mqtt::run(m.clone(), ingest2.clone(), stop.clone())
            })
            .instrument(span),
        );
    }
    let mut receivers = Receivers::default();
    if let Some(d) = cfg.dc09.clone() {
        let listeners = warden_ingest::dc09::Listeners::bind(d.tcp, d.udp)
            .await
            .context("binding the DC-09 receiver (dc09.tcp / dc09.udp)")?;
        (receivers.dc09_tcp, receivers.dc09_udp) = listeners.addresses();
        tasks.spawn(warden_ingest::dc09::run(
            d,
            listeners,
            ingest.clone(),
            sources.clone(),
        ));
    }
    if let Some(s) = cfg.scaip.clone() {
        let listeners = warden_ingest::scaip::Listeners::bind(s.tcp, s.udp)
            .await
            .context("binding the SCAIP receiver (scaip.udp / scaip.tcp)")?;
        (receivers.scaip_tcp, receivers.scaip_udp) = listeners.addresses();
        tasks.spawn(warden_ingest::scaip::run(
            s,
            listeners,
            ingest.clone(),
            sources.clone(),
        ));
    }
    // The account cache forgets a device the moment the registry changes it.
    tasks.spawn(
        ingest
            .devices
            .clone()
            .follow(sources.clone())
            .instrument(tracing::info_span!("device_cache")),
    );
    Ok((links, receivers))
}
