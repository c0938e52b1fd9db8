//! SIA DC-09 interoperability with an independent transmitter: `dc09-spt` (PyPI, van Ovost
//! Automatisering; installed by tests/deps.sh into tests/python/.venv) sends plain and
//! AES-encrypted SIA-DCS and ADM-CID events to the real `wardend` over TCP and UDP. Every
//! event it saw acknowledged is in Postgres once and every alarm among them is an incident;
//! an encrypted message from an account without a key, and a plain one from an account that
//! must encrypt, are refused and kept in quarantine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use warden_tests::{TestDb, Wardend, free_port, wait_until};

const KEY: &str = "000102030405060708090A0B0C0D0E0F";

fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/deps.sh (it installs dc09-spt)",
        p.display()
    );
    p
}

/// A running wardend on `db` with the `[dc09]` section `dc09`.
fn daemon(db: &TestDb, dc09: &str) -> Wardend {
    let w = Wardend::start(&format!(
        "[database]\nurl = \"{url}\"\n[dc09]\n{dc09}\n",
        url = db.url
    ));
    assert!(
        wait_until(Duration::from_secs(30), || w
            .metric("warden_engine_running")
            > 0.5),
        "wardend up:\n{}",
        w.log_text()
    );
    w
}

/// Runs dc09-spt; returns which of its three messages were acknowledged.
fn send(port: u16, proto: &str, account: &str, key: Option<&str>) -> Vec<bool> {
    let mut cmd = Command::new(venv_python());
    cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/dc09_send.py"))
        .args(["127.0.0.1", &port.to_string(), proto, account]);
    if let Some(k) = key {
        cmd.arg(k);
    }
    let out = cmd.output().expect("run dc09-spt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dc09-spt failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("dc09-spt's JSON line");
    v.as_array()
        .expect("results")
        .iter()
        .map(|r| r["acked"].as_bool().unwrap_or(false))
        .collect()
}

#[test]
fn an_independent_transmitter_is_acknowledged_only_for_what_is_stored() {
    let db = TestDb::create("e2e_dc09");
    let (tcp, udp) = (free_port(), free_port());
    let w = daemon(
        &db,
        &format!("tcp = \"127.0.0.1:{tcp}\"\nudp = \"127.0.0.1:{udp}\""),
    );
    for (account, key) in [
        ("1001", None),
        ("1002", Some(KEY)),
        ("1003", None),
        ("1004", Some(KEY)),
    ] {
        let mut args = vec!["device", "add", "--account", account, "--protocol", "dc09"];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        let out = w.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(KEY),
            "the key is never printed"
        );
    }

    // Plain over TCP, encrypted over TCP, plain over UDP, encrypted over UDP.
    assert_eq!(send(tcp, "tcp", "1001", None), [true, true, true]);
    assert_eq!(send(tcp, "tcp", "1002", Some(KEY)), [true, true, true]);
    assert_eq!(send(udp, "udp", "1003", None), [true, true, true]);
    assert_eq!(send(udp, "udp", "1004", Some(KEY)), [true, true, true]);
    let stored = |account: &str| {
        db.count(&format!(
            "SELECT count(*) FROM signals s JOIN devices d ON d.id = s.device_id \
             WHERE d.account = '{account}' AND s.source = 'dc09'"
        ))
    };
    for account in ["1001", "1002", "1003", "1004"] {
        assert_eq!(
            stored(account),
            3,
            "account {account}: each acknowledged event once"
        );
    }
    // The fire and the pendant of each transmitter are in the queue; the test is not.
    assert!(
        wait_until(Duration::from_secs(15), || db.count(
            "SELECT count(*) FROM incidents WHERE kind IN ('fire', 'pendant')"
        ) == 8),
        "alarms in the queue: {}\n{}",
        db.query("SELECT string_agg(kind || ' ' || state, ', ') FROM incidents"),
        w.log_text()
    );

    // Encrypted from an account with no key, plain from one that must encrypt: refused.
    assert_eq!(send(tcp, "tcp", "1001", Some(KEY)), [false, false, false]);
    assert_eq!(send(udp, "udp", "1002", None), [false, false, false]);
    assert_eq!(stored("1001"), 3);
    assert_eq!(stored("1002"), 3);
    let refused = db.query(
        "SELECT string_agg(DISTINCT reason_code, ',' ORDER BY reason_code) FROM quarantine \
         WHERE source = 'dc09'",
    );
    assert_eq!(refused.trim(), "dc09_no_key,dc09_not_encrypted");
    assert!(w.metric("warden_dc09_replies_total{transport=\"tcp\",reply=\"duh\"}") >= 1.0);
    assert!(w.metric("warden_dc09_replies_total{transport=\"udp\",reply=\"ack\"}") >= 6.0);
}

/// Sends one datagram and waits up to a second for the answer.
fn exchange(socket: &std::net::UdpSocket, to: u16, frame: &[u8]) -> Option<String> {
    socket.send_to(frame, ("127.0.0.1", to)).expect("send");
    let mut buf = [0u8; 2048];
    socket
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn a_retransmission_is_stored_once_a_stale_message_gets_warden_s_clock_and_a_bad_crc_no_answer() {
    use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
    let db = TestDb::create("e2e_dc09_rules");
    let udp = free_port();
    let w = daemon(&db, &format!("udp = \"127.0.0.1:{udp}\""));
    let out = w.cli(&["device", "add", "--account", "2001", "--protocol", "dc09"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let now = || {
        Timestamp::from_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                .try_into()
                .expect("seconds"),
        )
        .expect("timestamp")
    };
    let message = |sequence, at: Timestamp| Dc09Message {
        token: Token::SiaDcs,
        sequence,
        receiver: None,
        line: None,
        account: warden_protocol::Account::new(b"2001"),
        data: "#2001|NFA01".into(),
        xdata: Vec::new(),
        timestamp: Some(at),
    };

    // The same message twice (the ACK was lost, say): acknowledged twice, stored once.
    let frame = dc09::encode(&message(5, now()));
    for _ in 0..2 {
        let reply = exchange(&socket, udp, &frame).expect("an answer");
        assert!(reply.contains("\"ACK\"0005#2001"), "{reply:?}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM signals WHERE source = 'dc09'"),
        1,
        "a retransmission is not stored twice"
    );

    // Two minutes old: NAK carrying Warden's clock, nothing stored.
    let stale = Timestamp::from_unix(now().unix_seconds() - 120).expect("timestamp");
    let reply = exchange(&socket, udp, &dc09::encode(&message(6, stale))).expect("an answer");
    assert!(reply.contains("\"NAK\"0000R0L0A0[]_"), "{reply:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM signals WHERE source = 'dc09'"),
        1
    );

    // A damaged CRC: no answer at all (the transmitter sends it again), kept as evidence.
    let mut damaged = dc09::encode(&message(7, now()));
    damaged[1] = if damaged[1] == b'0' { b'1' } else { b'0' };
    assert_eq!(exchange(&socket, udp, &damaged), None);
    assert!(wait_until(Duration::from_secs(5), || {
        db.count(
            "SELECT count(*) FROM quarantine WHERE source = 'dc09' AND reason_code = 'bad_frame'",
        ) == 1
    }));
    assert_eq!(
        db.count("SELECT count(*) FROM quarantine WHERE source = 'dc09' AND reason_code = 'dc09_timestamp'"),
        1
    );
}

/// Per-account settings from the registry (`wardend device add --dc09-…`): a transmitter
/// registered for receiver 12 line 3 is refused (DUH, kept with the reason) when it sends
/// another receiver's number, and one with a poor clock gets its own wider window.
#[test]
fn an_account_s_receiver_line_and_window_come_from_the_registry() {
    use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
    let db = TestDb::create("e2e_dc09_accounts");
    let udp = free_port();
    let w = daemon(&db, &format!("udp = \"127.0.0.1:{udp}\""));
    let out = w.cli(&[
        "device",
        "add",
        "--account",
        "4001",
        "--protocol",
        "dc09",
        "--dc09-receiver",
        "12",
        "--dc09-line",
        "3",
        "--dc09-before-seconds",
        "300",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let two_minutes_ago =
        Timestamp::from_unix(i64::try_from(now).expect("seconds") - 120).expect("timestamp");
    let message = |sequence, receiver: &[u8], line: &[u8]| Dc09Message {
        token: Token::SiaDcs,
        sequence,
        receiver: warden_protocol::Ascii::new(receiver),
        line: warden_protocol::Ascii::new(line),
        account: warden_protocol::Account::new(b"4001"),
        data: "#4001|NFA01".into(),
        xdata: Vec::new(),
        timestamp: Some(two_minutes_ago),
    };
    // Two minutes old (outside the receiver's 40 s, inside the account's 300 s), R12 L3.
    let reply = exchange(&socket, udp, &dc09::encode(&message(1, b"12", b"3"))).expect("answer");
    assert!(reply.contains("\"ACK\"0001R12L3#4001"), "{reply:?}");
    // Another receiver's number: DUH, nothing stored, kept with the reason.
    let reply = exchange(&socket, udp, &dc09::encode(&message(2, b"13", b"3"))).expect("answer");
    assert!(reply.contains("\"DUH\""), "{reply:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM signals WHERE source = 'dc09'"),
        1
    );
    assert!(wait_until(Duration::from_secs(5), || db.count(
        "SELECT count(*) FROM quarantine WHERE reason_code = 'dc09_wrong_prefix' \
         AND reason LIKE '%receiver 13%registered for receiver 12%'"
    ) == 1));
}

/// `dc09.max_connections_per_account`: a second connection for an account already
/// connected (its first frame names it) is closed unanswered and counted; the first goes on.
#[test]
fn a_second_connection_for_an_account_over_its_limit_is_closed() {
    use std::io::{Read as _, Write as _};
    use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
    let db = TestDb::create("e2e_dc09_per_account");
    let tcp = free_port();
    let w = daemon(
        &db,
        &format!("tcp = \"127.0.0.1:{tcp}\"\nmax_connections_per_account = 1"),
    );
    let out = w.cli(&["device", "add", "--account", "4101", "--protocol", "dc09"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = |sequence| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        dc09::encode(&Dc09Message {
            token: Token::Null,
            sequence,
            receiver: None,
            line: None,
            account: warden_protocol::Account::new(b"4101"),
            data: String::new(),
            xdata: Vec::new(),
            timestamp: Timestamp::from_unix(i64::try_from(now).expect("seconds")),
        })
    };
    let send = |s: &mut std::net::TcpStream, bytes: &[u8]| -> Option<String> {
        s.write_all(bytes).ok()?;
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    };
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", tcp)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s
    };
    let mut first = connect();
    assert!(send(&mut first, &frame(1)).is_some_and(|r| r.contains("\"ACK\"")));
    let mut second = connect();
    assert_eq!(send(&mut second, &frame(2)), None, "closed unanswered");
    assert!(
        w.metric("warden_dc09_connections_refused_total{reason=\"per_account\"}") >= 1.0,
        "counted"
    );
    assert!(
        send(&mut first, &frame(3)).is_some_and(|r| r.contains("\"ACK\"")),
        "the first goes on"
    );
    drop(first);
    // Once the first is closed, the account may connect again.
    let again = wait_until(Duration::from_secs(5), || {
        let mut s = connect();
        send(&mut s, &frame(4)).is_some_and(|r| r.contains("\"ACK\""))
    });
    assert!(again, "a new connection after the first closed");
}

/// `--dc09-supervision`: a transmitter silent past its own interval raises link lost on
/// `dc09:<account>` (an incident, the links table, the metric), and its next message
/// restores the link.
#[test]
fn a_silent_transmitter_loses_its_link_and_its_next_message_restores_it() {
    use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
    let db = TestDb::create("e2e_dc09_supervision");
    let udp = free_port();
    let w = daemon(&db, &format!("udp = \"127.0.0.1:{udp}\""));
    let out = w.cli(&[
        "device",
        "add",
        "--account",
        "4301",
        "--protocol",
        "dc09",
        "--dc09-supervision",
        "2s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let frame = |sequence| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        dc09::encode(&Dc09Message {
            token: Token::Null,
            sequence,
            receiver: None,
            line: None,
            account: warden_protocol::Account::new(b"4301"),
            data: String::new(),
            xdata: Vec::new(),
            timestamp: Timestamp::from_unix(i64::try_from(now).expect("seconds")),
        })
    };
    assert!(exchange(&socket, udp, &frame(1)).is_some_and(|r| r.contains("\"ACK\"")));
    let lost = wait_until(Duration::from_secs(10), || {
        db.count(
            "SELECT count(*) FROM incidents WHERE kind = 'link_lost' \
             AND doc::text LIKE '%dc09:4301%'",
        ) == 1
    });
    assert!(
        lost,
        "link lost raised: {}\n{}",
        db.query("SELECT string_agg(kind || ' ' || state, '; ') FROM incidents"),
        w.log_text()
    );
    assert_eq!(
        db.query("SELECT up::text FROM links WHERE id = 'dc09:4301'"),
        "false"
    );
    assert!(exchange(&socket, udp, &frame(2)).is_some_and(|r| r.contains("\"ACK\"")));
    assert!(
        wait_until(Duration::from_secs(10), || db
            .query("SELECT up::text FROM links WHERE id = 'dc09:4301'")
            == "true"),
        "link restored"
    );
    assert!(wait_until(Duration::from_secs(10), || db.count(
        "SELECT count(*) FROM signals WHERE source = 'internal' AND link_id = 'dc09:4301'"
    ) == 2));
}
