//! `firmware-sim`'s senders run in tasks for a test: an MQTT fleet and Sur-Gard receivers
//! on a [`PtyPair`].

use std::time::Duration;

use crate::pty::{PtyPair, ReplugPort};

/// A simulator running in a task until [`Running::stop`].
#[derive(Debug)]
pub struct Running<T> {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<T>,
}

impl<T> Running<T> {
    /// Asks the simulator to stop (it drains what it has in flight) and returns its report.
    pub async fn stop(self) -> T {
        let _ = self.stop.send(());
        self.task.await.expect("simulator task")
    }
}

/// Starts an MQTT fleet and waits until every connection is up.
pub async fn start_fleet(
    fleet: warden_sim::fleet::Fleet,
) -> (
    warden_sim::fleet::FleetHandle,
    Running<warden_sim::fleet::FleetReport>,
) {
    let handle = fleet.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fleet.run(async move {
        let _ = rx.await;
    }));
    handle.wait_connected().await;
    (handle, Running { stop, task })
}

/// Starts a simulated Sur-Gard receiver on the receiver end of a [`PtyPair`], with short
/// ACK and retry timeouts so tests recover quickly from a NAK or a restart.
pub fn start_receiver(
    pty: &PtyPair,
) -> (
    warden_sim::surgard::ReceiverHandle,
    Running<Result<warden_sim::surgard::ReceiverReport, warden_sim::surgard::ReceiverError>>,
) {
    use warden_sim::surgard::{ReceiverConfig, SerialSettings, SurGardReceiver, open_serial};
    let port =
        open_serial(&pty.receiver.to_string_lossy(), &SerialSettings::default()).expect("open pty");
    let config = ReceiverConfig {
        ack_timeout: Duration::from_secs(1),
        link_retry_interval: Duration::from_secs(1),
        ..ReceiverConfig::default()
    };
    let receiver = SurGardReceiver::new(port, config).expect("receiver");
    let handle = receiver.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(receiver.run(async move {
        let _ = rx.await;
    }));
    (handle, Running { stop, task })
}

/// Starts a simulated Sur-Gard receiver like [`start_receiver`], but on a [`ReplugPort`]
/// and with `config`, so it survives [`PtyPair::unplug`] with its buffer intact.
pub fn start_receiver_replug(
    pty: &PtyPair,
    config: warden_sim::surgard::ReceiverConfig,
) -> (
    warden_sim::surgard::ReceiverHandle,
    Running<Result<warden_sim::surgard::ReceiverReport, warden_sim::surgard::ReceiverError>>,
) {
    use warden_sim::surgard::SurGardReceiver;
    let receiver = SurGardReceiver::new(ReplugPort::open(&pty.receiver), config).expect("receiver");
    let handle = receiver.handle();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(receiver.run(async move {
        let _ = rx.await;
    }));
    (handle, Running { stop, task })
}
