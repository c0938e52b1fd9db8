//! `wardend decode`: raw bytes on stdin → one JSON object per frame on stdout, in input
//! order. A bad frame prints `{"ok": false, "error": …}` and decoding goes on; nothing but
//! the JSON lines is written to stdout.

use std::io::{Read, Write};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Map, Value, json};
use warden_protocol::contact_id::LineDecoder;
use warden_protocol::dc09::{Dc09Decoder, Dc09Key};
use warden_protocol::surgard::SurGardDecoder;
use warden_protocol::{Step, printable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Sur-Gard/MLR2 automation output: frames end with DC4 (0x14).
    Surgard,
    /// Contact ID (SIA DC-05): one 16-digit message per line.
    ContactId,
    /// SIA DC-09: `<LF>…<CR>` frames.
    Dc09,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The wire format on stdin.
    #[arg(long, value_enum)]
    format: Format,
    /// AES key for encrypted DC-09 frames: 16/24/32 ASCII characters or 32/48/64 hex digits.
    #[arg(long, env = "WARDEN_DC09_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Accept DC-09 frames whose length field disagrees with the body (some transmitters
    /// send a wrong LEN); the CRC is still checked.
    #[arg(long)]
    accept_bad_length: bool,
}

/// A command-line mistake (exit 64) as opposed to an I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The three decoders behind one face, each answering in JSON.
trait JsonDecoder {
    fn step(&mut self, buf: &[u8]) -> Step<Value, String>;
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Value, String>>;
}

fn to_json<T: Serialize>(frame: &T) -> Value {
    serde_json::to_value(frame).unwrap_or_else(|e| json!({ "encode_error": e.to_string() }))
}

fn map_step<F: Serialize, E: std::fmt::Display>(step: Step<F, E>) -> Step<Value, String> {
    match step {
        Step::Incomplete => Step::Incomplete,
        Step::Frame { frame, consumed } => Step::Frame {
            frame: to_json(&frame),
            consumed,
        },
        Step::Invalid { error, consumed } => Step::Invalid {
            error: error.to_string(),
            consumed,
        },
        Step::Skipped {
            consumed,
            terminated,
        } => Step::Skipped {
            consumed,
            terminated,
        },
    }
}

/// A bare Contact ID message is always an event; say so as the other formats do.
fn as_event(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.shift_insert(0, "kind".into(), "event".into());
    }
    v
}

impl JsonDecoder for SurGardDecoder {
    fn step(&mut self, buf: &[u8]) -> Step<Value, String> {
        map_step(self.decode(buf))
    }
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Value, String>> {
        SurGardDecoder::finish(self, rest).map(|e| Err(e.to_string()))
    }
}

impl JsonDecoder for LineDecoder {
    fn step(&mut self, buf: &[u8]) -> Step<Value, String> {
        match map_step(self.decode(buf)) {
            Step::Frame { frame, consumed } => Step::Frame {
                frame: as_event(frame),
                consumed,
            },
            other => other,
        }
    }
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Value, String>> {
        LineDecoder::finish(self, rest)
            .map(|r| r.map(|m| as_event(to_json(&m))).map_err(|e| e.to_string()))
    }
}

impl JsonDecoder for Dc09Decoder {
    fn step(&mut self, buf: &[u8]) -> Step<Value, String> {
        map_step(self.decode(buf))
    }
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Value, String>> {
        Dc09Decoder::finish(self, rest).map(|r| r.map(|f| to_json(&f)).map_err(|e| e.to_string()))
    }
}

fn write_line(
    out: &mut impl Write,
    result: Result<Value, String>,
    raw: &[u8],
) -> std::io::Result<()> {
    let mut line = Map::new();
    match result {
        Ok(Value::Object(frame)) => {
            line.insert("ok".into(), true.into());
            line.extend(frame);
        }
        Ok(other) => {
            line.insert("ok".into(), true.into());
            line.insert("frame".into(), other);
        }
        Err(error) => {
            line.insert("ok".into(), false.into());
            line.insert("error".into(), error.into());
            line.insert("raw".into(), printable(raw).into());
        }
    }
    serde_json::to_writer(&mut *out, &Value::Object(line))?;
    out.write_all(b"\n")
}

/// Reads `input` to its end, writing one JSON line per frame to `output`.
pub fn run(args: &Args, mut input: impl Read, mut output: impl Write) -> anyhow::Result<()> {
    let mut decoder: Box<dyn JsonDecoder> = match args.format {
        Format::Surgard => Box::new(SurGardDecoder::default()),
        Format::ContactId => Box::new(LineDecoder::default()),
        Format::Dc09 => {
            let key = args
                .key
                .as_deref()
                .map(Dc09Key::parse)
                .transpose()
                .map_err(|e| UsageError(format!("--key: {e}")))?;
            Box::new(Dc09Decoder::new(key).accept_bad_length(args.accept_bad_length))
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut chunk).context("reading stdin")?;
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        loop {
            let step = decoder.step(&buf[start..]);
            let consumed = step.consumed();
            let raw = &buf[start..start + consumed];
            match step {
                Step::Incomplete => break,
                Step::Frame { frame, .. } => write_line(&mut output, Ok(frame), raw)?,
                Step::Invalid { error, .. } => write_line(&mut output, Err(error), raw)?,
                Step::Skipped { .. } => {}
            }
            start += consumed;
        }
        buf.drain(..start);
        if n == 0 {
            break;
        }
    }
    if let Some(result) = decoder.finish(&buf) {
        write_line(&mut output, result, &buf)?;
    }
    output.flush().context("writing stdout")?;
    Ok(())
}
