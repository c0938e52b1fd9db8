//! `wardend decode` as installers use it: bytes on stdin, one JSON object per frame on
//! stdout, in order, bad frames reported and skipped, exit code 0.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

fn decode(args: &[&str], input: &[u8]) -> (Vec<Value>, i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardend"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wardend starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wardend exits");
    let text = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (lines, out.status.code().unwrap_or(-1))
}

#[test]
fn surgard_frames_decode_in_order_and_bad_ones_do_not_stop_the_rest() {
    let input =
        b"5011 181234E12101001\x14garbage\x141011           @    \x14501100 181234R30100000\x14";
    let (lines, code) = decode(&["--format", "surgard"], input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 4);
    let a = &lines[0];
    assert_eq!(a["ok"], true);
    for (k, v) in [
        ("kind", "event"),
        ("receiver", "01"),
        ("line", "1"),
        ("account", "1234"),
        ("qualifier", "new"),
        ("event_code", "121"),
        ("group", "01"),
        ("zone", "001"),
        ("description", "Duress"),
    ] {
        assert_eq!(a[k], v, "{k}");
    }
    assert_eq!(lines[1]["ok"], false);
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("bad header \"garbage\""))
    );
    assert_eq!(lines[2]["kind"], "heartbeat");
    assert_eq!(lines[3]["qualifier"], "restore");
    assert_eq!(lines[3]["line"], "100");
}

#[test]
fn contact_id_lines_report_checksum_errors_with_the_expected_digit() {
    let (lines, code) = decode(
        &["--format", "contact-id"],
        b"1234181131010158\n1234181131010150\n123418110101001B\n",
    );
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event_code"], "131");
    assert_eq!(lines[1]["ok"], false);
    assert_eq!(lines[1]["error"], "checksum mismatch: expected 8, got 0");
    assert_eq!(lines[2]["description"], "Personal emergency");
    assert_eq!(lines[2]["kind"], "event");
}

#[test]
fn dc09_frames_decode_with_and_without_a_key() {
    let plain = b"\nFA00003A\"SIA-DCS\"0001L0#1234[#1234|Nri1/MA001]_12:00:00,01-01-2024\r\n3A90003B\"ADM-CID\"0002L0#1234[#1234|1101 01 001]_12:00:00,01-01-2024\r";
    let (lines, code) = decode(&["--format", "dc09"], plain);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["token"], "SIA-DCS");
    assert_eq!(lines[0]["sequence"], "0001");
    assert_eq!(lines[0]["kind"], "event");
    assert_eq!(lines[1]["event_code"], "101");
    assert_eq!(lines[1]["qualifier"], "new");

    let encrypted = b"\n76D80055\"*NULL\"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD64D9\r";
    let (lines, _) = decode(&["--format", "dc09"], encrypted);
    assert_eq!(lines[0]["ok"], false, "no key: {}", lines[0]);
    let (lines, _) = decode(
        &["--format", "dc09", "--key", "AAAAAAAAAAAAAAAA"],
        encrypted,
    );
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert_eq!(lines[0]["timestamp"], "18:24:52,07-05-2020");
}

#[test]
fn a_bad_key_is_a_usage_error() {
    let (_, code) = decode(&["--format", "dc09", "--key", "short"], b"");
    assert_eq!(code, 64);
}
