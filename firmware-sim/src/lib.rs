//! Simulated alarm equipment for driving Warden the way real equipment does.
//!
//! * [`surgard`]: a Sur-Gard MLR2-style receiver on a serial line (or any byte stream). It
//!   sends one DC4-terminated frame at a time and waits for the computer's ACK, resends on NAK
//!   or silence, buffers while the computer is away and sends a heartbeat when idle.
//! * [`fleet`]: a fleet of MQTT alarm units publishing Warden's v1 JSON uplink with `QoS` 1,
//!   recording when each message was published and when its PUBACK arrived.
//! * [`dc09`]: SIA DC-09 transmitters on TCP: link tests and now and then an event,
//!   encrypted when they have a key, counting the receiver's answers.
//! * [`scenario`]: TOML scenario files (`firmware-sim/scenarios/`) that script both, and the
//!   runner behind `warden-sim run`.
//!
//! Everything here is test equipment: it keeps per-message records in memory so tests and
//! benchmarks can measure latency and check that every acknowledged message was stored.

pub mod dc09;
pub mod fleet;
pub mod scaip;
pub mod scenario;
pub mod surgard;

mod latency;
mod rng;

pub use latency::LatencySummary;

use warden_protocol::mqtt::AlarmKind;

/// Any bidirectional byte stream the receiver emulator can drive: a serial port, a pty, a
/// `tokio::io::duplex` end or a TCP socket.
pub trait AsyncIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncIo for T {}

/// A boxed [`AsyncIo`], so a runner can take "a serial port or a test pipe" without generics.
pub type BoxedIo = Box<dyn AsyncIo>;

/// The `snake_case` name of an alarm kind, as it appears in payloads, scenario files and reports.
pub fn alarm_name(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::Pendant => "pendant",
        AlarmKind::Fall => "fall",
        AlarmKind::Fire => "fire",
        AlarmKind::Smoke => "smoke",
        AlarmKind::Heat => "heat",
        AlarmKind::Co => "co",
        AlarmKind::Panic => "panic",
        AlarmKind::Medical => "medical",
        AlarmKind::Inactivity => "inactivity",
        AlarmKind::Flood => "flood",
        AlarmKind::DoorExit => "door_exit",
        AlarmKind::TemperatureHigh => "temperature_high",
        AlarmKind::TemperatureLow => "temperature_low",
        AlarmKind::Tamper => "tamper",
        AlarmKind::MainsFail => "mains_fail",
        AlarmKind::LowBattery => "low_battery",
        AlarmKind::CommsFault => "comms_fault",
        AlarmKind::Test => "test",
        AlarmKind::Cancel => "cancel",
    }
}

/// The Contact ID event code a panel would send for an alarm kind, so one alarm mix can drive
/// both the MQTT fleet and the Sur-Gard receiver. Contact ID has no "fall" code; fall
/// detectors report 100 (medical).
pub fn contact_id_code(kind: AlarmKind) -> u16 {
    match kind {
        AlarmKind::Pendant => 101,
        AlarmKind::Fall | AlarmKind::Medical => 100,
        AlarmKind::Fire => 110,
        AlarmKind::Smoke => 111,
        AlarmKind::Heat => 114,
        AlarmKind::Co => 162,
        AlarmKind::Panic => 120,
        AlarmKind::Inactivity => 641,
        AlarmKind::Flood => 154,
        AlarmKind::DoorExit => 134,
        AlarmKind::TemperatureHigh => 158,
        AlarmKind::TemperatureLow => 159,
        AlarmKind::Tamper => 137,
        AlarmKind::MainsFail => 301,
        AlarmKind::LowBattery => 302,
        AlarmKind::CommsFault => 350,
        AlarmKind::Test => 602,
        AlarmKind::Cancel => 406,
    }
}

/// The alarm mix used when a configuration names none: mostly periodic tests and technical
/// signals, with a steady trickle of life-critical alarms, roughly like a real scheme.
pub fn default_alarm_mix() -> Vec<(AlarmKind, u32)> {
    vec![
        (AlarmKind::Pendant, 5),
        (AlarmKind::Fall, 2),
        (AlarmKind::Smoke, 1),
        (AlarmKind::Co, 1),
        (AlarmKind::Flood, 1),
        (AlarmKind::MainsFail, 2),
        (AlarmKind::LowBattery, 3),
        (AlarmKind::Test, 10),
    ]
}
