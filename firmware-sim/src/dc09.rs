//! Simulated SIA DC-09 transmitters (IP alarm units): each keeps a TCP connection to the
//! receiver, sends a `NULL` link test every `link_test` and now and then a Contact ID event
//! (`ADM-CID`), encrypted when it has a key, one message at a time, and counts the answers
//! (ACK, NAK, DUH, none). A NAK's clock is not chased: the unit simply sends its next message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warden_protocol::Account;
use warden_protocol::dc09::{self, Dc09Key, Dc09Message, Timestamp, Token};

/// One transmitter.
#[derive(Debug, Clone)]
pub struct Dc09Unit {
    pub account: String,
    pub key: Option<Dc09Key>,
    /// The receiver's TCP address.
    pub receiver: SocketAddr,
    /// Time between link tests.
    pub link_test: Duration,
    /// Every this many link tests, an event instead (0: never).
    pub event_every: u32,
}

/// Answers counted over a unit's life.
#[derive(Debug, Default)]
pub struct Answers {
    pub acks: AtomicU64,
    pub refusals: AtomicU64,
    pub unanswered: AtomicU64,
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp::from_unix(i64::try_from(secs).unwrap_or(0))
        .or_else(|| Timestamp::from_unix(0))
        .unwrap_or_else(|| unreachable!())
}

/// Runs `unit` until `stop`, reconnecting after a lost connection.
pub async fn run(unit: Dc09Unit, answers: Arc<Answers>, stop: CancellationToken) {
    let mut sequence: u16 = 0;
    let mut tests: u32 = 0;
    while !stop.is_cancelled() {
        let Ok(mut conn) = TcpStream::connect(unit.receiver).await else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        };
        loop {
            sequence = if sequence >= 9999 { 1 } else { sequence + 1 };
            tests += 1;
            let event = unit.event_every > 0 && tests.is_multiple_of(unit.event_every);
            let msg = Dc09Message {
                token: if event { Token::AdmCid } else { Token::Null },
                sequence,
                receiver: None,
                line: None,
                account: Account::new(unit.account.as_bytes()),
                // A pendant press (Contact ID 101) or an empty link test.
                data: if event {
                    format!("#{}|1101 01 001", unit.account)
                } else {
                    String::new()
                },
                xdata: Vec::new(),
                timestamp: Some(now()),
            };
            let frame = match &unit.key {
                Some(k) => dc09::encode_encrypted(&msg, k, u64::from(sequence)),
                None => dc09::encode(&msg),
            };
            if conn.write_all(&frame).await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let reply = buf.get(..n).unwrap_or_default();
                    if reply.windows(4).any(|w| w == b"ACK\"") {
                        answers.acks.fetch_add(1, Ordering::Relaxed);
                    } else {
                        answers.refusals.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => break,
                Err(_) => {
                    answers.unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(unit.link_test) => {}
            }
        }
    }
}
