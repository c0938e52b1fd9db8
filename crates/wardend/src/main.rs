//! `wardend`: the Warden daemon and its installer tools.

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod admin;
#[cfg(feature = "embedded-broker")]
mod broker;
mod broker_auth;
#[cfg(feature = "embedded-broker")]
mod broker_tls;
mod config;
mod decode;
#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "demo")]
mod demo_inbox;
mod embedded_pg;
mod encryption;
mod private_file;
mod run;
mod standby;

use config::Config;

/// EX_USAGE: bad command line or configuration.
const EXIT_CONFIG: u8 = 64;
/// EX_IOERR.
const EXIT_IO: u8 = 74;

#[derive(Debug, Parser)]
#[command(
    name = "wardend",
    version,
    about = "Warden community-alarm monitoring daemon"
)]
struct Cli {
    /// Configuration file (TOML). Environment variables WARDEN_* override it.
    #[arg(long, short, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (production).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-seal every client's key-safe code and medical notes under the current encryption
    /// key (after adding a new key and making it `encryption.current`), then exit.
    Rekey {
        /// Clients per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Print the effective configuration (defaults + file + environment), secrets hidden.
    PrintConfig,
    /// Register or update a device (alarm unit) so its signals are accepted.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Manage console accounts (`user add` bootstraps the first admin).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Zero-configuration demonstration: private Postgres, embedded MQTT broker, a simulated
    /// Sur-Gard receiver on a pseudo-terminal and a simulated MQTT device fleet.
    #[cfg(feature = "demo")]
    Demo(demo::Args),
    /// Decode raw alarm-protocol bytes from stdin and print one JSON object per frame.
    Decode(decode::Args),
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Add a device, or update it when the account exists.
    Add {
        /// Account as the unit sends it (Contact ID/SIA account, or MQTT device id).
        #[arg(long)]
        account: String,
        /// contact_id, sia, mqtt, dc09 or scaip (a SCAIP unit's account is its `cid`).
        #[arg(long, default_value = "contact_id")]
        protocol: String,
        /// Expected periodic-test interval, e.g. `24h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        test_interval: Option<std::time::Duration>,
        #[arg(long)]
        label: Option<String>,
        /// For a contact_id or sia panel whose messages come through an MQTT bridge: the
        /// bridge unit's account (an mqtt device). Only that unit's `contact_id`
        /// pass-through may then speak for this panel.
        #[arg(long)]
        bridge: Option<String>,
        /// For an mqtt unit: generate its login to the embedded broker (user name and
        /// client id = its account), store the hash and print the password once.
        #[arg(long)]
        mqtt_password: bool,
        /// For a dc09 transmitter: its AES key, 32, 48 or 64 hex digits or 16, 24 or 32
        /// ASCII characters (`hex:` or `ascii:` in front to say which); the transmitter must
        /// then encrypt. Never printed or shown again. Also read from WARDEN_DEVICE_KEY, which
        /// keeps it out of the shell history.
        #[arg(long, env = "WARDEN_DEVICE_KEY", hide_env_values = true)]
        key: Option<String>,
        /// For a scaip unit: generate its SIP digest password (user name: its cid, realm
        /// `warden`), store only its HA1 and print the password once; the unit must then
        /// authenticate every report.
        #[arg(long)]
        sip_password: bool,
        /// For a dc09 transmitter: the receiver number (`R`, hex) its messages must carry;
        /// others are refused with DUH.
        #[arg(long)]
        dc09_receiver: Option<String>,
        /// For a dc09 transmitter: the line number (`L`, hex) its messages must carry.
        #[arg(long)]
        dc09_line: Option<String>,
        /// For a dc09 transmitter with a poor clock: how far behind Warden's clock its
        /// timestamps may be, in seconds (default: the receiver's `dc09.before_seconds`).
        #[arg(long)]
        dc09_before_seconds: Option<u16>,
        /// ... and how far ahead (default: `dc09.after_seconds`).
        #[arg(long)]
        dc09_after_seconds: Option<u16>,
        /// For a dc09 transmitter: no message within this long (e.g. `90s`; its NULL link
        /// tests come more often) raises link lost on `dc09:<account>`; its next message
        /// link restored.
        #[arg(long, value_parser = humantime::parse_duration)]
        dc09_supervision: Option<std::time::Duration>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a console account, or reset its password and role when the username exists.
    /// The password is read from the first line of standard input.
    Add {
        /// Sign-in name: a-z, 0-9, '.', '_', '-'.
        #[arg(long)]
        username: String,
        /// operator, supervisor, admin or on_call.
        #[arg(long)]
        role: String,
        /// The name other users see (defaults to the username).
        #[arg(long)]
        display_name: Option<String>,
    },
}

/// mimalloc instead of glibc's malloc: ingest and triage allocate small, short-lived values
/// for every message (JSON, rows, effects), and under a storm glibc's allocator was the
/// daemon's largest cost (about a third of its CPU in `benches/ingest_load`, phase B).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Decode(args) = &cli.command {
        let stdin = io::stdin().lock();
        let stdout = BufWriter::new(io::stdout().lock());
        return match decode::run(args, stdin, stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wardend decode: {e:#}");
                ExitCode::from(if e.is::<decode::UsageError>() {
                    EXIT_CONFIG
                } else {
                    EXIT_IO
                })
            }
        };
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("wardend: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::PrintConfig = cli.command {
        print!("{}", cfg.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    warden_telemetry::init_tracing(matches!(cfg.log.format, config::LogFormat::Json));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wardend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "wardend failed");
            eprintln!("wardend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Run => {
            let metrics = warden_telemetry::install_prometheus().map_err(anyhow::Error::msg)?;
            let db = run::Database::open(&cfg).await?;
            #[cfg(feature = "embedded-broker")]
            let cfg = if cfg.broker.embedded {
                let mut cfg = cfg;
                let store = run::connect(&cfg, &db.url).await?;
                let hook = embedded_broker_login(&mut cfg, &store).await?;
                broker::start(cfg.broker.listen, Some(hook))?;
                if let Some(tls) = cfg.broker.tls() {
                    broker_tls::spawn(tls, cfg.broker.listen).await?;
                }
                cfg
            } else {
                cfg
            };
            let shutdown = shutdown_on_signal();
            let result = run::run(cfg, db.url.clone(), metrics, shutdown, |_| {}).await;
            db.stop();
            result
        }
        Command::Migrate => {
            let db = run::Database::open(&cfg).await?;
            let result = db.migrate().await;
            db.stop();
            result?;
            println!("migrations applied");
            Ok(())
        }
        Command::Rekey { batch } => {
            let db = run::Database::open(&cfg).await?;
            let store = warden_store::Store::connect(&db.url, 2)
                .await
                .context("connecting to postgres")?;
            let result = encryption::rekey(&cfg, &store, batch).await;
            db.stop();
            result
        }
        Command::Device {
            command:
                DeviceCommand::Add {
                    account,
                    protocol,
                    test_interval,
                    label,
                    bridge,
                    mqtt_password,
                    key,
                    sip_password,
                    dc09_receiver,
                    dc09_line,
                    dc09_before_seconds,
                    dc09_after_seconds,
                    dc09_supervision,
                },
        } => {
            let db = run::Database::open(&cfg).await?;
            let result = async {
                let store = run::connect(&cfg, &db.url).await?;
                let interval = test_interval
                    .map(|d| i32::try_from(d.as_secs()).context("test interval too long"))
                    .transpose()?;
                let protocol: warden_store::DeviceProtocol =
                    protocol.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                let id = store
                    .upsert_device(&warden_store::NewDevice {
                        test_interval_seconds: interval,
                        label,
                        ..warden_store::NewDevice::new(account.clone(), protocol)
                    })
                    .await?;
                if let Some(bridge) = &bridge {
                    store
                        .set_device_bridge(&account, Some(bridge))
                        .await
                        .with_context(|| format!("bridge {bridge} for {account}"))?;
                    println!("device {id} account {account} bridged by {bridge}");
                } else {
                    println!("device {id} account {account}");
                }
                if mqtt_password {
                    let password = broker_auth::issue_device_password(&store, &account).await?;
                    println!("mqtt user {account} password {password}");
                }
                if let Some(key) = &key {
                    anyhow::ensure!(
                        protocol == warden_store::DeviceProtocol::Dc09,
                        "--key is for dc09 transmitters; {account} is {protocol}"
                    );
                    let key = warden_protocol::dc09::Dc09Key::parse(key)
                        .map_err(|e| anyhow::anyhow!("--key: {e}"))?;
                    store.set_dc09_key(&account, Some(&key.to_hex())).await?;
                    println!(
                        "dc09 key set ({} bits); the transmitter must encrypt",
                        key.bits()
                    );
                }
                if sip_password {
                    anyhow::ensure!(
                        protocol == warden_store::DeviceProtocol::Scaip,
                        "--sip-password is for scaip units; {account} is {protocol}"
                    );
                    let unit = warden_types::scaip_unit(&account);
                    let password = broker_auth::generate_password()?;
                    let ha1 = warden_protocol::sip_digest::ha1(
                        &unit,
                        warden_protocol::sip_digest::REALM,
                        &password,
                    );
                    store.set_scaip_ha1(&unit, Some(&ha1)).await?;
                    println!(
                        "sip user {unit} realm {} password {password}",
                        warden_protocol::sip_digest::REALM
                    );
                }
                let settings = warden_store::Dc09Settings {
                    receiver: dc09_receiver
                        .map(|r| hex_field("--dc09-receiver", &r))
                        .transpose()?,
                    line: dc09_line
                        .map(|l| hex_field("--dc09-line", &l))
                        .transpose()?,
                    before_seconds: dc09_before_seconds.map(i32::from),
                    after_seconds: dc09_after_seconds.map(i32::from),
                    supervision_seconds: dc09_supervision
                        .map(|d| i32::try_from(d.as_secs().max(1)))
                        .transpose()
                        .context("--dc09-supervision too long")?,
                };
                if settings != warden_store::Dc09Settings::default() {
                    anyhow::ensure!(
                        protocol == warden_store::DeviceProtocol::Dc09,
                        "--dc09-* settings are for dc09 transmitters; {account} is {protocol}"
                    );
                    anyhow::ensure!(
                        settings.before_seconds.is_none_or(|s| s <= 3600)
                            && settings.after_seconds.is_none_or(|s| s <= 3600),
                        "--dc09-before-seconds / --dc09-after-seconds: at most 3600"
                    );
                    store.set_dc09_settings(&account, &settings).await?;
                    println!(
                        "dc09 receiver {} line {} window -{}/+{} s",
                        settings.receiver.as_deref().unwrap_or("any"),
                        settings.line.as_deref().unwrap_or("any"),
                        settings
                            .before_seconds
                            .map_or_else(|| "default".to_owned(), |s| s.to_string()),
                        settings
                            .after_seconds
                            .map_or_else(|| "default".to_owned(), |s| s.to_string()),
                    );
                }
                anyhow::Ok(())
            }
            .await;
            db.stop();
            result
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    display_name,
                },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let db = run::Database::open(&cfg).await?;
            let result = async {
                let store = run::connect(&cfg, &db.url).await?;
                let user = warden_console::add_or_reset_user(
                    &store,
                    &username,
                    &role,
                    display_name.as_deref(),
                    password,
                )
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
                println!("user {} {} ({})", user.id, user.username, user.role);
                anyhow::Ok(())
            }
            .await;
            db.stop();
            result
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => Box::pin(demo::run(args, cfg, shutdown_on_signal())).await,
        Command::PrintConfig | Command::Decode(_) => Ok(()),
    }
}

/// Gives Warden's own MQTT client a fresh service login to the embedded broker (its client
/// id resolved now, since the broker lets only that id use the login) and returns the
/// broker's login check.
#[cfg(feature = "embedded-broker")]
async fn embedded_broker_login(
    cfg: &mut Config,
    store: &warden_store::Store,
) -> anyhow::Result<broker_auth::Hook> {
    let data_dir = cfg.data_dir.clone();
    let Some(m) = cfg.mqtt.as_mut() else {
        return Ok(broker_auth::hook(store.clone(), String::new()));
    };
    if m.client_id.is_empty() {
        m.client_id = warden_ingest::mqtt::persisted_client_id(&data_dir)
            .context("keeping the generated mqtt client id")?;
    }
    let password = broker_auth::issue_service_password(store).await?;
    // rumqttd has no $SYS topics and drops a client that subscribes to one.
    m.watch_broker_drops = false;
    m.username = Some(broker_auth::SERVICE_USER.to_owned());
    m.password = Some(warden_ingest::Secret::new(password));
    Ok(broker_auth::hook(store.clone(), m.client_id.clone()))
}

/// A token cancelled on SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}

/// A DC-09 receiver or line number: 1 to 6 hex digits, kept upper-case.
fn hex_field(flag: &str, value: &str) -> anyhow::Result<String> {
    let v = value.trim().to_ascii_uppercase();
    anyhow::ensure!(
        (1..=6).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit()),
        "{flag}: 1 to 6 hex digits (not {value:?})"
    );
    Ok(v)
}
