//! DC-09 load: many IP transmitters holding TCP connections to the real `wardend` and
//! reporting at once (link tests, every fifth message a pendant press), then a UDP burst.
//! Measured at the transmitters: time from sending a message to its ACK (p50, p99, max);
//! measured at the daemon: CPU seconds and resident memory. Every ACKed message must be in
//! Postgres once; figures are printed, never asserted.
//!
//! ```sh
//! DATABASE_URL=$(./tests/pg.sh start) SQLX_OFFLINE=true cargo build --release --bin wardend
//! WARDEN_PROFILE=release DATABASE_URL=… cargo bench -p warden-benches --bench dc09_load
//! ```
//!
//! Without `--bench` (under `cargo test`) a small smoke run: 20 transmitters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use warden_protocol::Account;
use warden_protocol::dc09::{self, Dc09Message, Timestamp, Token};
use warden_tests::{TestDb, Wardend, free_port, wait_until};

#[path = "common/copy.rs"]
mod copy;
use copy::SIGNAL_JSON;

/// The daemon's CPU time (user + system) in seconds, and its resident memory in MiB.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // Linux reports CPU time in clock ticks of 1/100 s.
    (ticks / 100.0, rss_kib / 1024.0)
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp::from_unix(i64::try_from(secs).unwrap_or(0)).expect("timestamp")
}

fn frame(account: &str, sequence: u16, event: bool) -> Vec<u8> {
    dc09::encode(&Dc09Message {
        token: if event { Token::AdmCid } else { Token::Null },
        sequence,
        receiver: None,
        line: None,
        account: Account::new(account.as_bytes()),
        data: if event {
            format!("#{account}|1101 01 001")
        } else {
            String::new()
        },
        xdata: Vec::new(),
        timestamp: Some(now()),
    })
}

/// One transmitter: `messages` in turn on one connection; the latencies of those ACKed.
async fn transmitter(port: u16, account: String, messages: u16) -> Vec<Duration> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut out = Vec::with_capacity(usize::from(messages));
    for seq in 1..=messages {
        let sent = Instant::now();
        conn.write_all(&frame(&account, seq, seq % 5 == 0))
            .await
            .expect("send");
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await
            && buf
                .get(..n)
                .is_some_and(|r| r.windows(4).any(|w| w == b"ACK\""))
        {
            out.push(sent.elapsed());
        }
    }
    out
}

/// Transmitter `n`'s account: DC-09 accounts are 3 to 16 hex digits.
fn account(n: usize) -> String {
    (100_000 + n).to_string()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (units, messages, burst): (usize, u16, usize) =
        if full { (1000, 10, 5000) } else { (20, 5, 200) };
    let db = TestDb::create("dc09_load");
    let (tcp, udp) = (free_port(), free_port());
    let w = Wardend::start(&format!(
        "[database]\nurl = \"{}\"\nmax_connections = 16\n[dc09]\ntcp = \"127.0.0.1:{tcp}\"\nudp = \"127.0.0.1:{udp}\"\nmax_connections = 5000\nmax_connections_per_address = 5000\n",
        db.url
    ));
    assert!(
        wait_until(Duration::from_mins(1), || w.metric("warden_engine_running")
            > 0.5),
        "wardend up:\n{}",
        w.log_text()
    );
    let pid = w.pid().expect("daemon pid");
    // Register the transmitters in one statement (the CLI would take minutes for 1,000).
    db.query(&format!(
        "INSERT INTO devices (account, protocol) SELECT (100000 + n)::text, 'dc09' FROM generate_series(1, {}) n",
        units + 1
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "dc09_load: {units} TCP transmitters x {messages} messages, then {burst} UDP datagrams"
    );

    let (cpu0, _) = usage(pid);
    let started = Instant::now();
    let mut lat: Vec<Duration> = rt.block_on(async {
        let tasks: Vec<_> = (1..=units)
            .map(|n| tokio::spawn(transmitter(tcp, account(n), messages)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("transmitter"));
        }
        all
    });
    let tcp_secs = started.elapsed().as_secs_f64();
    let (cpu1, rss_tcp) = usage(pid);
    lat.sort();
    let sent = units * usize::from(messages);
    #[allow(clippy::cast_precision_loss)]
    let rate = lat.len() as f64 / tcp_secs;
    println!(
        "  TCP: {} of {sent} ACKed in {tcp_secs:.2} s = {rate:.0}/s; ACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         wardend CPU {:.2} s ({:.0}% of a core), RSS {rss_tcp:.0} MiB with {units} connections",
        lat.len(),
        quantile(&lat, 0.5).as_secs_f64() * 1e3,
        quantile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / tcp_secs,
    );

    // The same run's raw-COPY ceiling: the TCP phase's rows written again with `raw_copy`.
    let (copy_rows, copy_rate) = rt.block_on(async {
        let rows: Vec<_> = db
            .query(&format!(
                "{SIGNAL_JSON} WHERE source = 'dc09' ORDER BY received_at) t"
            ))
            .lines()
            .map(copy::signal_from_json)
            .collect();
        let store = warden_store::Store::connect(&db.url, 2)
            .await
            .expect("connect for COPY");
        let took = warden_store::raw_copy(&store, &rows)
            .await
            .expect("raw COPY");
        store.pool().close().await;
        #[allow(clippy::cast_precision_loss)]
        let per_s = rows.len() as f64 / took.as_secs_f64();
        (i64::try_from(rows.len()).unwrap_or(0), per_s)
    });
    println!(
        "  raw COPY of the same rows: {copy_rate:.0}/s; the TCP ACK rate is {:.2} of it",
        rate / copy_rate
    );

    // UDP burst: one socket, every datagram in flight at once, from one more account.
    let started = Instant::now();
    let acked: usize = rt.block_on(async {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        socket.connect(("127.0.0.1", udp)).await.expect("connect");
        let account = account(units + 1);
        for n in 0..burst {
            let seq = u16::try_from(n % 9999 + 1).unwrap_or(1);
            socket
                .send(&frame(&account, seq, false))
                .await
                .expect("send");
            // Datagrams with the same sequence within a second would be retransmissions.
            if n % 9999 == 9998 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
        }
        let mut acked = 0;
        let mut buf = [0u8; 256];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await
        {
            if buf
                .get(..n)
                .is_some_and(|r| r.windows(4).any(|w| w == b"ACK\""))
            {
                acked += 1;
            }
            if acked == burst {
                break;
            }
        }
        acked
    });
    let udp_secs = started.elapsed().as_secs_f64();
    let (cpu2, rss) = usage(pid);
    println!(
        "  UDP: {acked} of {burst} ACKed in {udp_secs:.2} s; wardend CPU {:.2} s, RSS {rss:.0} MiB",
        cpu2 - cpu1
    );
    // Every ACKed message is stored once (the UDP ones are all NULL link tests).
    // Less the COPY's rows (same accounts and source, new ids).
    let stored = db.count("SELECT count(*) FROM signals WHERE source = 'dc09'") - copy_rows;
    let expected = i64::try_from(lat.len() + acked).unwrap_or(i64::MAX);
    assert!(
        stored >= expected,
        "{stored} stored, {expected} acknowledged: an ACK without a stored signal"
    );
    println!("  stored: {stored} signals for {expected} ACKs");
}
