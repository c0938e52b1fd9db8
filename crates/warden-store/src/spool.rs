//! The local spool: where the writer makes records durable while Postgres is unreachable or
//! slower than the senders' acknowledgement windows.
//!
//! A directory of segment files (`00000000000000000001.seg`, …), appended in order. Each
//! record is framed as
//!
//! ```text
//! [len: u32 LE] [crc: u32 LE, CRC-32C of the body] [body: len bytes, JSON of one Record]
//! ```
//!
//! and a batch of records is fsynced before any of them is answered, so "durable" means
//! committed in Postgres *or* on disk here. The drain reads records back in order, the writer
//! commits them (skipping ids already stored, so a drain cut short by a crash is not written
//! twice), and only then is the head advanced: `drained` holds the segment and offset of the
//! first record not yet committed, written atomically (temporary file, fsync, rename). Segments
//! wholly drained are deleted.
//!
//! On open the segments are read back and checked: a torn record at the very end of the last
//! segment (the process died inside an append, before the fsync that would have let anyone be
//! acknowledged) is cut off; a record whose checksum fails anywhere else is corruption: the
//! rest of that segment is moved aside to `*.corrupt` (kept, never deleted), logged and
//! counted, and reading goes on with the next segment.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crc::{CRC_32_ISCSI, Crc};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use warden_types::Source;

use crate::model::{NewQuarantine, NewSignal, Record};

const CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);
/// A segment is closed and a new one started once it holds this much.
const SEGMENT_BYTES: u64 = if cfg!(test) {
    64 * 1024
} else {
    16 * 1024 * 1024
};
/// Largest record body accepted on read (a record is a signal of at most a few KiB).
const MAX_BODY: u32 = 16 * 1024 * 1024;
const DRAINED: &str = "drained";

/// Why the spool could not take or give back records.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes` already: the records were not written (not durable).
    #[error("spool full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("spool i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One record as written to the spool: a signal or a quarantine record with every field.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Body {
    Signal {
        id: Uuid,
        source: Source,
        link_id: String,
        account: Option<String>,
        device_id: Option<i64>,
        kind: String,
        raw: Vec<u8>,
        decoded: serde_json::Value,
        received_ns: i64,
        dedupe_key: Option<String>,
        spooled_ns: i64,
    },
    Quarantine {
        id: Uuid,
        source: Source,
        link_id: String,
        raw: Vec<u8>,
        reason_code: String,
        reason: String,
        received_ns: i64,
        spooled_ns: i64,
    },
}

/// Times travel as nanoseconds since the epoch in an `i64` (serde's tagged enums cannot
/// carry an `i128`), which reaches the year 2262.
fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn time_of(ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The quarantine reason codes are a small fixed set of `&'static str`; one read back from
/// the spool is mapped to the same static string, learning (once) a code this build did not
/// name.
fn reason_code(code: &str) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let codes = CODES.get_or_init(|| Mutex::new(Vec::new()));
    let mut codes = codes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = codes.iter().find(|c| **c == code) {
        return known;
    }
    let code: &'static str = Box::leak(code.to_owned().into_boxed_str());
    codes.push(code);
    code
}

impl Body {
    fn of(record: &Record, now: OffsetDateTime) -> Body {
        let spooled_ns = nanos(now);
        match record {
            Record::Signal(s) => Body::Signal {
                id: s.id,
                source: s.source,
                link_id: s.link_id.clone(),
                account: s.account.clone(),
                device_id: s.device_id,
                kind: s.kind.clone(),
                raw: s.raw.clone(),
                decoded: s.decoded.clone(),
                received_ns: nanos(s.received_at),
                dedupe_key: s.dedupe_key.clone(),
                spooled_ns,
            },
            Record::Quarantine(q) => Body::Quarantine {
                id: q.id,
                source: q.source,
                link_id: q.link_id.clone(),
                raw: q.raw.clone(),
                reason_code: q.reason_code.to_owned(),
                reason: q.reason.clone(),
                received_ns: nanos(q.received_at),
                spooled_ns,
            },
        }
    }

    fn into_spooled(self) -> Spooled {
        match self {
            Body::Signal {
                id,
                source,
                link_id,
                account,
                device_id,
                kind,
                raw,
                decoded,
                received_ns,
                dedupe_key,
                spooled_ns,
            } => Spooled {
                record: Record::Signal(NewSignal {
                    id,
                    source,
                    link_id,
                    account,
                    device_id,
                    kind,
                    raw,
                    decoded,
                    received_at: time_of(received_ns),
                    dedupe_key,
                }),
                spooled_at: time_of(spooled_ns),
            },
            Body::Quarantine {
                id,
                source,
                link_id,
                raw,
                reason_code: code,
                reason,
                received_ns,
                spooled_ns,
            } => Spooled {
                record: Record::Quarantine(NewQuarantine {
                    id,
                    source,
                    link_id,
                    raw,
                    reason_code: reason_code(&code),
                    reason,
                    received_at: time_of(received_ns),
                }),
                spooled_at: time_of(spooled_ns),
            },
        }
    }
}

/// A record read back from the spool, with when it was spooled.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    pub record: Record,
    pub spooled_at: OffsetDateTime,
}

/// Frames one record: header and body.
fn frame(record: &Record, now: OffsetDateTime) -> Vec<u8> {
    frame_json(&Body::of(record, now))
}

/// Frames any plain-data value (the spool's records, the journals' entries): the header
/// and the JSON body.
pub(crate) fn frame_json<B: Serialize>(value: &B) -> Vec<u8> {
    // Plain data: serialising it cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&CRC.checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// What [`parse`] found in a segment's bytes.
#[derive(Debug, PartialEq)]
pub(crate) enum Tail {
    /// Every byte was a whole, valid record.
    Clean,
    /// The bytes from `at` on are an incomplete record (a torn append).
    Torn { at: u64 },
    /// The record at `at` fails its checksum or does not decode.
    Corrupt { at: u64, why: String },
}

/// Reads the records framed in `bytes` (a segment's content from `start`), with the offset
/// just past each, and how the bytes end. Pure; never panics.
pub(crate) fn parse(bytes: &[u8], start: u64) -> (Vec<(Spooled, u64)>, Tail) {
    let (bodies, tail) = parse_json::<Body>(bytes, start);
    let records = bodies
        .into_iter()
        .map(|(b, end)| (b.into_spooled(), end))
        .collect();
    (records, tail)
}

/// [`parse`] for any framed JSON value.
pub(crate) fn parse_json<B: serde::de::DeserializeOwned>(
    bytes: &[u8],
    start: u64,
) -> (Vec<(B, u64)>, Tail) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let at = start + pos as u64;
        let rest = &bytes[pos..];
        if rest.is_empty() {
            return (out, Tail::Clean);
        }
        if rest.len() < 8 {
            return (out, Tail::Torn { at });
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_BODY {
            return (
                out,
                Tail::Corrupt {
                    at,
                    why: format!("record length {len} is beyond any record"),
                },
            );
        }
        let len = len as usize;
        if rest.len() - 8 < len {
            return (out, Tail::Torn { at });
        }
        let body = &rest[8..8 + len];
        if CRC.checksum(body) != crc {
            return (
                out,
                Tail::Corrupt {
                    at,
                    why: "checksum mismatch".to_owned(),
                },
            );
        }
        match serde_json::from_slice::<B>(body) {
            Ok(b) => {
                pos += 8 + len;
                out.push((b, start + pos as u64));
            }
            Err(e) => {
                return (
                    out,
                    Tail::Corrupt {
                        at,
                        why: format!("record does not decode: {e}"),
                    },
                );
            }
        }
    }
}

/// The records in the spool, how much space they take, and since when it holds any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolDepth {
    /// Records written and not yet drained.
    pub records: u64,
    /// Bytes of the segments not yet deleted (drained records of the head segment included).
    pub bytes: u64,
    /// When the oldest undrained record was spooled.
    pub oldest: Option<OffsetDateTime>,
}

/// The spool directory, open for appending and draining. Not thread-safe: the writer task
/// owns it (its file work runs on the blocking pool).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment numbers on disk, oldest first; the last one is appended to.
    segments: VecDeque<u64>,
    /// Bytes of each segment in `segments`.
    sizes: VecDeque<u64>,
    /// The head: segment number and offset of the first undrained record.
    head: (u64, u64),
    /// Undrained records, oldest first, with the segment and offset just past each: the
    /// spool is small enough to keep in memory (bounded by `max_bytes`), so the drain never
    /// reads the files again.
    pending: VecDeque<(Spooled, (u64, u64))>,
    append: Option<File>,
    /// Records found corrupt when the spool was opened.
    pub corrupt: u64,
}

fn segment_name(n: u64) -> String {
    format!("{n:020}.seg")
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, reading back every undrained record.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut numbers: Vec<u64> = fs::read_dir(dir)
            .map_err(io_at(dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        let head = read_head(dir)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segments: VecDeque::new(),
            sizes: VecDeque::new(),
            head,
            pending: VecDeque::new(),
            append: None,
            corrupt: 0,
        };
        let last = numbers.last().copied();
        for n in numbers {
            let path = dir.join(segment_name(n));
            if n < head.0 {
                // Drained before a crash that came between the head's update and the delete.
                fs::remove_file(&path).map_err(io_at(&path))?;
                continue;
            }
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            let start = if n == head.0 { head.1 } else { 0 };
            let from = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let (records, tail) = parse(&bytes[from..], start);
            let mut size = bytes.len() as u64;
            match tail {
                Tail::Clean => {}
                Tail::Torn { at } if Some(n) == last => {
                    tracing::warn!(segment = %path.display(), at, "spool: cutting a torn record at the end (never acknowledged)");
                    cut(&path, at)?;
                    size = at;
                }
                Tail::Torn { at } | Tail::Corrupt { at, .. } => {
                    let why = match &tail {
                        Tail::Corrupt { why, .. } => why.clone(),
                        _ => "incomplete record inside the spool".to_owned(),
                    };
                    let aside = dir.join(format!("{}.{at}.corrupt", segment_name(n)));
                    let skipped = bytes.get(usize::try_from(at).unwrap_or(usize::MAX)..);
                    fs::write(&aside, skipped.unwrap_or_default()).map_err(io_at(&aside))?;
                    cut(&path, at)?;
                    size = at;
                    spool.corrupt += 1;
                    tracing::error!(segment = %path.display(), at, %why, kept = %aside.display(), "spool: corrupt record; the rest of the segment is kept aside");
                }
            }
            spool
                .pending
                .extend(records.into_iter().map(|(record, end)| (record, (n, end))));
            spool.segments.push_back(n);
            spool.sizes.push_back(size);
        }
        if spool.segments.is_empty() {
            spool.start_segment(head.0.max(1))?;
        }
        Ok(spool)
    }

    /// How deep the spool is.
    pub fn depth(&self) -> SpoolDepth {
        SpoolDepth {
            records: self.pending.len() as u64,
            bytes: self.sizes.iter().sum(),
            oldest: self.pending.front().map(|(s, _)| s.spooled_at),
        }
    }

    /// The configured bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// True when nothing waits to be drained.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Appends `records` and fsyncs them: when this returns Ok, every one is durable. All or
    /// nothing against `max_bytes`.
    pub fn append(&mut self, records: &[&Record], now: OffsetDateTime) -> Result<(), SpoolError> {
        let frames: Vec<Vec<u8>> = records.iter().map(|r| frame(r, now)).collect();
        let size: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let used: u64 = self.sizes.iter().sum();
        if used + size > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }
        if self.sizes.back().copied().unwrap_or(0) >= SEGMENT_BYTES {
            let next = self.segments.back().copied().unwrap_or(0) + 1;
            self.start_segment(next)?;
        }
        let n = self.segments.back().copied().unwrap_or(1);
        let path = self.dir.join(segment_name(n));
        let file = if let Some(f) = &mut self.append {
            f
        } else {
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_at(&path))?;
            self.append.insert(f)
        };
        let mut end = self.sizes.back().copied().unwrap_or(0);
        let mut all = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for f in &frames {
            all.extend_from_slice(f);
        }
        let written = file.write_all(&all).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // What was written of this append is unknown: cut back to the last good end so a
            // later append does not follow a torn record.
            self.append = None;
            let _ = cut(&path, end);
            return Err(SpoolError::Io { path, source: e });
        }
        for (record, f) in records.iter().zip(&frames) {
            end += f.len() as u64;
            self.pending.push_back((
                Spooled {
                    record: (*record).clone(),
                    spooled_at: now,
                },
                (n, end),
            ));
        }
        if let Some(s) = self.sizes.back_mut() {
            *s = end;
        }
        Ok(())
    }

    /// The oldest `max` undrained records, in order (not removed: see [`Spool::advance`]).
    pub fn peek(&self, max: usize) -> Vec<Spooled> {
        self.pending
            .iter()
            .take(max)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Marks the oldest `n` records as drained (committed in Postgres): the head moves past
    /// them durably and wholly drained segments are deleted.
    pub fn advance(&mut self, n: usize) -> Result<(), SpoolError> {
        let Some(&(_, head)) = self.pending.iter().take(n).next_back() else {
            return Ok(());
        };
        self.pending.drain(..n.min(self.pending.len()));
        let mut head = head;
        // The head at the very end of a closed segment is the start of the next one.
        if let Some(i) = self.segments.iter().position(|s| *s == head.0)
            && i + 1 < self.segments.len()
            && self.sizes.get(i) == Some(&head.1)
        {
            head = (self.segments[i + 1], 0);
        }
        write_head(&self.dir, head)?;
        self.head = head;
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| *s < head.0) {
            if let Some(s) = self.segments.pop_front() {
                self.sizes.pop_front();
                let path = self.dir.join(segment_name(s));
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        if self.pending.is_empty() {
            // Everything drained: start afresh with an empty segment, so the bytes on disk
            // (and the bound) count only what waits.
            let next = self.segments.back().copied().unwrap_or(0) + 1;
            self.start_segment(next)?;
            write_head(&self.dir, (next, 0))?;
            self.head = (next, 0);
            while self.segments.len() > 1 {
                if let Some(s) = self.segments.pop_front() {
                    self.sizes.pop_front();
                    let path = self.dir.join(segment_name(s));
                    fs::remove_file(&path).map_err(io_at(&path))?;
                }
            }
        }
        Ok(())
    }

    fn start_segment(&mut self, n: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(n));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        f.sync_all().map_err(io_at(&path))?;
        sync_dir(&self.dir)?;
        self.append = Some(f);
        self.segments.push_back(n);
        self.sizes.push_back(0);
        Ok(())
    }
}

/// Truncates `path` to `len` bytes, durably.
pub(crate) fn cut(path: &Path, len: u64) -> Result<(), SpoolError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(io_at(path))
}

fn read_head(dir: &Path) -> Result<(u64, u64), SpoolError> {
    let path = dir.join(DRAINED);
    let mut text = String::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_string(&mut text).map_err(io_at(&path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_at(&path)(e)),
    }
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(seg)), Some(Ok(off))) => Ok((seg, off)),
        _ => Err(SpoolError::Io {
            path,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable head {text:?}"),
            ),
        }),
    }
}

fn write_head(dir: &Path, (seg, off): (u64, u64)) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{DRAINED}.tmp"));
    let path = dir.join(DRAINED);
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(format!("{seg} {off}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)
}

/// Used by tests: the bytes of the segment being appended to.
#[cfg(test)]
fn last_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .expect("test setup")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    names.pop().expect("test setup")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(i: u32) -> Record {
        Record::Signal(NewSignal {
            id: Uuid::now_v7(),
            source: Source::Serial,
            link_id: "serial:ttyS0".to_owned(),
            account: Some(format!("{i:04}")),
            device_id: Some(i64::from(i)),
            kind: "event".to_owned(),
            raw: vec![0, 1, 2, 0xff, u8::try_from(i % 256).expect("test setup")],
            decoded: serde_json::json!({"v": 2, "i": i}),
            received_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000)
                .expect("test setup"),
            dedupe_key: i.is_multiple_of(2).then(|| format!("k{i}")),
        })
    }

    fn quarantine() -> Record {
        Record::Quarantine(NewQuarantine {
            id: Uuid::now_v7(),
            source: Source::Mqtt,
            link_id: "mqtt:x".to_owned(),
            raw: b"{bad".to_vec(),
            reason_code: "bad_json",
            reason: "not json".to_owned(),
            received_at: OffsetDateTime::now_utc(),
        })
    }

    fn records(s: &Spool) -> Vec<Record> {
        s.peek(usize::MAX).into_iter().map(|s| s.record).collect()
    }

    #[test]
    fn records_come_back_in_order_after_reopen() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let written: Vec<Record> = (0..10).map(signal).chain([quarantine()]).collect();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
            let refs: Vec<&Record> = written.iter().collect();
            s.append(&refs[..4], now).expect("test setup");
            s.append(&refs[4..], now).expect("test setup");
            assert_eq!(s.depth().records, 11);
        }
        let s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert_eq!(records(&s), written);
        assert_eq!(s.depth().oldest, Some(now));
    }

    #[test]
    fn drained_records_are_not_read_back_and_empty_spool_restarts() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let written: Vec<Record> = (0..6).map(signal).collect();
        let refs: Vec<&Record> = written.iter().collect();
        let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        s.append(&refs, now).expect("test setup");
        s.advance(4).expect("test setup");
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert_eq!(records(&s), written[4..]);
        s.advance(2).expect("test setup");
        assert!(s.is_empty());
        assert_eq!(s.depth().bytes, 0);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert!(s.is_empty());
        assert_eq!(
            fs::read_dir(dir.path())
                .expect("test setup")
                .filter(|e| e
                    .as_ref()
                    .expect("test setup")
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg"))
                .count(),
            1
        );
    }

    #[test]
    fn a_torn_append_at_the_end_is_cut_and_later_appends_read_back() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let a = signal(1);
        let b = signal(2);
        {
            let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
            s.append(&[&a], now).expect("test setup");
        }
        // A crash inside an append: half a record at the end.
        let seg = last_segment(dir.path());
        let half = frame(&b, now);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("test setup");
        f.write_all(&half[..half.len() / 2]).expect("test setup");
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert_eq!(records(&s), vec![a.clone()]);
        assert_eq!(s.corrupt, 0);
        s.append(&[&b], now).expect("test setup");
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert_eq!(records(&s), vec![a, b]);
    }

    #[test]
    fn a_flipped_bit_is_corruption_kept_aside() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let written: Vec<Record> = (0..3).map(signal).collect();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).expect("test setup");
            s.append(&written.iter().collect::<Vec<_>>(), now)
                .expect("test setup");
        }
        let seg = last_segment(dir.path());
        let mut bytes = fs::read(&seg).expect("test setup");
        let second = frame(&written[0], now).len();
        bytes[second + 20] ^= 0x10;
        fs::write(&seg, &bytes).expect("test setup");
        let s = Spool::open(dir.path(), 1 << 20).expect("test setup");
        assert_eq!(records(&s), written[..1]);
        assert_eq!(s.corrupt, 1);
        let aside: Vec<_> = fs::read_dir(dir.path())
            .expect("test setup")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".corrupt"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            fs::read(aside[0].path()).expect("test setup").len(),
            bytes.len() - second
        );
    }

    #[test]
    fn full_spool_refuses_whole_appends() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let one = frame(&signal(1), now).len() as u64;
        let mut s = Spool::open(dir.path(), one * 2 + one / 2).expect("test setup");
        let r: Vec<Record> = (0..3).map(signal).collect();
        s.append(&[&r[0], &r[1]], now).expect("test setup");
        assert!(matches!(
            s.append(&[&r[2]], now),
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(s.depth().records, 2);
        s.advance(2).expect("test setup");
        s.append(&[&r[2]], now).expect("test setup");
    }

    #[test]
    fn records_span_segments() {
        let dir = tempfile::tempdir().expect("test setup");
        let now = OffsetDateTime::now_utc();
        let mut s = Spool::open(dir.path(), 1 << 30).expect("test setup");
        // Large raw bytes so a few records fill a segment.
        let big: Vec<Record> = (0..6)
            .map(|i| {
                let Record::Signal(mut sig) = signal(i) else {
                    unreachable!()
                };
                sig.raw = vec![7; 30_000];
                Record::Signal(sig)
            })
            .collect();
        for r in &big {
            s.append(&[r], now).expect("test setup");
        }
        assert!(s.segments.len() > 1, "{:?}", s.segments);
        s.advance(3).expect("test setup");
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).expect("test setup");
        assert_eq!(records(&s), big[3..]);
        s.advance(3).expect("test setup");
        assert!(s.is_empty());
    }

    proptest::proptest! {
        /// Whatever the bytes of a segment, parsing never panics and only whole records
        /// come back.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let (records, _) = parse(&bytes, 0);
            for (_, end) in records {
                proptest::prop_assert!(end <= bytes.len() as u64);
            }
        }
    }
}
