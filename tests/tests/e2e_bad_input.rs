//! The bad-input catalogue (issue 9, item 7), end to end through ONE real `wardend`: a serial
//! receiver line over a socat pty pair, driven byte by byte, and MQTT through a real
//! Mosquitto (with a small `message_size_limit`), against Postgres.
//!
//! Each case sends one piece of bad input and then checks, for that input alone:
//! (a) a clear outcome: an open incident in the queue of the expected priority (life-critical
//!     codes stay life-critical even from an unregistered unit; unreadable input is never
//!     lower than urgent) or, for noise, a quarantine row naming the problem;
//! (b) evidence: a quarantine row with its reason code and the raw bytes exactly as sent, or
//!     the stored signal (raw bytes exact) and an audit entry of its incident naming it;
//! (c) a metric moved (`warden_signals_rejected_total{source,reason}` for quarantined
//!     input, else `warden_signals_received_total{source}`);
//! (d) no crash: the process runs, `/healthz` answers, `/readyz` reports no engine problem
//!     and `warden_engine_running` is 1;
//! (e) the next good pendant press on the same path (a unit not used before) becomes an
//!     offered, life-critical incident within 2 s.
//!
//! Then the poison message is replayed after a restart. Every case runs even when an earlier
//! one failed; the catalogue is printed (one line per case) and the test fails at the end,
//! naming every failed check.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warden_tests::{Mosquitto, PtyPair, RawLine, TestDb, Wardend, http_get, wait_until};

const ACK: u8 = 0x06;
const NAK: u8 = 0x15;
const DC4: u8 = 0x14;

/// Mosquitto's payload limit in this test: above the parser's 4 096 bytes, so the parser's
/// own limit can be tested through the broker, and below the broker-limit case's payload.
const BROKER_LIMIT: usize = 16_384;
/// How long the next good pendant may take to be offered.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a case's input may take to be stored and triaged.
const SETTLE_DEADLINE: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Pri {
    Is(&'static str),
    /// Urgent or life-critical: unreadable input is never lower than urgent.
    AtLeastUrgent,
}

impl Pri {
    fn admits(self, p: &str) -> bool {
        match self {
            Pri::Is(want) => p == want,
            Pri::AtLeastUrgent => matches!(p, "urgent" | "life_critical"),
        }
    }
}

impl std::fmt::Display for Pri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pri::Is(p) => f.write_str(p),
            Pri::AtLeastUrgent => f.write_str(">=urgent"),
        }
    }
}

/// Which registered device a row must be attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dev {
    /// Not checked.
    Any,
    /// No device (unregistered unit, protocol mismatch, a link-level signal).
    NoDevice,
    /// The device registered under this account.
    Account(&'static str),
}

impl Dev {
    fn admits(self, account: &str) -> bool {
        match self {
            Dev::Any => true,
            Dev::NoDevice => account.is_empty(),
            Dev::Account(a) => account == a,
        }
    }
}

impl std::fmt::Display for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dev::Any => Ok(()),
            Dev::NoDevice => f.write_str(" no-device"),
            Dev::Account(a) => write!(f, " dev={a}"),
        }
    }
}

#[derive(Debug, Clone)]
struct WantIncident {
    pri: Pri,
    kind: Option<&'static str>,
    dev: Dev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Serial,
    Mqtt,
}

impl Path {
    fn source(self) -> &'static str {
        match self {
            Path::Serial => "serial",
            Path::Mqtt => "mqtt",
        }
    }
}

/// One bad input and everything it must cause.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    path: Path,
    /// MQTT only.
    topic: String,
    bytes: Vec<u8>,
    /// Serial: the answer the receiver must get.
    reply: Option<u8>,
    incidents: Vec<WantIncident>,
    /// Reason code and the exact bytes kept.
    quarantine: Option<(&'static str, Vec<u8>)>,
    /// The signal stored with exactly these bytes, attributed so.
    stored: Option<(Vec<u8>, Dev)>,
    /// Text an audit entry of the case's incidents must contain.
    audit: Option<String>,
    /// Some incident or quarantine row must exist, whatever it is (input the product has no
    /// specific rule for, but which must not vanish without a record).
    any_record: bool,
    /// The broker drops it: Warden must see nothing and count nothing.
    dropped_by_broker: bool,
}

fn serial(name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        path: Path::Serial,
        topic: String::new(),
        bytes: bytes.into(),
        reply: None,
        incidents: Vec::new(),
        quarantine: None,
        stored: None,
        audit: None,
        any_record: false,
        dropped_by_broker: false,
    }
}

fn mqtt(name: &'static str, topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Case {
    Case {
        path: Path::Mqtt,
        topic: topic.into(),
        ..serial(name, payload)
    }
}

impl Case {
    fn reply(mut self, b: u8) -> Self {
        self.reply = Some(b);
        self
    }
    fn incident(mut self, pri: Pri, kind: Option<&'static str>, dev: Dev) -> Self {
        self.incidents.push(WantIncident { pri, kind, dev });
        self
    }
    /// Quarantined with this reason, raw bytes exactly the input.
    fn quarantined(self, code: &'static str) -> Self {
        let raw = self.bytes.clone();
        self.quarantined_as(code, raw)
    }
    /// Quarantined with this reason, raw bytes exactly `raw`.
    fn quarantined_as(mut self, code: &'static str, raw: Vec<u8>) -> Self {
        self.quarantine = Some((code, raw));
        self
    }
    /// MQTT evidence form for unreadable input and bad topics: `topic\npayload`.
    fn evidence(&self) -> Vec<u8> {
        let mut v = self.topic.as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(&self.bytes);
        v
    }
    /// Quarantined with this reason as `topic\npayload` (MQTT).
    fn quarantined_evidence(self, code: &'static str) -> Self {
        let ev = self.evidence();
        self.quarantined_as(code, ev)
    }
    /// Stored as a signal, raw bytes exactly the input.
    fn stored(mut self, dev: Dev) -> Self {
        self.stored = Some((self.bytes.clone(), dev));
        self
    }
    fn stored_as(mut self, raw: Vec<u8>, dev: Dev) -> Self {
        self.stored = Some((raw, dev));
        self
    }
    /// Unreadable MQTT input from a device topic: quarantined and stored as `topic\npayload`
    /// and triaged at least urgent for that device.
    fn unreadable(self, code: &'static str, dev: Dev) -> Self {
        let ev = self.evidence();
        self.quarantined_as(code, ev.clone())
            .stored_as(ev, dev)
            .incident(Pri::AtLeastUrgent, None, dev)
    }
    fn audit(mut self, text: impl Into<String>) -> Self {
        self.audit = Some(text.into());
        self
    }
    fn any_record(mut self) -> Self {
        self.any_record = true;
        self
    }
    fn dropped_by_broker(mut self) -> Self {
        self.dropped_by_broker = true;
        self
    }

    /// The metric that must move.
    fn metric(&self) -> String {
        match &self.quarantine {
            Some((code, _)) => format!(
                "warden_signals_rejected_total{{source=\"{}\",reason=\"{code}\"}}",
                self.path.source()
            ),
            None => format!(
                "warden_signals_received_total{{source=\"{}\"}}",
                self.path.source()
            ),
        }
    }

    fn expected(&self) -> String {
        if self.dropped_by_broker {
            return "broker drops it; Warden sees and counts nothing".into();
        }
        let mut parts = Vec::new();
        if let Some(r) = self.reply {
            parts.push(reply_name(Some(r)).to_owned());
        }
        for w in &self.incidents {
            parts.push(format!(
                "incident {}{}{}",
                w.pri,
                w.kind.map(|k| format!(" {k}")).unwrap_or_default(),
                w.dev
            ));
        }
        if let Some((code, _)) = &self.quarantine {
            parts.push(format!("quarantine {code}"));
        } else if self.any_record {
            parts.push("some incident or quarantine record".into());
        }
        if let Some((_, dev)) = &self.stored {
            parts.push(format!("signal kept{dev}"));
        }
        parts.join(", ")
    }
}

fn reply_name(r: Option<u8>) -> &'static str {
    match r {
        Some(ACK) => "ACK",
        Some(NAK) => "NAK",
        Some(_) => "other byte",
        None => "no reply",
    }
}

// ---------------------------------------------------------------------------------------
// Input helpers
// ---------------------------------------------------------------------------------------

/// A Sur-Gard MLR2 Contact ID frame: receiver 01, line 1, group 01.
fn cid_frame(account: &str, qualifier: char, code: &str, zone: u16) -> Vec<u8> {
    format!("5011 18{account}{qualifier}{code}01{zone:03}\u{14}").into_bytes()
}

/// A 16-digit Contact ID (DC-05) message `ACCT 18 Q XYZ GG CCC S` with a correct checksum.
fn cid_message(account: &str, qualifier: u8, code: &str, zone: u16) -> String {
    let body = format!("{account}18{qualifier}{code}01{zone:03}");
    let sum: u32 = body
        .chars()
        .map(|c| match c.to_digit(16).unwrap_or(0) {
            0 => 10,
            d => d,
        })
        .sum();
    let s = match (15 - sum % 15) % 15 {
        0 => 15,
        s => s,
    };
    format!(
        "{body}{}",
        char::from_digit(s, 16).unwrap_or('0').to_ascii_uppercase()
    )
}

fn up(device: &str) -> String {
    format!("warden/v1/devices/{device}/up")
}

fn pendant(msg_id: &str) -> String {
    format!(r#"{{"v":1,"msg_id":"{msg_id}","alarm":{{"kind":"pendant"}}}}"#)
}

// ---------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------

/// Contact ID accounts registered with `wardend device add` (serial panels).
const PANEL: &str = "1234";
const PANEL_2: &str = "2345";
/// An MQTT unit whose id looks like a Contact ID account.
const NUMERIC_MQTT: &str = "5678";
/// An MQTT receiver bridge that passes Contact ID messages through.
const BRIDGE: &str = "bridge-1";

#[allow(clippy::too_many_lines)]
fn catalogue() -> Vec<Case> {
    use Dev::{Account, NoDevice};
    use Pri::{AtLeastUrgent, Is};
    let lc = Is("life_critical");
    let mut noise_then_frame = b"\x00\xff\x80~".to_vec();
    noise_then_frame.extend(cid_frame(PANEL_2, 'E', "101", 1));
    let mut oversized = vec![b'9'; 600];
    oversized.push(DC4);
    let nested = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let poison = format!(
        r#"{{"v":1,"msg_id":"poison-1","contact_id":{{"message":"{}","receiver":"{}"}}}}"#,
        cid_message(PANEL, 1, "101", 9),
        "€".repeat(150)
    );
    let big = format!(
        r#"{{"v":1,"msg_id":"big-1","alarm":{{"kind":"pendant","zone":"{}"}}}}"#,
        "z".repeat(6000)
    );
    let over_broker = format!(
        r#"{{"v":1,"msg_id":"huge-1","alarm":{{"kind":"pendant","zone":"{}"}}}}"#,
        "z".repeat(BROKER_LIMIT + 4000)
    );
    let mut bad_checksum = cid_message("3010", 1, "101", 1);
    bad_checksum.pop();
    bad_checksum.push(if bad_checksum.ends_with('1') {
        '2'
    } else {
        '1'
    });
    vec![
        // --- serial -------------------------------------------------------------------
        serial("serial: line noise ending in DC4", b"garbage\x14".to_vec())
            .reply(NAK)
            .quarantined("bad_frame"),
        serial("serial: line noise run into the next pendant frame", noise_then_frame)
            .reply(NAK)
            .quarantined("bad_frame"),
        serial("serial: an empty frame (DC4 alone)", vec![DC4])
            .reply(NAK)
            .quarantined("bad_frame"),
        serial(
            "serial: bytes >= 0x80 in a receiver-internal frame (protocol 0)",
            b"0011[#1234|Nri1/\xff\xfe]\x14".to_vec(),
        )
        .reply(NAK)
        .quarantined("bad_frame"),
        serial(
            "serial: a NUL byte inside a Contact ID frame",
            b"5011 181234E101\x0001001\x14".to_vec(),
        )
        .reply(NAK)
        .quarantined("bad_frame"),
        serial(
            "serial: a byte >= 0x80 in the account",
            b"5011 18\xe9234E10101001\x14".to_vec(),
        )
        .reply(NAK)
        .quarantined("bad_frame"),
        serial("serial: an oversized frame (600 bytes before DC4)", oversized)
            .reply(NAK)
            .quarantined("oversized"),
        serial(
            "serial: a frame of an undecoded protocol (4/2)",
            b"4011 1234 11\x14".to_vec(),
        )
        .reply(ACK)
        .quarantined("unsupported_protocol")
        .stored(NoDevice)
        .incident(AtLeastUrgent, None, NoDevice),
        serial(
            "serial: Contact ID with hex digits B-F in the code",
            cid_frame("3001", 'E', "1B1", 1),
        )
        .reply(ACK)
        .stored(Account("3001"))
        .incident(AtLeastUrgent, None, Account("3001")),
        serial(
            "serial: a bad qualifier (X) in a pendant frame",
            cid_frame("3002", 'X', "101", 1),
        )
        .reply(NAK)
        .quarantined("bad_frame"),
        serial(
            "serial: pendant (101) from an unregistered account",
            cid_frame("9999", 'E', "101", 1),
        )
        .reply(ACK)
        .quarantined("unknown_account")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice)
        .audit("unregistered unit 9999"),
        serial(
            "serial: pendant from an unregistered 10-digit account (protocol Q)",
            b"Q011 580000009991E10101001\x14".to_vec(),
        )
        .reply(ACK)
        .quarantined("unknown_account")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice)
        .audit("unregistered unit 0000009991"),
        serial(
            "serial: multi-event SIA block (low battery + medical)",
            b"S011[#3003|Nri1/YT01/MA02]\x14".to_vec(),
        )
        .reply(ACK)
        .stored(Account("3003"))
        .incident(Is("technical"), Some("low_battery"), Account("3003"))
        .incident(lc, Some("medical"), Account("3003")),
        serial(
            "serial: SIA fire alarm from an unregistered account",
            b"S011[#9992|Nri1/FA01]\x14".to_vec(),
        )
        .reply(ACK)
        .quarantined("unknown_account")
        .stored(NoDevice)
        .incident(lc, Some("fire"), NoDevice)
        .audit("unregistered unit 9992"),
        serial(
            "serial: a SIA event code no table knows (ZZ)",
            b"S011[#3004|Nri1/ZZ01]\x14".to_vec(),
        )
        .reply(ACK)
        .stored(Account("3004"))
        .incident(AtLeastUrgent, None, Account("3004")),
        serial(
            "serial: a Contact ID code outside the table (999)",
            cid_frame("3005", 'E', "999", 1),
        )
        .reply(ACK)
        .stored(Account("3005"))
        .incident(AtLeastUrgent, None, Account("3005")),
        serial(
            "serial: heartbeat from an unknown receiver number (99)",
            b"1991           @    \x14".to_vec(),
        )
        .reply(ACK)
        .stored(NoDevice)
        .any_record(),
        serial(
            "serial: a Contact ID restore without an alarm",
            cid_frame("3006", 'R', "101", 1),
        )
        .reply(ACK)
        .stored(Account("3006"))
        .any_record(),
        serial(
            "serial: pendant frame naming an MQTT unit's account (protocol mismatch)",
            cid_frame(NUMERIC_MQTT, 'E', "101", 1),
        )
        .reply(ACK)
        .quarantined("protocol_mismatch")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice),
        // --- MQTT ---------------------------------------------------------------------
        mqtt("mqtt: invalid JSON", up("m01"), b"{not json".to_vec())
            .unreadable("bad_json", Account("m01")),
        mqtt("mqtt: bytes that are not UTF-8", up("m02"), b"\xff\xfe\xfd".to_vec())
            .unreadable("bad_json", Account("m02")),
        mqtt("mqtt: an empty payload", up("m03"), Vec::new())
            .unreadable("bad_json", Account("m03")),
        mqtt("mqtt: JSON that is not an object", up("m04"), b"[1,2,3]".to_vec())
            .unreadable("schema", Account("m04")),
        mqtt("mqtt: JSON nested 2000 deep (under the size limit)", up("m05"), nested)
            .unreadable("bad_json", Account("m05")),
        mqtt(
            "mqtt: unknown schema version in the payload (v 2)",
            up("m06"),
            r#"{"v":2,"msg_id":"a1","alarm":{"kind":"pendant"}}"#,
        )
        .unreadable("unknown_version", Account("m06")),
        mqtt(
            "mqtt: unknown schema version in the topic (v2), pendant payload",
            "warden/v2/devices/m07/up",
            pendant("a1"),
        )
        .unreadable("unknown_version", Account("m07")),
        mqtt(
            "mqtt: pendant with no msg_id",
            up("m08"),
            r#"{"v":1,"alarm":{"kind":"pendant"}}"#,
        )
        .quarantined_evidence("schema")
        .incident(lc, Some("pendant"), Account("m08")),
        mqtt(
            "mqtt: pendant with an unknown top-level field",
            up("m09"),
            r#"{"v":1,"msg_id":"a1","alarm":{"kind":"pendant"},"fw":"2.1"}"#,
        )
        .quarantined_evidence("schema")
        .incident(lc, Some("pendant"), Account("m09")),
        mqtt(
            "mqtt: payload over the parser's 4096-byte limit (6 kB, under the broker's)",
            up("m10"),
            big,
        )
        .unreadable("oversized", Account("m10")),
        mqtt(
            "mqtt: poison: contact_id pass-through with \"receiver\":\"€\"x150",
            up(BRIDGE),
            poison,
        )
        .stored(Dev::Any)
        .incident(lc, Some("pendant"), Dev::Any),
        mqtt(
            "mqtt: NUL in the zone of a pendant alarm",
            up("m11"),
            r#"{"v":1,"msg_id":"a1","alarm":{"kind":"pendant","zone":"a\u0000b"}}"#,
        )
        .quarantined("db_rejected")
        .stored(Account("m11"))
        .incident(lc, Some("pendant"), Account("m11")),
        mqtt(
            "mqtt: NUL in the msg_id of a pendant alarm",
            up("m12"),
            r#"{"v":1,"msg_id":"a\u0000b","alarm":{"kind":"pendant"}}"#,
        )
        .quarantined_evidence("schema")
        .incident(lc, Some("pendant"), Account("m12")),
        mqtt(
            "mqtt: NUL in sent_at of a pendant alarm",
            up("m13"),
            r#"{"v":1,"msg_id":"a1","sent_at":"2026-01-01T00:00:00Z\u0000","alarm":{"kind":"pendant"}}"#,
        )
        .quarantined("db_rejected")
        .incident(lc, Some("pendant"), Account("m13")),
        mqtt(
            "mqtt: NUL in the alarm kind",
            up("m14"),
            r#"{"v":1,"msg_id":"a1","alarm":{"kind":"pend\u0000ant"}}"#,
        )
        .unreadable("schema", Account("m14")),
        mqtt(
            "mqtt: NUL in a pass-through's receiver and line fields",
            up(BRIDGE),
            format!(
                r#"{{"v":1,"msg_id":"nul-rx","contact_id":{{"message":"{}","receiver":"0\u0000","line":"\u00001"}}}}"#,
                cid_message("3007", 1, "101", 1)
            ),
        )
        .quarantined("db_rejected")
        .incident(lc, Some("pendant"), Account("3007")),
        mqtt(
            "mqtt: NUL inside a pass-through's Contact ID message",
            up("m15"),
            r#"{"v":1,"msg_id":"a1","contact_id":{"message":"123418110\u0000101001"}}"#,
        )
        .unreadable("bad_contact_id", Account("m15")),
        mqtt(
            "mqtt: pass-through with a bad Contact ID checksum",
            up("m16"),
            format!(r#"{{"v":1,"msg_id":"a1","contact_id":{{"message":"{bad_checksum}"}}}}"#),
        )
        .unreadable("bad_contact_id", Account("m16")),
        mqtt(
            "mqtt: pass-through naming an unregistered account (101)",
            up(BRIDGE),
            format!(
                r#"{{"v":1,"msg_id":"unreg","contact_id":{{"message":"{}"}}}}"#,
                cid_message("9993", 1, "101", 1)
            ),
        )
        .quarantined("unknown_account")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice)
        .audit("unregistered unit 9993"),
        mqtt(
            "mqtt: topic naming a serial panel's account (pendant)",
            up(PANEL),
            pendant("mm-1"),
        )
        .quarantined("protocol_mismatch")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice),
        mqtt(
            "mqtt: heartbeat on a serial panel's account (supervision not fed)",
            up(PANEL),
            r#"{"v":1,"msg_id":"mm-2","heartbeat":{}}"#,
        )
        .quarantined("protocol_mismatch")
        .stored(NoDevice),
        mqtt(
            "mqtt: topic with an empty device id (pendant payload)",
            "warden/v1/devices//up",
            pendant("e-1"),
        )
        .quarantined_evidence("bad_topic")
        .any_record()
        .incident(AtLeastUrgent, None, Dev::Any),
        mqtt(
            "mqtt: topic with a wildcard-like device id (fullwidth +)",
            "warden/v1/devices/\u{ff0b}/up",
            pendant("w-1"),
        )
        .quarantined_evidence("bad_topic")
        .any_record()
        .incident(AtLeastUrgent, None, Dev::Any),
        mqtt(
            "mqtt: presence with a bad value",
            up("m17"),
            r#"{"v":1,"presence":"maybe"}"#,
        )
        .unreadable("schema", Account("m17")),
        mqtt(
            "mqtt: pendant restore without an alarm",
            up("m18"),
            r#"{"v":1,"msg_id":"r-1","alarm":{"kind":"pendant","restore":true}}"#,
        )
        .stored(Account("m18"))
        .any_record(),
        mqtt(
            "mqtt: pendant from an unregistered unit",
            up("ghost-1"),
            pendant("g-1"),
        )
        .quarantined("unknown_account")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice)
        .audit("unregistered unit ghost-1"),
        mqtt(
            "mqtt: heartbeat from an unregistered unit",
            up("ghost-2"),
            r#"{"v":1,"msg_id":"g-2","heartbeat":{}}"#,
        )
        .quarantined("unknown_account")
        .stored(NoDevice),
        mqtt(
            "mqtt: an unknown alarm kind",
            up("m19"),
            r#"{"v":1,"msg_id":"a1","alarm":{"kind":"teleport"}}"#,
        )
        .unreadable("schema", Account("m19")),
        mqtt(
            "mqtt: two bodies in one payload (alarm + heartbeat)",
            up("m20"),
            r#"{"v":1,"msg_id":"a1","alarm":{"kind":"pendant"},"heartbeat":{}}"#,
        )
        .unreadable("schema", Account("m20")),
        mqtt(
            "mqtt: message over Mosquitto's message_size_limit",
            up("m21"),
            over_broker,
        )
        .dropped_by_broker(),
    ]
}

// ---------------------------------------------------------------------------------------
// The rig
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Seen {
    reply: Option<u8>,
    /// (id, raw, device account or "")
    signals: Vec<(String, Vec<u8>, String)>,
    /// (reason code, raw)
    quarantine: Vec<(String, Vec<u8>)>,
    /// (id, priority, kind, device account or "", open, offered)
    incidents: Vec<(i64, String, String, String, bool, bool)>,
    audits: Vec<String>,
    metric_delta: f64,
}

impl Seen {
    fn observed(&self, path: Path) -> String {
        let mut out = String::new();
        if path == Path::Serial {
            out.push_str(reply_name(self.reply));
            out.push_str(", ");
        }
        for (_, p, k, d, open, offered) in &self.incidents {
            let _ = write!(
                out,
                "incident {p} {k}{}{}{}, ",
                if d.is_empty() {
                    " no-device".to_owned()
                } else {
                    format!(" dev={d}")
                },
                if *open { "" } else { " CLOSED" },
                if *offered { "" } else { " NOT-OFFERED" },
            );
        }
        if self.incidents.is_empty() {
            out.push_str("no incident, ");
        }
        if self.quarantine.is_empty() {
            out.push_str("no quarantine, ");
        }
        for (code, _) in &self.quarantine {
            let _ = write!(out, "quarantine {code}, ");
        }
        let _ = write!(
            out,
            "{} signal(s), metric +{}",
            self.signals.len(),
            self.metric_delta
        );
        out
    }
}

struct Rig {
    db: TestDb,
    broker: Mosquitto,
    warden: Wardend,
    line: RawLine,
    probes: u16,
    dir: tempfile::TempDir,
    _pty: PtyPair,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The ids the engine gives each event of a stored signal: the first carries the signal's
/// id, the i-th its id with the low bits xor i.
fn event_ids(signal: &str) -> Vec<String> {
    let hex: String = signal.chars().filter(|c| *c != '-').collect();
    let Ok(base) = u128::from_str_radix(&hex, 16) else {
        return vec![signal.to_owned()];
    };
    (0..4u128)
        .map(|i| {
            let h = format!("{:032x}", base ^ i);
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        })
        .collect()
}

fn sql_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Rig {
    fn start() -> Self {
        let db = TestDb::create("e2e_bad_input");
        let broker = Mosquitto::start(&format!("message_size_limit {BROKER_LIMIT}"));
        let pty = PtyPair::start();
        let config = format!(
            "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-bad-input\"\n\
             [[serial]]\nname = \"rx1\"\npath = \"{}\"\nheartbeat_window = \"10m\"\n",
            db.url,
            broker.port,
            pty.warden.display()
        );
        let warden = Wardend::start(&config);
        for (account, protocol) in [
            (PANEL, "contact_id"),
            (PANEL_2, "contact_id"),
            (NUMERIC_MQTT, "mqtt"),
            (BRIDGE, "mqtt"),
        ] {
            let out = warden.cli(&[
                "device",
                "add",
                "--account",
                account,
                "--protocol",
                protocol,
                "--test-interval",
                "24h",
            ]);
            assert!(
                out.status.success(),
                "device add {account}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The units each case and each probe speaks for, registered in one statement.
        db.query(
            "INSERT INTO devices (account, protocol) \
             SELECT (3000 + n)::text, 'contact_id' FROM generate_series(1, 20) n \
             UNION ALL SELECT (7000 + n)::text, 'contact_id' FROM generate_series(1, 99) n \
             UNION ALL SELECT 'm' || lpad(n::text, 2, '0'), 'mqtt' FROM generate_series(1, 40) n \
             UNION ALL SELECT 'probe-' || n, 'mqtt' FROM generate_series(1, 99) n",
        );
        warden.wait_mqtt_up(broker.port);
        let line = RawLine::open(&pty);
        Self {
            db,
            broker,
            warden,
            line,
            probes: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            _pty: pty,
        }
    }

    fn now(&self) -> String {
        self.db.query("SELECT clock_timestamp()")
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let file = self.dir.path().join("payload");
        std::fs::write(&file, payload).map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.broker.port.to_string()])
            .args(["-q", "1", "-t", topic]);
        if payload.is_empty() {
            cmd.arg("-n");
        } else {
            cmd.arg("-f").arg(&file);
        }
        let out = cmd.output().map_err(|e| format!("mosquitto_pub: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mosquitto_pub failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Signals (not Warden's own) and quarantine rows since `t0`, and how many of those
    /// signals are not yet triaged.
    fn rows_since(&self, t0: &str) -> (i64, i64, i64) {
        let out = self.db.query(&format!(
            "SELECT (SELECT count(*) FROM signals WHERE received_at >= '{t0}' AND source <> 'internal'), \
                    (SELECT count(*) FROM quarantine WHERE received_at >= '{t0}'), \
                    (SELECT count(*) FROM signals s WHERE received_at >= '{t0}' AND source <> 'internal' \
                       AND NOT EXISTS (SELECT 1 FROM triaged t WHERE t.signal_id = s.id))"
        ));
        let n: Vec<i64> = out.split('|').filter_map(|v| v.parse().ok()).collect();
        (
            n.first().copied().unwrap_or(0),
            n.get(1).copied().unwrap_or(0),
            n.get(2).copied().unwrap_or(0),
        )
    }

    /// Waits until the case's input is stored and triaged and nothing more arrives.
    fn settle(&self, t0: &str) {
        let start = Instant::now();
        let mut last = (-1, -1, -1);
        let mut stable = 0;
        while start.elapsed() < SETTLE_DEADLINE {
            let now = self.rows_since(t0);
            if now == last && now.0 + now.1 > 0 && now.2 == 0 {
                stable += 1;
                if stable >= 3 {
                    return;
                }
            } else {
                stable = 0;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn observe(&self, t0: &str) -> Seen {
        let mut seen = Seen::default();
        for row in self
            .db
            .query(&format!(
                "SELECT s.id, encode(s.raw, 'hex'), coalesce(d.account, '') FROM signals s \
                 LEFT JOIN devices d ON d.id = s.device_id \
                 WHERE s.received_at >= '{t0}' AND s.source <> 'internal' ORDER BY s.received_at"
            ))
            .lines()
        {
            let f: Vec<&str> = row.split('|').collect();
            if let [id, raw, acct] = f[..] {
                seen.signals
                    .push((id.to_owned(), unhex(raw), acct.to_owned()));
            }
        }
        for row in self
            .db
            .query(&format!(
                "SELECT reason_code, encode(raw, 'hex') FROM quarantine \
                 WHERE received_at >= '{t0}' ORDER BY received_at"
            ))
            .lines()
        {
            if let Some((code, raw)) = row.split_once('|') {
                seen.quarantine.push((code.to_owned(), unhex(raw)));
            }
        }
        let ids: Vec<String> = seen
            .signals
            .iter()
            .flat_map(|(id, _, _)| event_ids(id))
            .collect();
        if !ids.is_empty() {
            let list = sql_list(&ids);
            for row in self
                .db
                .query(&format!(
                    "SELECT i.id, i.priority, i.kind, coalesce(d.account, ''), i.resolved_at IS NULL, \
                            i.offered_at IS NOT NULL FROM incidents i \
                     LEFT JOIN devices d ON d.id = i.device_id \
                     WHERE i.id IN (SELECT incident_id FROM incident_events WHERE effect->>'signal' IN ({list})) \
                     ORDER BY i.id"
                ))
                .lines()
            {
                let f: Vec<&str> = row.split('|').collect();
                if let [id, p, k, d, open, offered] = f[..] {
                    seen.incidents.push((
                        id.parse().unwrap_or(-1),
                        p.to_owned(),
                        k.to_owned(),
                        d.to_owned(),
                        open == "t",
                        offered == "t",
                    ));
                }
            }
            let like = ids
                .iter()
                .map(|id| format!("effect->>'detail' LIKE '%{id}%'"))
                .collect::<Vec<_>>()
                .join(" OR ");
            seen.audits = self
                .db
                .query(&format!(
                    "SELECT effect->>'detail' FROM incident_events WHERE kind = 'audit' AND ({like})"
                ))
                .lines()
                .map(str::to_owned)
                .collect();
        }
        seen
    }

    /// (d): the process runs, answers, and its engine is not stopped.
    fn health(&mut self) -> Result<(), String> {
        if !self.warden.is_running() {
            return Err("wardend exited".into());
        }
        match http_get(self.warden.admin, "/healthz") {
            Some((200, _)) => {}
            other => return Err(format!("/healthz answered {other:?}")),
        }
        match http_get(self.warden.admin, "/readyz") {
            Some((_, body)) if body.contains("triage engine") => {
                return Err(format!("/readyz: {}", body.trim()));
            }
            Some(_) => {}
            None => return Err("/readyz did not answer".into()),
        }
        let running = self.warden.metric("warden_engine_running");
        if running < 0.5 {
            return Err(format!("warden_engine_running {running}"));
        }
        Ok(())
    }

    /// (e): a fresh pendant press on `path` becomes an offered life-critical incident within
    /// [`PROBE_DEADLINE`]. Serial presses are resent on NAK, as a receiver would.
    fn probe(&mut self, path: Path) -> Result<Duration, String> {
        self.probes += 1;
        let n = self.probes;
        let start = Instant::now();
        let account = match path {
            Path::Serial => {
                let account = format!("{}", 7000 + n);
                let frame = cid_frame(&account, 'E', "101", n);
                self.line.discard_replies();
                let mut acked = false;
                for _ in 0..3 {
                    self.line.send(&frame);
                    match self.line.reply(Duration::from_secs(2)) {
                        Some(ACK) => {
                            acked = true;
                            break;
                        }
                        Some(NAK) => {}
                        other => return Err(format!("pendant frame answered {other:?}")),
                    }
                }
                if !acked {
                    return Err("pendant frame NAKed three times".into());
                }
                account
            }
            Path::Mqtt => {
                let account = format!("probe-{n}");
                self.publish(&up(&account), pendant(&format!("p-{n}")).as_bytes())?;
                account
            }
        };
        let sql = format!(
            "SELECT count(*) FROM incidents i JOIN devices d ON d.id = i.device_id \
             WHERE d.account = '{account}' AND i.priority = 'life_critical' \
             AND i.offered_at IS NOT NULL AND i.resolved_at IS NULL"
        );
        let left = PROBE_DEADLINE.saturating_sub(start.elapsed());
        if wait_until(left, || self.db.count(&sql) == 1) {
            Ok(start.elapsed())
        } else {
            Err(format!(
                "pendant press of {account} not offered within {PROBE_DEADLINE:?}"
            ))
        }
    }

    /// Runs one case and returns (observed, failed checks).
    fn run(&mut self, case: &Case) -> (String, Vec<String>) {
        let mut failed = Vec::new();
        let t0 = self.now();
        let metric = case.metric();
        let before = self.warden.metric(&metric);
        let received_sel = format!(
            "warden_signals_received_total{{source=\"{}\"}}",
            case.path.source()
        );
        let rejected_sel = format!(
            "warden_signals_rejected_total{{source=\"{}\"",
            case.path.source()
        );
        let (recv_before, rej_before) = (
            self.warden.metric(&received_sel),
            self.warden.metric(&rejected_sel),
        );
        let mut reply = None;
        match case.path {
            Path::Serial => {
                self.line.discard_replies();
                self.line.send(&case.bytes);
                reply = self.line.reply(Duration::from_secs(5));
            }
            Path::Mqtt => {
                if let Err(e) = self.publish(&case.topic, &case.bytes) {
                    failed.push(e);
                }
            }
        }
        if case.dropped_by_broker {
            std::thread::sleep(Duration::from_millis(1500));
        } else {
            self.settle(&t0);
        }
        let mut seen = self.observe(&t0);
        seen.reply = reply;
        seen.metric_delta = self.warden.metric(&metric) - before;

        if case.dropped_by_broker {
            if !seen.signals.is_empty() || !seen.quarantine.is_empty() {
                failed.push("Warden stored a message the broker should have dropped".into());
            }
            let moved = (self.warden.metric(&received_sel) - recv_before)
                + (self.warden.metric(&rejected_sel) - rej_before);
            if moved != 0.0 {
                failed.push(format!("signal counters moved by {moved}"));
            }
        } else {
            check(case, &seen, &mut failed);
        }
        if let Err(e) = self.health() {
            failed.push(format!("(d) {e}"));
        }
        let observed = seen.observed(case.path);
        match self.probe(case.path) {
            Ok(d) => (format!("{observed}; next pendant {d:.0?}"), failed),
            Err(e) => {
                failed.push(format!("(e) {e}"));
                (observed, failed)
            }
        }
    }
}

/// (a), (b), (c) for one case.
fn check(case: &Case, seen: &Seen, failed: &mut Vec<String>) {
    if let Some(want) = case.reply
        && seen.reply != Some(want)
    {
        failed.push(format!(
            "receiver got {} instead of {}",
            reply_name(seen.reply),
            reply_name(Some(want))
        ));
    }
    // (a) every expected incident, each matched by a distinct open, offered incident.
    let mut used = Vec::new();
    for w in &case.incidents {
        let hit = seen.incidents.iter().find(|(id, p, k, d, open, offered)| {
            !used.contains(id)
                && *open
                && *offered
                && w.pri.admits(p)
                && w.kind.is_none_or(|want| want == k)
                && w.dev.admits(d)
        });
        match hit {
            Some((id, ..)) => used.push(*id),
            None => failed.push(format!(
                "(a) no open, offered incident {}{}{}",
                w.pri,
                w.kind.map(|k| format!(" {k}")).unwrap_or_default(),
                w.dev
            )),
        }
    }
    if case.any_record && seen.incidents.is_empty() && seen.quarantine.is_empty() {
        failed.push("(a) neither an incident nor a quarantine row records it".into());
    }
    // (b) the evidence, raw bytes exact.
    if let Some((code, raw)) = &case.quarantine {
        let kept = seen.quarantine.iter().any(|(c, r)| c == code && r == raw);
        if !kept {
            let near = seen
                .quarantine
                .iter()
                .map(|(c, r)| format!("{c} ({} bytes)", r.len()))
                .collect::<Vec<_>>();
            failed.push(format!(
                "(b) no quarantine row {code} with the {} raw bytes exactly (rows: {near:?})",
                raw.len()
            ));
        }
    }
    if let Some((raw, dev)) = &case.stored {
        let kept = seen
            .signals
            .iter()
            .any(|(_, r, d)| r == raw && dev.admits(d));
        if !kept {
            failed.push(format!(
                "(b) no signal kept with the {} raw bytes exactly{dev}",
                raw.len()
            ));
        }
    }
    if !case.incidents.is_empty() && case.quarantine.is_none() && seen.audits.is_empty() {
        failed.push("(b) no audit entry of an incident names the signal".into());
    }
    if let Some(text) = &case.audit
        && !seen.audits.iter().any(|a| a.contains(text.as_str()))
    {
        failed.push(format!("(b) no audit entry says {text:?}"));
    }
    // (c)
    if seen.metric_delta < 1.0 {
        failed.push(format!("(c) {} did not move", case.metric()));
    }
}

#[test]
fn every_bad_input_in_the_catalogue_is_kept_counted_and_survived_and_the_next_pendant_still_reaches_the_queue()
 {
    let started = Instant::now();
    let mut rig = Rig::start();
    let cases = catalogue();
    assert!(cases.len() >= 30, "the catalogue has {} cases", cases.len());
    let mut table = Vec::new();
    let mut poison_signal = None;
    for case in &cases {
        let t0 = rig.now();
        let (observed, failed) = rig.run(case);
        if case.name.starts_with("mqtt: poison") {
            let raw = case.bytes.clone();
            poison_signal = rig
                .observe(&t0)
                .signals
                .into_iter()
                .find(|(_, r, _)| *r == raw)
                .map(|(id, _, _)| id);
        }
        table.push((case.name.to_owned(), case.expected(), observed, failed));
    }
    table.push(replay_after_restart(&mut rig, poison_signal.as_deref()));

    eprintln!("\nbad-input catalogue ({} cases):", table.len());
    for (i, (name, expected, observed, failed)) in table.iter().enumerate() {
        let verdict = if failed.is_empty() { "ok  " } else { "FAIL" };
        eprintln!(
            "{verdict} {:>2}. {name}\n          expected: {expected}\n          observed: {observed}",
            i + 1
        );
        for f in failed {
            eprintln!("          ✗ {f}");
        }
    }
    eprintln!("run time: {:.1?}", started.elapsed());
    let failures: Vec<String> = table
        .iter()
        .filter(|(_, _, _, f)| !f.is_empty())
        .map(|(name, _, _, f)| format!("{name}: {}", f.join("; ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases did not give the safe result:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

/// The poison message once more, through a restart: stop the daemon, mark the stored poison
/// signal untriaged (as if the process had died between its commit and its triage), publish
/// a second poison message while the daemon is down (the broker keeps it for the session),
/// and start again. Replay and the session's redelivery must not stop the engine.
fn replay_after_restart(
    rig: &mut Rig,
    poison: Option<&str>,
) -> (String, String, String, Vec<String>) {
    let name = "restart: poison replayed from signals and redelivered by the broker".to_owned();
    let expected =
        "engine running after replay; both poison signals triaged; next pendants offered"
            .to_owned();
    let mut failed = Vec::new();
    let Some(poison) = poison else {
        failed.push("the poison case stored no signal to replay".into());
        return (name, expected, String::new(), failed);
    };
    let code = rig.warden.terminate();
    if code != Some(0) {
        failed.push(format!("orderly stop exited {code:?}"));
    }
    rig.db
        .query(&format!("DELETE FROM triaged WHERE signal_id = '{poison}'"));
    let second = format!(
        r#"{{"v":1,"msg_id":"poison-2","contact_id":{{"message":"{}","receiver":"{}","line":"{}"}}}}"#,
        cid_message(PANEL, 1, "101", 10),
        "€".repeat(150),
        "ü".repeat(200)
    );
    if let Err(e) = rig.publish(&up(BRIDGE), second.as_bytes()) {
        failed.push(e);
    }
    let restarted = Instant::now();
    rig.warden.restart();
    rig.warden.wait_mqtt_up(rig.broker.port);
    let done = wait_until(Duration::from_secs(10), || {
        rig.db.count(&format!(
            "SELECT count(*) FROM triaged WHERE signal_id = '{poison}'"
        )) == 1
            && rig.db.count(
                "SELECT count(*) FROM signals s JOIN triaged t ON t.signal_id = s.id \
                 WHERE s.dedupe_key = 'mqtt:bridge-1:poison-2'",
            ) == 1
    });
    if !done {
        failed.push("the replayed and the redelivered poison were not both triaged in 10 s".into());
    }
    let replayed = rig.warden.metric("warden_engine_replayed_signals_total");
    if replayed < 1.0 {
        failed.push(format!(
            "warden_engine_replayed_signals_total is {replayed}: nothing was replayed"
        ));
    }
    if let Err(e) = rig.health() {
        failed.push(format!("(d) {e}"));
    }
    let mut observed = format!("ready in {:.1?}, replayed {replayed}", restarted.elapsed());
    for path in [Path::Mqtt, Path::Serial] {
        match rig.probe(path) {
            Ok(d) => {
                let _ = write!(observed, ", next {} pendant {d:.0?}", path.source());
            }
            Err(e) => failed.push(format!("(e) {e}")),
        }
    }
    (name, expected, observed, failed)
}
