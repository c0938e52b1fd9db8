//! SCAIP (SS 91100 / BS 8521-2) against the real daemon: the vendor message shapes of
//! `../shared/vectors/PROTOCOL-VECTORS.md` §D, each in a SIP `MESSAGE` as a unit sends it,
//! over real UDP and TCP sockets. Each report is answered `200 OK` with an `<mrs>` echoing its
//! `ref` (checked byte for byte) only once stored; heartbeats are stored and raise nothing;
//! alarms are life-critical incidents on their unit (ids compared numerically, so a unit
//! registered as `08031372` is the `cid` ` 8031372`); a retransmission is stored once; an
//! unknown unit's alarm still reaches the queue; other methods, media types and bytes that
//! are not SIP get the answers the protocol gives them and are kept.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use warden_tests::{TestDb, Wardend, free_port, wait_until};

/// The §D bodies (device captures).
const D: [&str; 9] = [
    "<mrq><ref>00001A85</ref><cha>0</cha><mty>PI</mty><cid>26317</cid><dty>02</dty><did>00</did><crd>no-voice:</crd><stc>102</stc></mrq>",
    "<mrq><mty>PI</mty><ref>1998218577</ref><cid>10149471</cid><dty>2</dty></mrq>",
    "<mrq><ref>v6l7eiuzBTfybE7j</ref><cid>999998</cid><dty>0002</dty><mty>PI</mty><stc>0009</stc><lco>002</lco><crd>gsm:</crd><cha>0</cha></mrq>",
    "<mrq><ref>00001883</ref><cha>0</cha><mty>ME</mty><cid>26317</cid><dty>02</dty><did>00</did><crd>gsm:+37284463906</crd><stc>010</stc></mrq>",
    "<mrq><ref>1193308443</ref><cid>10149471</cid><dty>3</dty><stc>10</stc><crd>gsm:</crd></mrq>",
    "<mrq><ref>lmepivnFqmI8Jvv1</ref><cid>999998</cid><dty>0002</dty><mty>ME</mty><stc>0067</stc><crd>gsm:</crd><cha>0</cha></mrq>",
    "<mrq><ref>yhexGeV5E49zglfi</ref><cid>999998</cid><dty>0004</dty><mty>ME</mty><stc>0010</stc><lco>002</lco><crd>gsm:</crd><cha>0</cha></mrq>",
    "<mrq><ref>803137200003</ref><mty>ME</mty><cid> 8031372</cid><dty>0004</dty><stc>0010</stc><crd>gsm:+</crd></mrq>",
    "<mrq><ref>787025300001</ref><cha>1</cha><mty>ME</mty><cid>__CID__</cid><dty>0004</dty><stc>0010</stc><crd>gsm:__GSMNUMBER__</crd></mrq>",
];

/// A SIP request as a unit sends it; `n` makes its branch, tag and Call-ID its own.
fn request(method: &str, transport: &str, n: usize, content_type: &str, body: &str) -> String {
    format!(
        "{method} sip:alarm@127.0.0.1;transport={transport} SIP/2.0\r\n\
         Via: SIP/2.0/{upper} 10.0.0.{n}:5060;branch=z9hG4bK{n}x\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:unit{n}@10.0.0.{n}>;tag={n}f\r\n\
         To: <sip:alarm@127.0.0.1>\r\n\
         Call-ID: {n}-call@10.0.0.{n}\r\n\
         CSeq: {n} {method}\r\n\
         User-Agent: social-alarm/1.0\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        upper = transport.to_ascii_uppercase(),
        len = body.len()
    )
}

/// The answer the protocol fixes for request `n` with status `status` (and the `<mrs>` of
/// `reference`), up to the `To` tag Warden chooses.
fn expected(
    status: &str,
    transport: &str,
    n: usize,
    method: &str,
    reference: Option<&str>,
) -> String {
    let mut s = format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/{upper} 10.0.0.{n}:5060;branch=z9hG4bK{n}x\r\n\
         From: <sip:unit{n}@10.0.0.{n}>;tag={n}f\r\n\
         To: <sip:alarm@127.0.0.1>;tag=TAG\r\n\
         Call-ID: {n}-call@10.0.0.{n}\r\n\
         CSeq: {n} {method}\r\n",
        upper = transport.to_ascii_uppercase()
    );
    if status.starts_with("405") {
        s.push_str("Allow: MESSAGE, OPTIONS\r\n");
    }
    match reference {
        Some(r) => {
            let body = format!("<mrs><ref>{r}</ref><snu>0</snu></mrs>");
            s.push_str("Content-Type: application/scaip+xml\r\nContent-Length: ");
            s.push_str(&body.len().to_string());
            s.push_str("\r\n\r\n");
            s.push_str(&body);
        }
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

/// The answer with Warden's `To` tag replaced by `TAG`.
fn untagged(reply: &str) -> String {
    match reply.find(";tag=warden") {
        Some(i) => {
            let end = reply[i..].find("\r\n").map_or(reply.len(), |e| i + e);
            format!("{};tag=TAG{}", &reply[..i], &reply[end..])
        }
        None => reply.to_owned(),
    }
}

fn udp_exchange(socket: &UdpSocket, port: u16, message: &[u8]) -> Option<String> {
    socket.send_to(message, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 4096];
    socket
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn reference(body: &str) -> &str {
    let start = body.find("<ref>").expect("ref") + 5;
    let end = body.find("</ref>").expect("/ref");
    &body[start..end]
}

#[test]
fn vendor_messages_over_udp_and_tcp_are_answered_after_they_are_stored() {
    let db = TestDb::create("e2e_scaip");
    let (udp, tcp) = (free_port(), free_port());
    let w = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\n[scaip]\nudp = \"127.0.0.1:{udp}\"\ntcp = \"127.0.0.1:{tcp}\"\n",
        db.url
    ));
    assert!(
        wait_until(Duration::from_secs(30), || w
            .metric("warden_engine_running")
            > 0.5),
        "wardend up:\n{}",
        w.log_text()
    );
    // 08031372: registered zero-padded, sent as " 8031372".
    for account in ["26317", "10149471", "999998", "08031372"] {
        let out = w.cli(&[
            "device",
            "add",
            "--account",
            account,
            "--protocol",
            "scaip",
            "--label",
            "pendant",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");

    // D1–D8 over UDP, each answered 200 with its reference, byte for byte.
    for (i, body) in D[..8].iter().enumerate() {
        let n = i + 1;
        let msg = request("MESSAGE", "udp", n, "application/scaip+xml", body);
        let reply = udp_exchange(&socket, udp, msg.as_bytes())
            .unwrap_or_else(|| panic!("D{n} answered; log:\n{}", w.log_text()));
        assert_eq!(
            untagged(&reply),
            expected("200 OK", "udp", n, "MESSAGE", Some(reference(body))),
            "D{n}"
        );
    }
    // A retransmission of D4 (same unit and ref): answered again, stored once.
    let again = request("MESSAGE", "udp", 4, "application/scaip+xml", D[3]);
    let reply =
        udp_exchange(&socket, udp, again.as_bytes()).expect("the retransmission is answered");
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");

    // D9 over TCP, as chai-sip sends it (to sip:alarm@…;transport=tcp): a final 200. Then an
    // OPTIONS probe and an INVITE on the same connection, each answered in order.
    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).expect("tcp");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut sent = request("MESSAGE", "tcp", 9, "application/scaip+xml", D[8]);
    sent.push_str(&request("OPTIONS", "tcp", 10, "application/scaip+xml", ""));
    sent.push_str(&request("INVITE", "tcp", 11, "application/sdp", "v=0\r\n"));
    // Sent in two pieces, the first ending inside a header: framing is by Content-Length.
    let (a, b) = sent.split_at(sent.len() / 3);
    stream.write_all(a.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b.as_bytes()).expect("write");
    let want = [
        expected("200 OK", "tcp", 9, "MESSAGE", Some("787025300001")),
        expected("200 OK", "tcp", 10, "OPTIONS", None),
        expected("405 Method Not Allowed", "tcp", 11, "INVITE", None),
    ]
    .concat();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want.len() {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let got = String::from_utf8_lossy(&got);
    let got: String = got.split_inclusive("\r\n\r\n").map(untagged).collect();
    assert_eq!(got, want, "TCP answers in order");

    // Another media type: kept, reaches an operator, answered 415.
    let json = request(
        "MESSAGE",
        "udp",
        12,
        "application/json",
        r#"{"alarm":true}"#,
    );
    let reply = udp_exchange(&socket, udp, json.as_bytes()).expect("answered");
    assert!(
        reply.starts_with("SIP/2.0 415 Unsupported Media Type\r\n"),
        "{reply}"
    );
    // A body that is not SCAIP: kept, answered 400.
    let broken = request(
        "MESSAGE",
        "udp",
        13,
        "application/scaip+xml",
        "<mrq><ref>1</ref>",
    );
    let reply = udp_exchange(&socket, udp, broken.as_bytes()).expect("answered");
    assert!(reply.starts_with("SIP/2.0 400 Bad Request\r\n"), "{reply}");
    // Not SIP at all: no answer, quarantined.
    socket
        .set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout");
    assert_eq!(udp_exchange(&socket, udp, b"GET / HTTP/1.0\r\n\r\n"), None);

    // In Postgres: every report once; alarms on their units; heartbeats raise nothing.
    let signals = |account: &str| {
        db.count(&format!(
            "SELECT count(*) FROM signals WHERE source = 'scaip' AND account = '{account}'"
        ))
    };
    assert_eq!(
        signals("26317"),
        2,
        "D1 and D4 (its retransmission not twice)"
    );
    assert_eq!(signals("10149471"), 2);
    assert_eq!(signals("999998"), 3);
    assert_eq!(signals("8031372"), 1);
    assert_eq!(signals("__CID__"), 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM signals s JOIN devices d ON d.id = s.device_id \
             WHERE s.source = 'scaip' AND d.account = '8031372'"
        ),
        1,
        "the unit registered as 08031372 is the cid \" 8031372\""
    );
    let alarms = wait_until(Duration::from_secs(20), || {
        db.count(
            "SELECT count(*) FROM incidents i JOIN devices d ON d.id = i.device_id \
             WHERE d.protocol = 'scaip' AND i.priority = 'life_critical'",
        ) == 4
    });
    assert!(
        alarms,
        "one life-critical incident per alarming unit: {}",
        db.query("SELECT string_agg(i.id || ' ' || i.kind || ' ' || coalesce(d.account, '-'), '; ') FROM incidents i LEFT JOIN devices d ON d.id = i.device_id")
    );
    // The unknown unit's alarm, the other media type and the unreadable body: in the queue.
    let problems = wait_until(Duration::from_secs(20), || {
        db.count(
            "SELECT count(*) FROM triaged t JOIN signals s ON s.id = t.signal_id \
             WHERE s.source = 'scaip' AND s.device_id IS NULL",
        ) == 3
    });
    assert!(problems, "problem signals triaged: {}", db.query("SELECT string_agg(coalesce(account, '-') || ' ' || kind, '; ') FROM signals WHERE device_id IS NULL"));
    assert!(
        db.count("SELECT count(*) FROM quarantine WHERE source = 'scaip'") >= 3,
        "the 415, the 400 and the non-SIP bytes are kept: {}",
        db.query("SELECT string_agg(reason_code || ' ' || reason, '; ') FROM quarantine")
    );
    // The stored report keeps every element the unit sent.
    assert_eq!(
        db.query(
            "SELECT decoded->'frame'->>'ref' || ' ' || (decoded->'frame'->'elements')::text FROM signals \
             WHERE account = '26317' AND decoded->'frame'->>'ref' = '00001A85'"
        ),
        r#"00001A85 [["ref", "00001A85"], ["cha", "0"], ["mty", "PI"], ["cid", "26317"], ["dty", "02"], ["did", "00"], ["crd", "no-voice:"], ["stc", "102"]]"#
    );
    assert!(w.metric("warden_scaip_replies_total{transport=\"udp\",reply=\"200\"}") >= 9.0);
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// The value of `name` in a `WWW-Authenticate: Digest …` header of `reply`.
fn challenge_param(reply: &str, name: &str) -> String {
    let line = reply
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate: Digest "))
        .unwrap_or_else(|| panic!("a digest challenge: {reply}"));
    let start = line.find(&format!("{name}=\"")).expect("param") + name.len() + 2;
    let end = line[start..].find('"').expect("closing quote") + start;
    line[start..end].to_owned()
}

/// A unit registered with `--sip-password` must authenticate each report with a SIP digest
/// for its own cid: without one it is challenged (401, nothing stored), with another unit's
/// credentials or a wrong password it is refused and the attempt kept, with its own it is
/// heard. Its password is printed once; only HA1 is stored.
#[test]
fn a_unit_with_a_sip_password_speaks_only_with_its_own_digest() {
    let db = TestDb::create("e2e_scaip_auth");
    let udp = free_port();
    let w = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\n[scaip]\nudp = \"127.0.0.1:{udp}\"\n",
        db.url
    ));
    assert!(wait_until(Duration::from_secs(30), || w
        .metric("warden_engine_running")
        > 0.5));
    let out = w.cli(&[
        "device",
        "add",
        "--account",
        "55555",
        "--protocol",
        "scaip",
        "--sip-password",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let password = printed
        .lines()
        .find_map(|l| l.strip_prefix("sip user 55555 realm warden password "))
        .unwrap_or_else(|| panic!("the password is printed once: {printed}"))
        .trim()
        .to_owned();
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM scaip_auth WHERE ha1 = '{}'",
            md5_hex(&format!("55555:warden:{password}"))
        )) == 1,
        "only HA1 is stored"
    );
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let body = "<mrq><ref>A1</ref><mty>ME</mty><cid>55555</cid><stc>10</stc></mrq>";
    let plain = request("MESSAGE", "udp", 20, "application/scaip+xml", body);

    // No credentials: challenged, nothing stored.
    let reply = udp_exchange(&socket, udp, plain.as_bytes()).expect("answered");
    assert!(reply.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{reply}");
    let nonce = challenge_param(&reply, "nonce");
    assert_eq!(challenge_param(&reply, "realm"), "warden");
    let uri = "sip:alarm@127.0.0.1;transport=udp";
    let with_auth = |user: &str, pass: &str| {
        let ha1 = md5_hex(&format!("{user}:warden:{pass}"));
        let ha2 = md5_hex(&format!("MESSAGE:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        plain.replacen(
            "Content-Type:",
            &format!(
                "Authorization: Digest username=\"{user}\", realm=\"warden\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5\r\nContent-Type:"
            ),
            1,
        )
    };
    // A wrong password, and another unit's name: refused, kept.
    for (user, pass) in [("55555", "not the password"), ("66666", password.as_str())] {
        let reply = udp_exchange(&socket, udp, with_auth(user, pass).as_bytes()).expect("answered");
        assert!(
            reply.starts_with("SIP/2.0 401 Unauthorized\r\n"),
            "{user}: {reply}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM signals WHERE source = 'scaip'"),
        0
    );
    assert!(wait_until(Duration::from_secs(5), || db.count(
        "SELECT count(*) FROM quarantine WHERE reason_code = 'scaip_unauthenticated'"
    ) == 2));
    // Its own digest: heard, answered with its reference.
    let reply =
        udp_exchange(&socket, udp, with_auth("55555", &password).as_bytes()).expect("answered");
    assert!(
        reply.starts_with("SIP/2.0 200 OK\r\n") && reply.contains("<ref>A1</ref>"),
        "{reply}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM signals s JOIN devices d ON d.id = s.device_id WHERE d.account = '55555'"),
        1
    );
}
