//! The published JSON Schema and the Rust parser agree on what a v1 payload is.

use warden_protocol::mqtt::{self, AlarmKind};

fn schema() -> jsonschema::Validator {
    let text = include_str!("../../../deploy/schema/warden-mqtt-v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

const VALID: &[&str] = &[
    r#"{"v":1,"msg_id":"m1","alarm":{"kind":"pendant"}}"#,
    r#"{"v":1,"msg_id":"m2","sent_at":"2026-11-23T23:00:00Z","alarm":{"kind":"smoke","restore":true,"zone":"kitchen"}}"#,
    r#"{"v":1,"msg_id":"m3","heartbeat":{"interval_s":300}}"#,
    r#"{"v":1,"msg_id":"m4","heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m5","battery":{"percent":9,"low":true}}"#,
    r#"{"v":1,"msg_id":"m6","signal":{"rssi_dbm":-87}}"#,
    r#"{"v":1,"msg_id":"m7","contact_id":{"message":"123418110101001B","receiver":"01","line":"1"}}"#,
    r#"{"v":1,"presence":"offline"}"#,
    r#"{"v":1,"msg_id":"w1","presence":"online"}"#,
    r#"{"v":1,"msg_id":"m8","seq":0,"heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m9","seq":4294967295,"alarm":{"kind":"fall"}}"#,
];

const INVALID: &[&str] = &[
    r#"{"v":1,"msg_id":"m1","seq":-1,"heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m1","seq":4294967296,"heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m1","seq":"7","heartbeat":{}}"#,
    r#"{"v":2,"msg_id":"m1","alarm":{"kind":"pendant"}}"#,
    r#"{"msg_id":"m1","alarm":{"kind":"pendant"}}"#,
    r#"{"v":1,"alarm":{"kind":"pendant"}}"#,
    r#"{"v":1,"msg_id":"m1"}"#,
    r#"{"v":1,"msg_id":"m1","alarm":{"kind":"pendant"},"heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m1","alarm":{"kind":"unicorn"}}"#,
    r#"{"v":1,"msg_id":"m1","alarm":{"kind":"pendant","extra":1}}"#,
    r#"{"v":1,"msg_id":"m1","battery":{"percent":101}}"#,
    r#"{"v":1,"msg_id":"has space","heartbeat":{}}"#,
    r#"{"v":1,"msg_id":"m1","unknown":{}}"#,
    "[1,2,3]",
];

#[test]
fn schema_and_parser_accept_the_same_valid_payloads() {
    let v = schema();
    for p in VALID {
        let json: serde_json::Value = serde_json::from_str(p).expect("test JSON");
        assert!(v.is_valid(&json), "schema rejects {p}");
        mqtt::parse_payload("unit-1", p.as_bytes())
            .unwrap_or_else(|e| panic!("parser rejects {p}: {e}"));
    }
}

#[test]
fn schema_and_parser_reject_the_same_invalid_payloads() {
    let v = schema();
    for p in INVALID {
        let json: serde_json::Value = serde_json::from_str(p).expect("test JSON");
        assert!(!v.is_valid(&json), "schema accepts {p}");
        assert!(
            mqtt::parse_payload("unit-1", p.as_bytes()).is_err(),
            "parser accepts {p}"
        );
    }
}

#[test]
fn every_alarm_kind_is_in_the_schema() {
    let v = schema();
    for kind in AlarmKind::ALL {
        let p = mqtt::Payload {
            v: 1,
            msg_id: Some("m".into()),
            sent_at: None,
            seq: None,
            alarm: Some(mqtt::Alarm {
                kind,
                restore: false,
                zone: None,
            }),
            heartbeat: None,
            battery: None,
            signal: None,
            contact_id: None,
            presence: None,
        };
        let bytes = mqtt::encode_payload(&p);
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert!(v.is_valid(&json), "schema lacks {kind:?}");
        assert_eq!(
            mqtt::parse_payload("d", &bytes)
                .expect("round trip")
                .payload,
            p
        );
    }
}
