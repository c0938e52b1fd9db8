//! The embedded MQTT broker (rumqttd), for `wardend demo` and single-box installs.
//!
//! rumqttd keeps nothing on disk and has no shutdown API: it runs on its own thread for the
//! life of the process. Production installs point `[mqtt]` at Mosquitto or a cluster.
//! Logins are checked by [`crate::broker_auth`] (what that does and does not enforce is
//! written there).

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on `listen` and waits until it accepts connections. `auth` checks
/// every CONNECT; without it the broker is anonymous (tests of the broker alone only).
pub fn start(listen: SocketAddr, auth: Option<crate::broker_auth::Hook>) -> anyhow::Result<()> {
    let mut server = ServerSettings {
        name: "v4-1".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            // Far above Warden's 4 KiB payload limit: oversized payloads must reach Warden to
            // be quarantined and PUBACKed, not be dropped by the broker.
            max_payload_size: 1 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    if let Some(hook) = auth {
        server.connections.set_auth_handler(hook);
    } else {
        tracing::warn!(%listen, "embedded mqtt broker accepts anonymous clients");
    }
    tracing::warn!(
        %listen,
        "embedded mqtt broker checks logins and client ids but cannot restrict topics: a unit with valid credentials can publish on another unit's topic (use Mosquitto with deploy/mosquitto/acl.example in production)"
    );
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded mqtt broker stopped");
            }
        })
        .context("spawning the broker thread")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            tracing::info!(%listen, "embedded mqtt broker listening");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("embedded mqtt broker did not start listening on {listen}")
}
