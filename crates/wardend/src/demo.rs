//! `wardend demo`: everything on one machine with no configuration.
//!
//! A private Postgres in the data directory, the embedded MQTT broker, a simulated Sur-Gard
//! receiver on a pseudo-terminal pair made by `socat` (wardend opens one end by path, as it
//! would a real port; the simulator drives the other), and a simulated MQTT device fleet.
//! The simulated units are registered as devices so their signals are accepted. Ctrl-C
//! stops the simulators, then the daemon (which drains its writer), then socat and Postgres.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;
use warden_ingest::mqtt::MqttConfig;
use warden_ingest::serial::{Parity, SerialConfig};
use warden_protocol::mqtt::AlarmKind;
use warden_sim::fleet::{Fleet, FleetConfig};
use warden_sim::surgard::{ReceiverConfig, SerialSettings, SurGardReceiver, open_serial};
use warden_store::{DeviceProtocol, NewDevice};
use warden_types::Qualifier;

use crate::config::Config;
use crate::run::{self, Database};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Simulated MQTT alarm units.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// MQTT alarms per second across the fleet.
    #[arg(long, default_value_t = 0.5)]
    alarm_rate: f64,
    /// Contact ID events per second from the simulated receiver.
    #[arg(long, default_value_t = 0.2)]
    receiver_rate: f64,
    /// Override the data directory (default: the configuration's `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Accounts the simulated receiver reports for.
const RECEIVER_ACCOUNTS: [&str; 5] = ["1001", "1002", "1003", "1004", "1005"];

/// A `socat` pseudo-terminal pair, killed on drop.
struct PtyPair {
    child: Child,
    warden: PathBuf,
    sim: PathBuf,
}

impl PtyPair {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let warden = dir.join("demo-receiver-warden");
        let sim = dir.join("demo-receiver-sim");
        for p in [&warden, &sim] {
            let _ = std::fs::remove_file(p);
        }
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", warden.display()))
            .arg(format!("pty,raw,echo=0,link={}", sim.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting socat for the simulated receiver's serial line (apt-get install -y socat)")?;
        let pair = Self { child, warden, sim };
        for _ in 0..100 {
            if pair.warden.exists() && pair.sim.exists() {
                return Ok(pair);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("socat did not create the pseudo-terminals")
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(args: Args, mut cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Some(dir) = args.data_dir.clone() {
        cfg.data_dir = dir;
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let metrics = warden_telemetry::install_prometheus().map_err(anyhow::Error::msg)?;
    let db = Database::open(&cfg).await?;
    let result = demo(&args, cfg, &db, metrics, shutdown).await;
    db.stop();
    result
}

async fn demo(
    args: &Args,
    mut cfg: Config,
    db: &Database,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let broker_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    #[cfg(not(feature = "embedded-broker"))]
    bail!("this wardend was built without the embedded-broker feature, which the demo needs");

    let pty = PtyPair::start(&cfg.data_dir.canonicalize()?)?;
    let store = run::connect(&cfg, &db.url).await?;
    let mut devices: Vec<NewDevice> = (1..=args.devices)
        .map(|n| NewDevice {
            test_interval_seconds: Some(86_400),
            label: Some(format!("Simulated MQTT unit {n}")),
            ..NewDevice::new(format!("sim-{n:05}"), DeviceProtocol::Mqtt)
        })
        .collect();
    devices.push(NewDevice {
        label: Some("Demo unit for mosquitto_pub".into()),
        ..NewDevice::new(MANUAL_UNIT, DeviceProtocol::Mqtt)
    });
    devices.extend(RECEIVER_ACCOUNTS.iter().map(|a| NewDevice {
        test_interval_seconds: Some(86_400),
        client_ref: Some(format!("DEMO-{a}")),
        label: Some(format!("Simulated dispersed alarm {a}")),
        ..NewDevice::new(*a, DeviceProtocol::ContactId)
    }));
    devices.extend(DC09_UNITS.iter().map(|a| NewDevice {
        test_interval_seconds: Some(3600),
        label: Some(format!("Simulated IP transmitter {a} (DC-09)")),
        ..NewDevice::new(*a, DeviceProtocol::Dc09)
    }));
    devices.extend(SCAIP_UNITS.iter().map(|a| NewDevice {
        test_interval_seconds: Some(3600),
        label: Some(format!("Simulated social alarm {a} (SCAIP)")),
        ..NewDevice::new(*a, DeviceProtocol::Scaip)
    }));
    seed_clients(&store).await?;
    store
        .upsert_devices(&devices)
        .await
        .context("registering the simulated devices")?;
    // The first IP transmitter encrypts with a fresh key, printed for a real dialler.
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    let dc09_key =
        warden_protocol::dc09::Dc09Key::from_bytes(&key).map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .set_dc09_key(DC09_UNITS[0], Some(&dc09_key.to_hex()))
        .await?;
    if cfg.dc09.is_none() {
        let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        cfg.dc09 = Some(warden_ingest::dc09::Dc09Config {
            tcp: Some(local(free_port()?)),
            udp: Some(local(free_port()?)),
            ..warden_ingest::dc09::Dc09Config::default()
        });
    }
    if cfg.scaip.is_none() {
        let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        cfg.scaip = Some(warden_ingest::scaip::ScaipConfig {
            udp: Some(local(free_port()?)),
            tcp: Some(local(free_port()?)),
            ..warden_ingest::scaip::ScaipConfig::default()
        });
    }
    // Every simulated unit gets its own broker login (hashed in mqtt_credentials), and
    // Warden a fresh service login; the embedded broker checks them at every CONNECT.
    let mut unit_passwords = std::collections::HashMap::new();
    for d in devices
        .iter()
        .filter(|d| d.protocol == DeviceProtocol::Mqtt)
    {
        let pw = crate::broker_auth::issue_device_password(&store, &d.account).await?;
        unit_passwords.insert(d.account.clone(), pw);
    }
    let manual_password = unit_passwords
        .remove(MANUAL_UNIT)
        .context("the manual demo unit's password")?;
    let service_password = crate::broker_auth::issue_service_password(&store).await?;
    #[cfg(feature = "embedded-broker")]
    crate::broker::start(
        broker_addr,
        Some(crate::broker_auth::hook(
            store.clone(),
            DEMO_CLIENT_ID.into(),
        )),
    )?;
    let password = demo_password()?;
    for (name, role, display) in [
        ("operator", warden_types::Role::Operator, "Demo Operator"),
        (
            "supervisor",
            warden_types::Role::Supervisor,
            "Demo Supervisor",
        ),
        ("admin", warden_types::Role::Admin, "Demo Admin"),
        ("oncall", warden_types::Role::OnCall, "Demo On-Call"),
    ] {
        let hash = warden_console::hash_password(&password).map_err(anyhow::Error::msg)?;
        let write = warden_store::UserWrite {
            username: name.into(),
            display_name: display.into(),
            role,
            password_hash: Some(hash),
            disabled: false,
        };
        let audit = warden_store::AuditWrite {
            action: "user.demo".into(),
            object_type: "user".into(),
            ..warden_store::AuditWrite::default()
        };
        match store.user_by_username(name).await? {
            Some(u) => store.update_user(u.id, &write, audit).await,
            None => store.insert_user(&write, audit).await,
        }
        .map_err(|e| anyhow::anyhow!("demo user {name}: {e}"))?;
    }

    // The on-call person's pages go to a local webhook inbox that prints them, each with a
    // one-time acknowledgement link to the console.
    let inbox_stop = shutdown.child_token();
    let inbox_secret = demo_password()?;
    let inbox = crate::demo_inbox::start(inbox_secret.as_bytes().to_vec(), inbox_stop.clone())
        .await
        .context("starting the demo's webhook inbox")?;
    cfg.escalation.webhook_secret = Some(crate::config::Secret::new(inbox_secret));
    if cfg.console.listen.port() == 0 {
        cfg.console.listen.set_port(free_port()?);
    }
    if cfg.escalation.public_url.is_none() {
        cfg.escalation.public_url = Some(format!("http://localhost:{}", cfg.console.listen.port()));
    }
    seed_oncall(&store, &format!("http://{inbox}/")).await?;

    cfg.mqtt = Some(MqttConfig {
        port: broker_addr.port(),
        client_id: DEMO_CLIENT_ID.into(),
        username: Some(crate::broker_auth::SERVICE_USER.into()),
        password: Some(warden_ingest::Secret::new(service_password)),
        // rumqttd has no $SYS topics and drops a client that subscribes to one.
        watch_broker_drops: false,
        ..MqttConfig::default()
    });
    cfg.serial = vec![SerialConfig {
        name: "demo-receiver".into(),
        path: pty.warden.to_string_lossy().into_owned(),
        baud: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        profile: "surgard".into(),
        heartbeat_window: Duration::from_secs(75),
        ack_window: Duration::from_secs(4),
        ack_margin: Duration::from_millis(500),
    }];

    let daemon_stop = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let database_url = db.url.clone();
    let anonymous_url = db
        .embedded
        .as_ref()
        .map(crate::embedded_pg::EmbeddedPostgres::anonymous_url);
    let daemon = tokio::spawn(run::run(
        cfg,
        database_url.clone(),
        metrics,
        daemon_stop.clone(),
        move |e| {
            let _ = ready_tx.send(e);
        },
    ));
    let endpoints = ready_rx
        .await
        .context("the daemon stopped before it was ready")?;

    let sims = CancellationToken::new();
    let port = open_serial(&pty.sim.to_string_lossy(), &SerialSettings::default())?;
    let receiver = SurGardReceiver::new(port, ReceiverConfig::default())?;
    let rx = receiver.handle();
    let rx_task = tokio::spawn({
        let s = sims.clone();
        async move { receiver.run(s.cancelled_owned()).await }
    });
    let fleet = Fleet::new(FleetConfig {
        port: broker_addr.port(),
        devices: args.devices,
        alarm_rate_per_s: args.alarm_rate,
        heartbeat_interval: Duration::from_mins(1),
        passwords: warden_sim::fleet::UnitPasswords(std::sync::Arc::new(unit_passwords)),
        ..FleetConfig::default()
    })?;
    let fleet_task = tokio::spawn({
        let s = sims.clone();
        async move { fleet.run(s.cancelled_owned()).await }
    });
    let dc09_answers = std::sync::Arc::new(warden_sim::dc09::Answers::default());
    let mut dc09_units = Vec::new();
    if let Some(receiver) = endpoints.dc09_tcp {
        for (n, account) in DC09_UNITS.iter().enumerate() {
            let unit = warden_sim::dc09::Dc09Unit {
                account: (*account).to_owned(),
                key: (n == 0).then(|| dc09_key.clone()),
                receiver,
                link_test: Duration::from_secs(30),
                // A pendant press every 10 link tests (5 minutes).
                event_every: 10,
            };
            dc09_units.push(tokio::spawn(warden_sim::dc09::run(
                unit,
                dc09_answers.clone(),
                sims.clone(),
            )));
        }
    }
    let scaip_answers = std::sync::Arc::new(warden_sim::dc09::Answers::default());
    let mut scaip_units = Vec::new();
    if let Some(receiver) = endpoints.scaip_udp {
        for cid in SCAIP_UNITS {
            let unit = warden_sim::scaip::ScaipUnit {
                cid: cid.to_owned(),
                receiver,
                heartbeat: Duration::from_secs(30),
                // An alarm every 10 heartbeats (5 minutes).
                alarm_every: 10,
            };
            scaip_units.push(tokio::spawn(warden_sim::scaip::run(
                unit,
                scaip_answers.clone(),
                sims.clone(),
            )));
        }
    }
    let events = tokio::spawn({
        let s = sims.clone();
        let rate = args.receiver_rate;
        async move {
            if rate <= 0.0 {
                return;
            }
            let period = Duration::from_secs_f64(1.0 / rate);
            let kinds = [
                AlarmKind::Pendant,
                AlarmKind::Test,
                AlarmKind::MainsFail,
                AlarmKind::Smoke,
            ];
            let mut n = 0usize;
            loop {
                tokio::select! {
                    () = s.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                let account = RECEIVER_ACCOUNTS[n % RECEIVER_ACCOUNTS.len()];
                let code = warden_sim::contact_id_code(kinds[n % kinds.len()]);
                if let Err(e) = rx.send_event(account, Qualifier::New, code, 1, 1).await {
                    tracing::warn!(error = %e, "simulated receiver could not queue an event");
                }
                n += 1;
            }
        }
    });

    println!();
    println!("Warden demo running. Ctrl-C stops everything.");
    println!("  health:     http://{}/healthz", endpoints.admin);
    println!("  readiness:  http://{}/readyz", endpoints.admin);
    println!("  metrics:    http://{}/metrics", endpoints.admin);
    if let Some(console) = endpoints.console {
        println!(
            "  console:    http://localhost:{}/   (operator / supervisor / admin / oncall, password {password})",
            console.port()
        );
        println!(
            "  on call:    a life-critical alarm unanswered past its overflow threshold (60 s) pages \
             'oncall' (My pages, and the webhook inbox below), then the supervisor; acknowledging \
             (console, or the link in the message) stops it"
        );
        println!(
            "  inbox:      http://{inbox}/   (the on-call person's webhook: every page, printed here too)"
        );
    }
    println!(
        "  database:   {database_url}   (psql {database_url} -c 'select kind, count(*) from signals group by 1')"
    );
    if let Some(anonymous) = &anonymous_url {
        println!(
            "              (the runtime role: reads and writes rows, owns no table; without a password, {anonymous} is refused)"
        );
    }
    println!(
        "  mqtt:       {broker_addr}   (topic warden/v1/devices/<id>/up; every unit logs in as itself)"
    );
    println!("  try a pendant alarm from the demo unit {MANUAL_UNIT}:");
    println!("    {}", mosquitto_pub_line(broker_addr, &manual_password));
    println!(
        "  receiver:   {} (wardend) <-> {} (simulator)",
        pty.warden.display(),
        pty.sim.display()
    );
    if let (Some(tcp), Some(udp)) = (endpoints.dc09_tcp, endpoints.dc09_udp) {
        println!(
            "  dc09:       tcp {tcp}  udp {udp}   (IP transmitters; account {} encrypts with AES-128 key {}, account {} is plain; set [dc09] tcp = \"0.0.0.0:9999\" for a dialler on your network)",
            DC09_UNITS[0],
            dc09_key.to_hex(),
            DC09_UNITS[1]
        );
    }
    if let (Some(udp), Some(tcp)) = (endpoints.scaip_udp, endpoints.scaip_tcp) {
        println!(
            "  scaip:      udp {udp}  tcp {tcp}   (social alarms over SIP MESSAGE, application/scaip+xml; units {} register by their cid: wardend device add --account <cid> --protocol scaip)",
            SCAIP_UNITS.join(", ")
        );
    }
    println!(
        "  simulating: {} MQTT units at {}/s alarms, 1 Sur-Gard receiver at {}/s events, {} DC-09 transmitters and {} SCAIP units (a link test or heartbeat every 30 s, an alarm every 5 min)",
        args.devices,
        args.alarm_rate,
        args.receiver_rate,
        DC09_UNITS.len(),
        SCAIP_UNITS.len()
    );
    println!();

    shutdown.cancelled().await;
    println!("stopping simulators…");
    sims.cancel();
    let _ = events.await;
    if let Ok(report) = fleet_task.await {
        println!(
            "fleet: {} published, {} PUBACKed",
            report.published, report.pubacked
        );
    }
    if let Ok(Ok(report)) = rx_task.await {
        println!("receiver: {:?}", report.summary());
    }
    for unit in dc09_units.into_iter().chain(scaip_units) {
        let _ = unit.await;
    }
    println!(
        "dc09 transmitters: {} acknowledged, {} refused, {} unanswered",
        dc09_answers.acks.load(std::sync::atomic::Ordering::Relaxed),
        dc09_answers
            .refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        dc09_answers
            .unanswered
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "scaip units: {} acknowledged, {} refused, {} unanswered",
        scaip_answers
            .acks
            .load(std::sync::atomic::Ordering::Relaxed),
        scaip_answers
            .refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        scaip_answers
            .unanswered
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("stopping wardend…");
    daemon_stop.cancel();
    daemon.await.context("daemon task")??;
    drop(pty);
    println!("stopped cleanly");
    Ok(())
}

/// The demo's simulated DC-09 transmitters (the first encrypts).
const DC09_UNITS: [&str; 2] = ["3001", "3002"];
/// The simulated SCAIP units' caller ids.
const SCAIP_UNITS: [&str; 2] = ["26317", "10149471"];

/// The MQTT unit whose login the demo prints, for trying an alarm by hand.
const MANUAL_UNIT: &str = "demo-pendant";
/// Warden's own client id on the demo broker.
const DEMO_CLIENT_ID: &str = "warden-demo";

/// A ready-to-paste `mosquitto_pub` command that raises a pendant alarm from the manual
/// demo unit (user name = client id = its device id, as the embedded broker requires).
fn mosquitto_pub_line(broker: std::net::SocketAddr, password: &str) -> String {
    // The msg_id carries the time, so each paste is a new alarm, not a redelivery.
    let payload = r#"'{"v":1,"msg_id":"manual-'"$(date +%s)"'","alarm":{"kind":"pendant"}}'"#;
    format!(
        "mosquitto_pub -h {} -p {} -V mqttv311 -q 1 -i {MANUAL_UNIT} -u {MANUAL_UNIT} -P '{password}' -t warden/v1/devices/{MANUAL_UNIT}/up -m {payload}",
        broker.ip(),
        broker.port()
    )
}

/// A fresh password for the demo accounts, printed with the console address.
fn demo_password() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(format!("demo-{:016x}", u64::from_le_bytes(b)))
}

/// Made-up clients for the receiver's accounts, so the console shows a client record.
/// The demo's escalation: the on-call user is on call all the time in rota "Out of hours";
/// unanswered life-critical and urgent alarms page them (by webhook at `inbox`, and in the
/// console's "My pages"), then the supervisor two minutes later (also the fallback), twice
/// round. A lost link or a failed self-check pages the supervisor (the "Ops" chain).
async fn seed_oncall(store: &warden_store::Store, inbox: &str) -> anyhow::Result<()> {
    use warden_core::Micros;
    use warden_core::oncall::{Chain, Layer, ShiftLength, Step, Target};

    let user_id = |name: &'static str| async move {
        store
            .user_by_username(name)
            .await?
            .map(|u| u.id)
            .with_context(|| format!("demo user {name}"))
    };
    let on_call = store
        .upsert_person_for_user("Demo On-Call", user_id("oncall").await?)
        .await?;
    let manager = store
        .upsert_person_for_user("Demo Supervisor", user_id("supervisor").await?)
        .await?;
    store
        .set_contact_method(on_call, 1, "webhook", inbox, true)
        .await?;
    store
        .set_contact_method(on_call, 2, "console", "", true)
        .await?;
    store
        .set_contact_method(manager, 1, "console", "", true)
        .await?;
    let layer = Layer {
        name: "Everyone on call".into(),
        participants: vec![on_call],
        start: jiff::civil::date(2026, 1, 5).at(9, 0, 0, 0),
        shift: ShiftLength::Weeks(1),
        windows: Vec::new(),
        bank_holidays: false,
    };
    let rota = store
        .upsert_rota(
            "Out of hours",
            "Europe/London",
            &serde_json::to_value([layer])?,
            &[],
        )
        .await?;
    let chain = Chain {
        steps: vec![
            Step {
                targets: vec![Target::Rota(rota)],
                wait: Micros::from_secs(120),
                keep_calling_every: None,
            },
            Step {
                targets: vec![Target::Person(manager)],
                wait: Micros::from_secs(300),
                keep_calling_every: None,
            },
        ],
        repeat: 1,
        fallback: vec![manager],
        ack_timeout: Micros::from_secs(1_800),
        reminder_every: Some(Micros::from_secs(600)),
    };
    let chain = store
        .upsert_chain("Unanswered alarms", &serde_json::to_value(&chain)?)
        .await?;
    store
        .set_route(1, Some("life_critical"), None, None, chain)
        .await?;
    store
        .set_route(2, Some("urgent"), None, None, chain)
        .await?;
    let ops = Chain {
        steps: vec![Step {
            targets: vec![Target::Person(manager)],
            wait: Micros::from_secs(600),
            keep_calling_every: None,
        }],
        repeat: 0,
        fallback: vec![manager],
        ack_timeout: Micros::from_secs(3_600),
        reminder_every: None,
    };
    let ops = store
        .upsert_chain("Ops", &serde_json::to_value(&ops)?)
        .await?;
    for (position, kind) in [(3, "link_lost"), (4, "self_check")] {
        store
            .set_route(position, None, Some(kind), None, ops)
            .await?;
    }
    Ok(())
}

async fn seed_clients(store: &warden_store::Store) -> anyhow::Result<()> {
    const PEOPLE: [(&str, &str, &str, &str); 5] = [
        (
            "Mrs Ada Jones",
            "12 High Street, Oldtown",
            "Type 2 diabetes; walking frame",
            "Hard of hearing: speak slowly",
        ),
        (
            "Mr Bill Patel",
            "3 Mill Lane, Oldtown",
            "Heart failure; on warfarin",
            "Gujarati speaker: interpreter",
        ),
        (
            "Ms Carol Smith",
            "Flat 4, Elm Court",
            "Epilepsy",
            "Deaf: use text relay",
        ),
        (
            "Mr Dan O'Neill",
            "27 Station Road",
            "COPD, home oxygen: no naked flames",
            "",
        ),
        (
            "Mrs Eve Brown",
            "9 Church Walk",
            "Dementia: may not remember pressing",
            "Large print letters",
        ),
    ];
    for (a, (name, address, medical, needs)) in RECEIVER_ACCOUNTS.iter().zip(PEOPLE) {
        let external_ref = format!("DEMO-{a}");
        let existing = store.client_search(&external_ref, 1).await?;
        let record = warden_store::ClientRecord {
            external_ref,
            name: name.into(),
            address: address.into(),
            postcode: "OT1 2AB".into(),
            phone: "01632 960000".into(),
            area: Some("oldtown".into()),
            language: "English".into(),
            communication_needs: needs.into(),
            preferred_contact: if needs.contains("text relay") {
                "text_relay"
            } else {
                "phone"
            }
            .into(),
            access_notes: "Key safe by the back door".into(),
            medical_notes: medical.into(),
            ..warden_store::ClientRecord::default()
        };
        let responders = [warden_store::Responder {
            position: 1,
            name: "Family keyholder".into(),
            relationship: "daughter".into(),
            phone: "07700 900000".into(),
            is_keyholder: true,
            notes: String::new(),
        }];
        let audit = warden_store::AuditWrite {
            action: "client.demo".into(),
            object_type: "client".into(),
            ..warden_store::AuditWrite::default()
        };
        store
            .save_client(
                existing.first().map(|c| c.id),
                &record,
                Some("1234"),
                Some(&responders),
                audit,
            )
            .await
            .map_err(|e| anyhow::anyhow!("demo client: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_printed_mosquitto_pub_line_is_one_shell_command_with_the_units_login() {
        let line = super::mosquitto_pub_line(([127, 0, 0, 1], 1884).into(), "abc123");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -- {}; printf '%s\\n' \"$@\"",
                line.trim_start_matches("mosquitto_pub ")
            ))
            .output()
            .expect("sh");
        let args = String::from_utf8(out.stdout).expect("utf8");
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(
            &args[..6],
            ["-h", "127.0.0.1", "-p", "1884", "-V", "mqttv311"]
        );
        assert!(args.windows(2).any(|w| w == ["-u", "demo-pendant"]));
        assert!(args.windows(2).any(|w| w == ["-P", "abc123"]));
        let payload = args.last().expect("payload");
        let json: serde_json::Value = serde_json::from_str(payload).expect("payload is JSON");
        assert_eq!(json["alarm"]["kind"], "pendant");
        assert!(
            json["msg_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("manual-1"))
        );
    }
}
