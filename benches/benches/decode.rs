//! Decoder throughput per wire format, in frames per second on one core.
//!
//! Run: `cargo bench -p warden-benches --bench decode`. Criterion prints `thrpt` in
//! elements (frames) per second. Target: ≥ 1 M frames/s per core for Contact ID and Sur-Gard.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_protocol::Step;
use warden_protocol::contact_id::LineDecoder;
use warden_protocol::dc09::Dc09Decoder;
use warden_protocol::surgard::SurGardDecoder;

const FRAMES: usize = 1_000;

/// A realistic mix: mostly Contact ID events, some heartbeats.
fn surgard_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..FRAMES {
        if i % 10 == 0 {
            out.extend_from_slice(b"1011           @    \x14");
        } else {
            let q = if i % 3 == 0 { 'R' } else { 'E' };
            out.extend_from_slice(
                format!("5011 18{:04}{q}10101{:03}\x14", i % 10_000, i % 1000).as_bytes(),
            );
        }
    }
    out
}

fn contact_id_stream() -> Vec<u8> {
    let rows: [&[u8]; 4] = [
        b"1234181131010158\n",
        b"1234183131010156\n",
        b"123418110101001B\n",
        b"1234181602000002\n",
    ];
    rows.iter()
        .cycle()
        .take(FRAMES)
        .flat_map(|r| r.iter().copied())
        .collect()
}

fn dc09_stream() -> Vec<u8> {
    let rows: [&[u8]; 3] = [
        b"\nFA00003A\"SIA-DCS\"0001L0#1234[#1234|Nri1/MA001]_12:00:00,01-01-2024\r",
        b"\n3A90003B\"ADM-CID\"0002L0#1234[#1234|1101 01 001]_12:00:00,01-01-2024\r",
        b"\n4C650027\"NULL\"0003L0#1234[]_12:00:00,01-01-2024\r",
    ];
    rows.iter()
        .cycle()
        .take(FRAMES)
        .flat_map(|r| r.iter().copied())
        .collect()
}

/// Drains a whole buffer through a decoder, counting frames.
macro_rules! drain {
    ($decoder:expr, $buf:expr) => {{
        let mut d = $decoder;
        let buf: &[u8] = $buf;
        let (mut start, mut frames) = (0, 0);
        loop {
            match d.decode(&buf[start..]) {
                Step::Incomplete => break,
                step => {
                    if matches!(step, Step::Frame { .. }) {
                        frames += 1;
                    }
                    start += step.consumed();
                    black_box(step);
                }
            }
        }
        assert_eq!(frames, FRAMES, "every frame in the stream decodes");
        frames
    }};
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let sg = surgard_stream();
    g.bench_function("surgard", |b| {
        b.iter(|| drain!(SurGardDecoder::default(), black_box(&sg)));
    });
    let cid = contact_id_stream();
    g.bench_function("contact_id", |b| {
        b.iter(|| drain!(LineDecoder::default(), black_box(&cid)));
    });
    let dc09 = dc09_stream();
    g.bench_function("dc09", |b| {
        b.iter(|| drain!(Dc09Decoder::new(None), black_box(&dc09)));
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
