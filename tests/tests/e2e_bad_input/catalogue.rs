//! The catalogue: each bad input, what it must cause, and the helpers that build its bytes.

pub(crate) const ACK: u8 = 0x06;
pub(crate) const NAK: u8 = 0x15;
pub(crate) const DC4: u8 = 0x14;

/// Mosquitto's payload limit in this test: above the parser's 4 096 bytes, so the parser's
/// own limit can be tested through the broker, and below the broker-limit case's payload.
pub(crate) const BROKER_LIMIT: usize = 16_384;

// ---------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) enum Pri {
    Is(&'static str),
    /// Urgent or life-critical: unreadable input is never lower than urgent.
    AtLeastUrgent,
}

impl Pri {
    pub(crate) fn admits(self, p: &str) -> bool {
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
pub(crate) enum Dev {
    /// Not checked.
    Any,
    /// No device (unregistered unit, protocol mismatch, a link-level signal).
    NoDevice,
    /// The device registered under this account.
    Account(&'static str),
}

impl Dev {
    pub(crate) fn admits(self, account: &str) -> bool {
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
pub(crate) struct WantIncident {
    pub(crate) pri: Pri,
    pub(crate) kind: Option<&'static str>,
    pub(crate) dev: Dev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Serial,
    Mqtt,
}

impl Path {
    pub(crate) fn source(self) -> &'static str {
        match self {
            Path::Serial => "serial",
            Path::Mqtt => "mqtt",
        }
    }
}

/// One bad input and everything it must cause.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) path: Path,
    /// MQTT only.
    pub(crate) topic: String,
    pub(crate) bytes: Vec<u8>,
    /// Serial: the answer the receiver must get.
    pub(crate) reply: Option<u8>,
    pub(crate) incidents: Vec<WantIncident>,
    /// Reason code and the exact bytes kept.
    pub(crate) quarantine: Option<(&'static str, Vec<u8>)>,
    /// The signal stored with exactly these bytes, attributed so.
    pub(crate) stored: Option<(Vec<u8>, Dev)>,
    /// Text an audit entry of the case's incidents must contain.
    pub(crate) audit: Option<String>,
    /// Some incident or quarantine row must exist, whatever it is (input the product has no
    /// specific rule for, but which must not vanish without a record).
    pub(crate) any_record: bool,
    /// The broker drops it: Warden must see nothing and count nothing.
    pub(crate) dropped_by_broker: bool,
}

pub(crate) fn serial(name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
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

pub(crate) fn mqtt(
    name: &'static str,
    topic: impl Into<String>,
    payload: impl Into<Vec<u8>>,
) -> Case {
    Case {
        path: Path::Mqtt,
        topic: topic.into(),
        ..serial(name, payload)
    }
}

impl Case {
    pub(crate) fn reply(mut self, b: u8) -> Self {
        self.reply = Some(b);
        self
    }
    pub(crate) fn incident(mut self, pri: Pri, kind: Option<&'static str>, dev: Dev) -> Self {
        self.incidents.push(WantIncident { pri, kind, dev });
        self
    }
    /// Quarantined with this reason, raw bytes exactly the input.
    pub(crate) fn quarantined(self, code: &'static str) -> Self {
        let raw = self.bytes.clone();
        self.quarantined_as(code, raw)
    }
    /// Quarantined with this reason, raw bytes exactly `raw`.
    pub(crate) fn quarantined_as(mut self, code: &'static str, raw: Vec<u8>) -> Self {
        self.quarantine = Some((code, raw));
        self
    }
    /// MQTT evidence form for unreadable input and bad topics: `topic\npayload`.
    pub(crate) fn evidence(&self) -> Vec<u8> {
        let mut v = self.topic.as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(&self.bytes);
        v
    }
    /// Quarantined with this reason as `topic\npayload` (MQTT).
    pub(crate) fn quarantined_evidence(self, code: &'static str) -> Self {
        let ev = self.evidence();
        self.quarantined_as(code, ev)
    }
    /// Stored as a signal, raw bytes exactly the input.
    pub(crate) fn stored(mut self, dev: Dev) -> Self {
        self.stored = Some((self.bytes.clone(), dev));
        self
    }
    pub(crate) fn stored_as(mut self, raw: Vec<u8>, dev: Dev) -> Self {
        self.stored = Some((raw, dev));
        self
    }
    /// Unreadable MQTT input from a device topic: quarantined and stored as `topic\npayload`
    /// and triaged at least urgent for that device.
    pub(crate) fn unreadable(self, code: &'static str, dev: Dev) -> Self {
        let ev = self.evidence();
        self.quarantined_as(code, ev.clone())
            .stored_as(ev, dev)
            .incident(Pri::AtLeastUrgent, None, dev)
    }
    pub(crate) fn audit(mut self, text: impl Into<String>) -> Self {
        self.audit = Some(text.into());
        self
    }
    pub(crate) fn any_record(mut self) -> Self {
        self.any_record = true;
        self
    }
    pub(crate) fn dropped_by_broker(mut self) -> Self {
        self.dropped_by_broker = true;
        self
    }

    /// The metric that must move.
    pub(crate) fn metric(&self) -> String {
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

    pub(crate) fn expected(&self) -> String {
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

pub(crate) fn reply_name(r: Option<u8>) -> &'static str {
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
pub(crate) fn cid_frame(account: &str, qualifier: char, code: &str, zone: u16) -> Vec<u8> {
    format!("5011 18{account}{qualifier}{code}01{zone:03}\u{14}").into_bytes()
}

/// A 16-digit Contact ID (DC-05) message `ACCT 18 Q XYZ GG CCC S` with a correct checksum.
pub(crate) fn cid_message(account: &str, qualifier: u8, code: &str, zone: u16) -> String {
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

pub(crate) fn up(device: &str) -> String {
    format!("warden/v1/devices/{device}/up")
}

pub(crate) fn pendant(msg_id: &str) -> String {
    format!(r#"{{"v":1,"msg_id":"{msg_id}","alarm":{{"kind":"pendant"}}}}"#)
}

// ---------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------

/// Contact ID accounts registered with `wardend device add` (serial panels).
pub(crate) const PANEL: &str = "1234";
pub(crate) const PANEL_2: &str = "2345";
/// An MQTT unit whose id looks like a Contact ID account.
pub(crate) const NUMERIC_MQTT: &str = "5678";
/// An MQTT receiver bridge that passes Contact ID messages through.
pub(crate) const BRIDGE: &str = "bridge-1";

#[allow(clippy::too_many_lines)]
pub(crate) fn catalogue() -> Vec<Case> {
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
            "serial: a Contact ID code outside the table (777)",
            cid_frame("3005", 'E', "777", 1),
        )
        .reply(ACK)
        .stored(Account("3005"))
        .incident(AtLeastUrgent, None, Account("3005")),
        serial(
            "serial: heartbeat from an unknown receiver number (99)",
            b"1991           @    \x14".to_vec(),
        )
        // A port is not configured with its receiver's number, so a heartbeat from any
        // receiver number is the link's proof of life: stored, ACKed, nothing to triage.
        .reply(ACK)
        .stored(NoDevice),
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
            "mqtt: a pass-through for a panel from a unit that is not its bridge",
            up("m39"),
            format!(
                r#"{{"v":1,"msg_id":"forged","contact_id":{{"message":"{}"}}}}"#,
                cid_message("3008", 1, "101", 1)
            ),
        )
        .quarantined("not_a_bridge")
        .stored(NoDevice)
        .incident(lc, Some("pendant"), NoDevice),
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
