//! From a stored signal (kind + decoded JSON, as ingest wrote it) to the core's
//! [`SignalWhat`]. One function serves the live path and the replay after a restart, so
//! both classify a signal the same way.

use serde_json::Value;
use warden_core::{AlarmKind, Qualifier, SignalWhat};

fn qualifier(v: &Value) -> Qualifier {
    match v.as_str() {
        Some("restore") => Qualifier::Restore,
        Some("status") => Qualifier::Status,
        _ => Qualifier::New,
    }
}

fn contact_id(v: &Value) -> Option<SignalWhat> {
    let code = v.get("event_code")?.as_str()?.parse().ok()?;
    Some(SignalWhat::ContactId {
        code,
        qualifier: qualifier(&v["qualifier"]),
    })
}

/// What a stored signal says. Anything unrecognised becomes `Unknown` with a summary, so it
/// still reaches an operator.
pub fn signal_what(kind: &str, decoded: &Value) -> SignalWhat {
    let known = match kind {
        "heartbeat" => Some(SignalWhat::Heartbeat),
        "presence" => Some(SignalWhat::Presence {
            online: decoded["presence"].as_str() == Some("online"),
        }),
        "link_lost" => Some(SignalWhat::LinkLost),
        "link_restored" => Some(SignalWhat::LinkRestored),
        "event" => event(decoded),
        _ => None,
    };
    known.unwrap_or_else(|| {
        let mut raw_summary = format!("{kind}: {decoded}");
        raw_summary.truncate(300);
        SignalWhat::Unknown { raw_summary }
    })
}

fn event(d: &Value) -> Option<SignalWhat> {
    // Sur-Gard and DC-09 decodes name their protocol; MQTT payloads carry their body key.
    match d["protocol"].as_str() {
        Some("contact_id") => return contact_id(d),
        Some("sia") => {
            let code = d["events"][0]["code"].as_str()?.as_bytes();
            return Some(SignalWhat::Sia {
                code: [*code.first()?, *code.get(1)?],
                restore: false,
            });
        }
        _ => {}
    }
    if let Some(alarm) = d.get("alarm") {
        let kind: AlarmKind = serde_json::from_value(alarm["kind"].clone()).ok()?;
        return Some(SignalWhat::Mqtt {
            kind,
            restore: alarm["restore"].as_bool().unwrap_or(false),
        });
    }
    if let Some(cid) = d.get("decoded_contact_id") {
        return contact_id(cid);
    }
    if let Some(battery) = d.get("battery") {
        return Some(if battery["low"].as_bool() == Some(true) {
            SignalWhat::Mqtt {
                kind: AlarmKind::LowBattery,
                restore: false,
            }
        } else {
            SignalWhat::Heartbeat
        });
    }
    if d.get("signal").is_some() {
        return Some(SignalWhat::Heartbeat);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn surgard_contact_id_mqtt_and_internal_signals_map_to_the_core_vocabulary() {
        let sg =
            json!({"kind":"event","protocol":"contact_id","event_code":"101","qualifier":"new"});
        assert_eq!(
            signal_what("event", &sg),
            SignalWhat::ContactId {
                code: 101,
                qualifier: Qualifier::New
            }
        );
        let sia = json!({"protocol":"sia","events":[{"code":"FA","address":"01"}]});
        assert_eq!(
            signal_what("event", &sia),
            SignalWhat::Sia {
                code: *b"FA",
                restore: false
            }
        );
        let mqtt = json!({"v":1,"msg_id":"m","alarm":{"kind":"fall","restore":true}});
        assert_eq!(
            signal_what("event", &mqtt),
            SignalWhat::Mqtt {
                kind: AlarmKind::Fall,
                restore: true
            }
        );
        let bridge = json!({"contact_id":{"message":"…"},"decoded_contact_id":{"event_code":"301","qualifier":"restore"}});
        assert_eq!(
            signal_what("event", &bridge),
            SignalWhat::ContactId {
                code: 301,
                qualifier: Qualifier::Restore
            }
        );
        assert_eq!(
            signal_what("presence", &json!({"presence":"offline"})),
            SignalWhat::Presence { online: false }
        );
        assert_eq!(signal_what("link_lost", &json!({})), SignalWhat::LinkLost);
        assert_eq!(signal_what("heartbeat", &json!({})), SignalWhat::Heartbeat);
    }

    #[test]
    fn anything_unrecognised_is_unknown_with_a_summary_never_dropped() {
        let w = signal_what(
            "event",
            &json!({"protocol":"contact_id","event_code":"xyz"}),
        );
        assert!(matches!(w, SignalWhat::Unknown { raw_summary } if raw_summary.contains("xyz")));
    }
}
