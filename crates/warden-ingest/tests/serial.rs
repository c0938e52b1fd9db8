//! Serial ingest against real Postgres (a database per test) and a real pseudo-terminal
//! pair: the receiver's side writes frames and reads the computer's ACK/NAK bytes.

use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;
use warden_ingest::serial::{LinkWatch, Timing, serve};
use warden_ingest::{DeviceCache, Ingest};
use warden_protocol::{ACK, NAK};
use warden_store::{DeviceProtocol, NewDevice, Store, WriterConfig, spawn_writer};

struct Rig {
    receiver: SerialStream,
    pool: PgPool,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<LinkWatch>,
}

async fn rig(pool: PgPool, window: Duration) -> Rig {
    let store = Store::from_pool(pool.clone());
    for account in ["1234", "0123"] {
        store
            .upsert_device(&NewDevice {
                test_interval_seconds: Some(86_400),
                ..NewDevice::new(account, DeviceProtocol::ContactId)
            })
            .await
            .expect("device");
    }
    let devices = DeviceCache::load(store.clone()).await.expect("cache");
    let stop = CancellationToken::new();
    let (writer, _) = spawn_writer(store.clone(), WriterConfig::default(), stop.clone());
    let ingest = Ingest::new(writer, devices, store, None);
    let (computer, receiver) = SerialStream::pair().expect("pty pair");
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut watch = LinkWatch::default();
        let _ = serve(
            computer,
            "serial:test",
            Timing::with_heartbeat_window(window),
            &ingest,
            &s,
            &mut watch,
        )
        .await;
        watch
    });
    Rig {
        receiver,
        pool,
        stop,
        task,
    }
}

impl Rig {
    /// Sends bytes as the receiver and waits for `n` answer bytes.
    async fn send(&mut self, bytes: &[u8], n: usize) -> Vec<u8> {
        self.receiver.write_all(bytes).await.expect("write");
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(4), self.receiver.read_exact(&mut got))
            .await
            .expect("answer within the receiver's 4 s window")
            .expect("read");
        got
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    async fn stop(self) -> LinkWatch {
        self.stop.cancel();
        self.task.await.expect("serve task")
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_alarm_is_acked_only_once_it_is_in_postgres(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_mins(1)).await;
    let answer = rig.send(b"5011 181234E10101001\x14", 1).await;
    assert_eq!(answer, [ACK]);
    // The ACK came back, so the row must already be committed and visible elsewhere.
    let n = rig
        .count("SELECT count(*) FROM signals WHERE account = '1234' AND kind = 'event' AND decoded #>> '{frame,event_code}' = '101'")
        .await;
    assert_eq!(n, 1);
    let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM signals WHERE account = '1234'")
        .fetch_one(&rig.pool)
        .await
        .expect("raw");
    assert_eq!(
        raw, b"5011 181234E10101001\x14",
        "the raw bytes are kept exactly"
    );
    rig.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn heartbeats_are_acked_and_recorded(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_mins(1)).await;
    assert_eq!(rig.send(b"1011           @    \x14", 1).await, [ACK]);
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'heartbeat'")
            .await,
        1
    );
    rig.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn bad_input_is_quarantined_and_the_neighbouring_alarms_still_arrive(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_mins(1)).await;
    // Garbage frame, good frame, bad Contact ID digits, unknown account, unsupported
    // protocol, good frame: one answer per DC4, in order.
    let input = b"\x01\x02garbage\x14\
5011 181234E10101001\x14\
5011 181234E1X101001\x14\
5011 189999E10101001\x14\
6011      1234BA0001\x14\
5000 180123E16200001\x14";
    let answers = rig.send(input, 6).await;
    assert_eq!(answers, [NAK, ACK, NAK, ACK, ACK, ACK]);
    // The two good frames, the unknown account's (stored without a device, to be triaged)
    // and the undecoded protocol's (an unreadable signal of the link): well framed, so each
    // reaches an operator; the malformed ones were NAKed for a resend.
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'event'")
            .await,
        4
    );
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM signals WHERE device_id IS NULL AND account = '9999' \
             AND decoded #>> '{problem,reason}' = 'unknown_account'"
        )
        .await,
        1
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM quarantine WHERE reason_code = 'bad_frame'")
            .await,
        2
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM quarantine WHERE reason_code = 'unknown_account'")
            .await,
        1
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM quarantine WHERE reason_code = 'unsupported_protocol'")
            .await,
        1
    );
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM quarantine WHERE reason_code = 'unknown_account'")
            .fetch_one(&rig.pool)
            .await
            .expect("reason");
    assert!(
        reason.contains("9999"),
        "the reason names the account: {reason}"
    );
    rig.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn an_oversized_frame_is_quarantined_nak_ed_once_and_the_next_frame_decodes(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_mins(1)).await;
    let mut input = vec![b'9'; 2000];
    input.push(0x14);
    input.extend_from_slice(b"5011 181234E10101001\x14");
    let answers = rig.send(&input, 2).await;
    assert_eq!(answers, [NAK, ACK]);
    assert_eq!(
        rig.count("SELECT count(*) FROM quarantine WHERE reason_code = 'oversized'")
            .await,
        1
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'event'")
            .await,
        1
    );
    rig.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_truncated_frame_followed_by_a_good_one_costs_only_itself(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_mins(1)).await;
    // The first frame lost its tail on the line; the receiver's next frame follows.
    let answers = rig.send(b"5011 1812\x145011 181234E10101001\x14", 2).await;
    assert_eq!(answers, [NAK, ACK]);
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'event'")
            .await,
        1
    );
    rig.stop().await;
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn silence_beyond_the_heartbeat_window_records_link_lost_then_restored(pool: PgPool) {
    let mut rig = rig(pool, Duration::from_millis(300)).await;
    assert_eq!(rig.send(b"1011           @    \x14", 1).await, [ACK]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'link_lost'")
            .await,
        1
    );
    let up: bool = sqlx::query_scalar("SELECT up FROM links WHERE id = 'serial:test'")
        .fetch_one(&rig.pool)
        .await
        .expect("link row");
    assert!(!up);
    assert_eq!(rig.send(b"1011           @    \x14", 1).await, [ACK]);
    assert_eq!(
        rig.count("SELECT count(*) FROM signals WHERE kind = 'link_restored'")
            .await,
        1
    );
    let watch = rig.stop().await;
    assert!(watch.up && watch.ever_up);
}

#[tokio::test]
async fn when_the_database_is_unreachable_the_receiver_gets_nak_not_ack() {
    // A pool that can never connect: the write fails, so the frame must not be ACKed.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    let store = Store::from_pool(pool);
    let devices = DeviceCache::load(store.clone()).await;
    assert!(devices.is_err(), "loading devices needs the database");
    let stop = CancellationToken::new();
    let writer_cfg = WriterConfig {
        commit_timeout: Duration::from_secs(1),
        ..WriterConfig::default()
    };
    let (writer, _) = spawn_writer(store.clone(), writer_cfg, stop.clone());
    // Heartbeats carry no account, so no device lookup is involved.
    let ingest = Ingest::new(writer, DeviceCache::empty(store.clone()), store, None);
    let (computer, mut receiver) = SerialStream::pair().expect("pty pair");
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut watch = LinkWatch::default();
        let _ = serve(
            computer,
            "serial:test",
            Timing::with_heartbeat_window(Duration::from_mins(1)),
            &ingest,
            &s,
            &mut watch,
        )
        .await;
    });
    receiver
        .write_all(b"1011           @    \x14")
        .await
        .expect("write");
    let mut answer = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(4), receiver.read_exact(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(answer, [NAK]);
    stop.cancel();
    let _ = task.await;
}
