//! What a stored signal means: the one typed contract between ingest (which writes it), the
//! store (which keeps it as `signals.decoded`), the engine (which triages it) and the
//! console (which shows it).
//!
//! Ingest builds a [`Decoded`] from a decoder's output ([`Decoded::from_surgard`],
//! [`Decoded::from_uplink`], [`Decoded::link`]); its serde form is what `signals.decoded`
//! holds, versioned by `v`. Every reader turns stored JSON back into a [`Decoded`] with
//! [`Decoded::from_stored`], which is total: JSON it cannot read (an older format, a row
//! edited by hand) becomes one [`SignalWhat::Unknown`] event, which still reaches an
//! operator at urgent priority. Nothing here panics on any input: every text taken from
//! outside is cut at a character boundary ([`clip`]).

use serde::{Deserialize, Serialize};
use warden_protocol::dc09::{Dc09Content, Dc09Frame};
use warden_protocol::mqtt::{Body, Uplink};
use warden_protocol::scaip::Mrq;
use warden_protocol::sia::SiaData;
use warden_protocol::surgard::SurGardFrame;
use warden_types::Qualifier;

use crate::signal::SignalWhat;

/// The version of [`Decoded`]'s stored form.
pub const DECODED_VERSION: u32 = 2;

/// Longest summary text kept from outside input, in bytes (cut at a character boundary).
pub const MAX_SUMMARY_BYTES: usize = 300;

/// A decoded signal as stored: every event it carries and why it needs a person's eye.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decoded {
    /// [`DECODED_VERSION`] when written.
    pub v: u32,
    /// Every event the signal carries, in order: a SIA block can carry several, and each
    /// is triaged. Never empty: a signal with nothing readable carries one
    /// [`SignalWhat::Unknown`].
    pub events: Vec<SignalWhat>,
    /// Why the signal could not be attributed to a registered device as sent, if so. Such a
    /// signal is stored and triaged all the same (an incident, never a silent drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// The decoder's full view of the bytes, for people to read. Never interpreted.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub frame: serde_json::Value,
}

/// Why a well-framed signal could not be attributed to the device it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Problem {
    /// No device is registered for the account it names.
    UnknownAccount {
        /// The account as sent.
        account: String,
    },
    /// A device is registered for the account, but for another protocol: the signal may not
    /// speak for it (an MQTT topic naming a serial panel's account, for example).
    ProtocolMismatch {
        /// The account as sent.
        account: String,
        /// The protocol the device is registered with.
        registered: String,
        /// The protocol the signal arrived in.
        arrived: String,
    },
    /// A Contact ID pass-through from an MQTT device that is not a bridge for that account.
    NotABridge {
        /// The account named in the Contact ID message.
        account: String,
        /// The MQTT device that published it.
        publisher: String,
    },
    /// The message broke its schema but its one body was readable, and is triaged as read
    /// (a pendant stays life-critical even when the firmware added a field).
    Malformed {
        /// What was wrong with it.
        detail: String,
    },
    /// Postgres refused the record as decoded; this is a stand-in with the raw bytes kept.
    DatabaseRefused {
        /// Postgres' message.
        message: String,
    },
}

impl Problem {
    /// A short, stable code (metrics label, quarantine reason code).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::UnknownAccount { .. } => "unknown_account",
            Problem::ProtocolMismatch { .. } => "protocol_mismatch",
            Problem::NotABridge { .. } => "not_a_bridge",
            Problem::Malformed { .. } => "schema",
            Problem::DatabaseRefused { .. } => "db_rejected",
        }
    }

    /// Every code [`Problem::code`] returns.
    pub const CODES: [&'static str; 5] = [
        "unknown_account",
        "protocol_mismatch",
        "not_a_bridge",
        "schema",
        "db_rejected",
    ];
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::UnknownAccount { account } => write!(f, "unregistered unit {account}"),
            Problem::ProtocolMismatch {
                account,
                registered,
                arrived,
            } => write!(
                f,
                "account {account} is registered for {registered}, signal arrived as {arrived}"
            ),
            Problem::NotABridge { account, publisher } => write!(
                f,
                "MQTT device {publisher} is not a bridge for account {account}"
            ),
            Problem::Malformed { detail } => write!(f, "malformed message ({detail})"),
            Problem::DatabaseRefused { message } => {
                write!(f, "database refused the decoded signal: {message}")
            }
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(&s[..end]);
    out.push('…');
    out
}

/// Every event of a SIA data block.
fn sia_events(data: &SiaData) -> Vec<SignalWhat> {
    data.events
        .iter()
        .map(|e| match e.code.as_bytes() {
            [a, c] => SignalWhat::Sia {
                code: [*a, *c],
                restore: false,
            },
            _ => unknown(&format!("SIA event code {:?}", e.code.as_str())),
        })
        .collect()
}

fn unknown(summary: &str) -> SignalWhat {
    SignalWhat::Unknown {
        raw_summary: clip(summary, MAX_SUMMARY_BYTES),
    }
}

/// A Contact ID event: the numeric code, or an unknown event naming the code when it holds
/// the hex digits B–F (no standard code does).
fn contact_id(code: &str, qualifier: Qualifier) -> SignalWhat {
    match code.parse::<u16>() {
        Ok(code) if code <= 999 => SignalWhat::ContactId { code, qualifier },
        _ => unknown(&format!(
            "Contact ID event code {code} ({qualifier}) is not a standard code"
        )),
    }
}

impl Decoded {
    /// A decoded signal with these events and the decoder's view for display.
    pub fn new(events: Vec<SignalWhat>, frame: serde_json::Value) -> Self {
        let events = if events.is_empty() {
            vec![unknown(&format!(
                "no event in {}",
                clip(&frame.to_string(), 200)
            ))]
        } else {
            events
        };
        Decoded {
            v: DECODED_VERSION,
            events,
            problem: None,
            frame,
        }
    }

    /// A Sur-Gard receiver frame: heartbeat, Contact ID, or every event of a SIA block.
    pub fn from_surgard(frame: &SurGardFrame) -> Self {
        let events = match frame {
            SurGardFrame::Heartbeat { .. } => vec![SignalWhat::Heartbeat],
            SurGardFrame::ContactId { event, .. } => {
                vec![contact_id(event.event_code(), event.qualifier)]
            }
            SurGardFrame::Sia { data, .. } => sia_events(data),
        };
        Decoded::new(
            events,
            serde_json::to_value(frame).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A SIA DC-09 frame: a `NULL` link test is a heartbeat, `ADM-CID` its Contact ID event,
    /// `SIA-DCS` every event of its block (an empty block is a heartbeat); anything else is
    /// an event nobody can read, shown to an operator.
    pub fn from_dc09(frame: &Dc09Frame) -> Self {
        let events = match &frame.content {
            Dc09Content::Null => vec![SignalWhat::Heartbeat],
            Dc09Content::ContactId { event, .. } => {
                vec![contact_id(event.event_code(), event.qualifier)]
            }
            Dc09Content::Sia(data) if data.events.is_empty() => vec![SignalWhat::Heartbeat],
            Dc09Content::Sia(data) => sia_events(data),
            Dc09Content::Reply | Dc09Content::Unknown => vec![unknown(&format!(
                "DC-09 {} message [{}]",
                frame.token,
                clip(&frame.data, 64)
            ))],
        };
        Decoded::new(
            events,
            serde_json::to_value(frame).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A SCAIP report: a heartbeat (`PI`) or an alarm (anything else).
    pub fn from_scaip(m: &Mrq) -> Self {
        let event = if m.is_heartbeat() {
            SignalWhat::Heartbeat
        } else {
            SignalWhat::Scaip {
                status: m.stc,
                device_type: m.dty,
            }
        };
        Decoded::new(
            vec![event],
            serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A Warden v1 MQTT uplink.
    pub fn from_uplink(u: &Uplink) -> Self {
        Decoded::from_body(
            &u.body,
            serde_json::to_value(&u.payload).unwrap_or(serde_json::Value::Null),
        )
    }

    /// One MQTT body (from a valid uplink, or salvaged from one whose envelope was not),
    /// with the payload as the decoder saw it for display.
    pub fn from_body(body: &Body, frame: serde_json::Value) -> Self {
        let what = match body {
            Body::Alarm(a) => SignalWhat::Mqtt {
                kind: a.kind,
                restore: a.restore,
            },
            Body::Battery(b) if b.low => SignalWhat::Mqtt {
                kind: warden_protocol::mqtt::AlarmKind::LowBattery,
                restore: false,
            },
            // A battery report that is not low is proof of life, like a heartbeat.
            Body::Heartbeat(_) | Body::Signal(_) | Body::Battery(_) => SignalWhat::Heartbeat,
            Body::ContactId { message, .. } => {
                contact_id(message.event.event_code(), message.event.qualifier)
            }
            Body::Presence(p) => SignalWhat::Presence {
                online: matches!(p, warden_protocol::mqtt::Presence::Online),
            },
        };
        Decoded::new(vec![what], frame)
    }

    /// A receiver, gateway or broker link going down or coming back (Warden's own record).
    pub fn link(up: bool, link: &str, detail: &str) -> Self {
        Decoded::new(
            vec![if up {
                SignalWhat::LinkRestored
            } else {
                SignalWhat::LinkLost
            }],
            serde_json::json!({ "link": link, "detail": detail }),
        )
    }

    /// A fault Warden detected on a unit's path (message ids reused, messages lost between
    /// the unit and the centre, the broker dropping messages).
    pub fn path_fault(detail: &str) -> Self {
        Decoded::new(
            vec![SignalWhat::PathFault {
                detail: clip(detail, MAX_SUMMARY_BYTES),
            }],
            serde_json::Value::Null,
        )
    }

    /// The result of one of Warden's own checks (see [`SignalWhat::SelfCheck`]).
    pub fn self_check(check: &str, ok: bool, detail: &str) -> Self {
        Decoded::new(
            vec![SignalWhat::SelfCheck {
                check: clip(check, MAX_SUMMARY_BYTES),
                ok,
                detail: clip(detail, MAX_SUMMARY_BYTES),
            }],
            serde_json::Value::Null,
        )
    }

    /// The same signal marked with the problem that kept it from its device.
    #[must_use]
    pub fn with_problem(mut self, problem: Problem) -> Self {
        self.problem = Some(problem);
        self
    }

    /// The same signal with NUL characters (which Postgres text and jsonb cannot hold)
    /// replaced by U+FFFD in every text it carries.
    #[must_use]
    pub fn sanitized(mut self) -> Self {
        fn fix(s: &mut String) {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{fffd}");
            }
        }
        for e in &mut self.events {
            match e {
                SignalWhat::Unknown { raw_summary: s }
                | SignalWhat::PathFault { detail: s }
                | SignalWhat::SelfCheck { detail: s, .. } => {
                    fix(s);
                }
                _ => {}
            }
        }
        match &mut self.problem {
            Some(
                Problem::UnknownAccount { account }
                | Problem::ProtocolMismatch { account, .. }
                | Problem::NotABridge { account, .. },
            ) => fix(account),
            Some(Problem::DatabaseRefused { message } | Problem::Malformed { detail: message }) => {
                fix(message);
            }
            None => {}
        }
        self
    }

    /// Reads `signals.decoded` back. Total: anything that is not a readable current-version
    /// record becomes one unknown event carrying a summary of what was there.
    pub fn from_stored(kind: &str, v: &serde_json::Value) -> Self {
        match serde_json::from_value::<Decoded>(v.clone()) {
            Ok(d) if d.v == DECODED_VERSION && !d.events.is_empty() => d,
            Ok(d) => Decoded::new(
                vec![unknown(&format!(
                    "stored signal of format version {} not readable: {kind}",
                    d.v
                ))],
                v.clone(),
            ),
            Err(e) => Decoded::new(
                vec![unknown(&format!(
                    "stored signal not readable ({e}): {kind}: {}",
                    clip(&v.to_string(), 200)
                ))],
                v.clone(),
            ),
        }
    }

    /// The stored form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The short label kept in `signals.kind`: `heartbeat`, `presence`, `link_lost`,
    /// `link_restored` for a signal that is only that, `event` otherwise.
    pub fn kind_label(&self) -> &'static str {
        let all = |f: fn(&SignalWhat) -> bool| self.events.iter().all(f);
        if all(|w| matches!(w, SignalWhat::Heartbeat)) {
            "heartbeat"
        } else if all(|w| matches!(w, SignalWhat::Presence { .. })) {
            "presence"
        } else if all(|w| matches!(w, SignalWhat::LinkLost)) {
            "link_lost"
        } else if all(|w| matches!(w, SignalWhat::LinkRestored)) {
            "link_restored"
        } else {
            "event"
        }
    }

    /// One line a person can read, e.g. "Contact ID 101 Personal emergency (new)" or
    /// "Unregistered unit 7777: Contact ID 101 Personal emergency (new)".
    pub fn summary(&self) -> String {
        let events: Vec<String> = self.events.iter().map(describe).collect();
        let events = events.join("; ");
        match &self.problem {
            Some(p) => {
                let mut p = p.to_string();
                if let Some(first) = p.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                format!("{p}: {events}")
            }
            None => events,
        }
    }
}

/// Drives arbitrary bytes through every decode → meaning → stored form → triage path a
/// signal can take, as the property tests and the `signal_path` fuzz target do: `selector`
/// picks the path (Sur-Gard stream, MQTT payload, stored JSON). Returns how many signals
/// reached the core. Panics only if a path breaks its contract: the stored form must read
/// back to the same meaning.
#[doc(hidden)]
pub fn drive_signal_path(selector: u8, data: &[u8]) -> usize {
    use warden_protocol::Step;
    use warden_protocol::surgard::SurGardDecoder;

    let mut decoded = Vec::new();
    match selector % 3 {
        0 => {
            let mut d = SurGardDecoder::default();
            let mut start = 0;
            while start < data.len() {
                let step = d.decode(&data[start..]);
                if let Step::Frame { frame, .. } = &step {
                    decoded.push(Decoded::from_surgard(frame));
                }
                let n = step.consumed();
                if n == 0 {
                    break;
                }
                start += n;
            }
        }
        1 => {
            if let Ok(u) = warden_protocol::mqtt::parse_payload("unit-1", data) {
                decoded.push(Decoded::from_uplink(&u));
            }
        }
        _ => {
            let v = serde_json::from_slice(data).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(data).into_owned())
            });
            decoded.push(Decoded::from_stored("event", &v));
        }
    }
    let mut core = crate::Triage::new(crate::Config::default());
    let now = crate::Timestamp::from_secs(1_800_000_000);
    let mut n = 0;
    for (i, d) in decoded.into_iter().enumerate() {
        let stored = Decoded::from_stored(d.kind_label(), &d.to_json());
        assert_eq!(stored.events, d.events, "the stored form reads back");
        let _ = stored.summary();
        let d = d.sanitized().with_problem(Problem::UnknownAccount {
            account: clip(&String::from_utf8_lossy(data), 40),
        });
        for (k, what) in d.events.iter().enumerate() {
            let s = crate::SignalIn {
                id: crate::SignalId((i as u128) << 16 | k as u128),
                source: crate::Source::Mqtt,
                link: crate::Name::from("mqtt:fuzz"),
                account: Some(crate::Name::from("7777")),
                device: (k % 2 == 0).then(|| crate::DeviceInfo::new(crate::DeviceId(1))),
                what: what.clone(),
                received_at: now,
            };
            let _ = core.handle(crate::Input::Signal(s), now);
            n += 1;
        }
    }
    let _ = core.handle(
        crate::Input::Tick,
        now.saturating_add(crate::Micros::from_secs(3600)),
    );
    n
}

/// One event in words.
pub fn describe(what: &SignalWhat) -> String {
    use warden_protocol::codes;
    match what {
        SignalWhat::ContactId { code, qualifier } => format!(
            "Contact ID {code:03} {} ({qualifier})",
            codes::contact_id(*code).map_or("unknown code", codes::CidCode::describe),
        ),
        SignalWhat::Sia { code, restore } => {
            let code = String::from_utf8_lossy(code).into_owned();
            let text = codes::sia_description(&code).unwrap_or("unknown code");
            format!(
                "SIA {code} {text}{}",
                if *restore { " (restore)" } else { "" }
            )
        }
        SignalWhat::Mqtt { kind, restore } => format!(
            "{}{}",
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_else(|| format!("{kind:?}")),
            if *restore { " (restore)" } else { "" }
        ),
        SignalWhat::Scaip {
            status,
            device_type,
        } => format!(
            "SCAIP alarm, status {}, device type {}",
            status.map_or_else(|| "not given".to_owned(), |s| s.to_string()),
            device_type.map_or_else(|| "not given".to_owned(), |d| d.to_string())
        ),
        SignalWhat::Heartbeat => "heartbeat".into(),
        SignalWhat::Presence { online } => (if *online { "online" } else { "offline" }).into(),
        SignalWhat::LinkLost => "link lost".into(),
        SignalWhat::LinkRestored => "link restored".into(),
        SignalWhat::PathFault { detail } => format!("signal path fault: {detail}"),
        SignalWhat::SelfCheck {
            check,
            ok: false,
            detail,
        } => format!("Warden self-check {check} failed: {detail}"),
        SignalWhat::SelfCheck {
            check, ok: true, ..
        } => {
            format!("Warden self-check {check} passed")
        }
        SignalWhat::Unknown { raw_summary } => format!("unreadable signal: {raw_summary}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_protocol::Step;
    use warden_protocol::surgard::SurGardDecoder;

    fn surgard(bytes: &[u8]) -> Decoded {
        match SurGardDecoder::default().decode(bytes) {
            Step::Frame { frame, .. } => Decoded::from_surgard(&frame),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn every_event_of_a_multi_event_sia_block_is_kept() {
        let d = surgard(b"S011[#1234|Nri1/YT01/MA02]\x14");
        assert_eq!(
            d.events,
            vec![
                SignalWhat::Sia {
                    code: *b"YT",
                    restore: false
                },
                SignalWhat::Sia {
                    code: *b"MA",
                    restore: false
                }
            ]
        );
        assert_eq!(Decoded::from_stored("event", &d.to_json()), d);
    }

    #[test]
    fn contact_id_codes_with_hex_digits_are_unknown_events_that_name_the_code() {
        let d = surgard(b"5011 181234E1B101001\x14");
        let [SignalWhat::Unknown { raw_summary }] = d.events.as_slice() else {
            panic!("{d:?}");
        };
        assert!(raw_summary.contains("1B1"), "{raw_summary}");
    }

    #[test]
    fn long_non_ascii_text_is_cut_at_a_character_boundary() {
        let euros = "€".repeat(150);
        let c = clip(&euros, MAX_SUMMARY_BYTES);
        assert!(c.len() <= MAX_SUMMARY_BYTES + '…'.len_utf8());
        let stored = serde_json::json!({ "receiver": euros });
        let d = Decoded::from_stored("event", &stored);
        assert!(matches!(d.events[0], SignalWhat::Unknown { .. }));
    }

    #[test]
    fn unreadable_stored_json_becomes_one_unknown_event() {
        for v in [
            serde_json::json!(null),
            serde_json::json!({"v": 1, "protocol": "contact_id"}),
            serde_json::json!({"v": 2, "events": []}),
            serde_json::json!({"v": 3, "events": [{"type": "heartbeat"}]}),
            serde_json::json!({"v": 2, "events": [{"type": "teleport"}]}),
        ] {
            let d = Decoded::from_stored("event", &v);
            assert_eq!(d.events.len(), 1, "{v}");
            assert!(matches!(d.events[0], SignalWhat::Unknown { .. }), "{v}");
        }
    }

    #[test]
    fn a_problem_leads_the_summary() {
        let d = Decoded::new(
            vec![SignalWhat::ContactId {
                code: 101,
                qualifier: Qualifier::New,
            }],
            serde_json::Value::Null,
        )
        .with_problem(Problem::UnknownAccount {
            account: "7777".into(),
        });
        assert_eq!(
            d.summary(),
            "Unregistered unit 7777: Contact ID 101 Personal emergency (new)"
        );
    }
}
