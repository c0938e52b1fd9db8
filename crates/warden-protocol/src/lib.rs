//! Pure alarm-protocol codecs.
//!
//! Architecture invariant: nothing in this crate does I/O, reads a clock or spawns a task.
//! Every decoder is a function over a byte buffer that answers with a [`Step`]: need more
//! bytes, one frame, or one typed error, always saying how many bytes it consumed, so a bad
//! frame never takes its neighbours down with it. Time, where a check needs it, is passed in.

pub mod codes;
pub mod contact_id;
pub mod dc09;
pub mod mqtt;
pub mod scaip;
pub mod sia;
pub mod sip_digest;
pub mod surgard;

/// ASCII ACK, sent to a Sur-Gard receiver once a frame is durable.
pub const ACK: u8 = 0x06;
/// ASCII NAK, sent to a Sur-Gard receiver to have a frame resent.
pub const NAK: u8 = 0x15;
/// ASCII DC4, the terminator of every Sur-Gard automation-output frame.
pub const DC4: u8 = 0x14;

/// The result of offering a buffer to an incremental decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<F, E> {
    /// The buffer holds no complete frame yet; read more bytes and call again.
    Incomplete,
    /// One frame was decoded from the first `consumed` bytes.
    Frame { frame: F, consumed: usize },
    /// The first `consumed` bytes form one bad frame (or garbage). They should be kept as
    /// raw evidence; decoding continues after them.
    Invalid { error: E, consumed: usize },
    /// The first `consumed` bytes belong to an oversized frame whose error has already been
    /// reported; they carry nothing new. `terminated` is true when the chunk ends the frame
    /// (the moment a serial peer expects its NAK).
    Skipped { consumed: usize, terminated: bool },
}

impl<F, E> Step<F, E> {
    /// How many bytes of the buffer this step used up (0 for [`Step::Incomplete`]).
    pub fn consumed(&self) -> usize {
        match self {
            Step::Incomplete => 0,
            Step::Frame { consumed, .. }
            | Step::Invalid { consumed, .. }
            | Step::Skipped { consumed, .. } => *consumed,
        }
    }
}

/// Splits a byte stream at a single terminator byte, bounded by `max_len`, with resync after
/// an oversized run. Shared by the line- and DC4-terminated formats.
#[derive(Debug, Clone)]
pub(crate) struct Splitter {
    terminator: u8,
    max_len: usize,
    discarding: bool,
}

/// What [`Splitter::next`] found.
pub(crate) enum Split<'a> {
    Incomplete,
    /// A whole frame, terminator excluded, and the bytes consumed including the terminator.
    Frame(&'a [u8], usize),
    /// More than `max_len` bytes arrived without a terminator.
    Oversized(usize),
    /// Bytes dropped while resynchronising after an oversized frame.
    Skipped(usize, bool),
}

impl Splitter {
    pub(crate) const fn new(terminator: u8, max_len: usize) -> Self {
        Self {
            terminator,
            max_len,
            discarding: false,
        }
    }

    pub(crate) fn next<'a>(&mut self, buf: &'a [u8]) -> Split<'a> {
        let end = buf.iter().position(|&b| b == self.terminator);
        if self.discarding {
            return match end {
                Some(i) => {
                    self.discarding = false;
                    Split::Skipped(i + 1, true)
                }
                None if buf.is_empty() => Split::Incomplete,
                None => Split::Skipped(buf.len(), false),
            };
        }
        match end {
            Some(i) if i <= self.max_len => Split::Frame(&buf[..i], i + 1),
            Some(i) => Split::Oversized(i + 1),
            None if buf.len() > self.max_len => {
                self.discarding = true;
                Split::Oversized(buf.len())
            }
            None => Split::Incomplete,
        }
    }
}

/// Renders bytes for an error message or a log line: printable ASCII as is, anything else as `\xNN`.
pub fn printable(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02X}");
        }
    }
    if bytes.len() > 64 {
        s.push('…');
    }
    s
}

/// A short ASCII field kept exactly as it was on the wire (account, receiver, line, codes),
/// stored inline so decoding a frame allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Ascii<N> {
    /// Copies `src` if it is printable ASCII and fits; `None` otherwise.
    pub fn new(src: &[u8]) -> Option<Self> {
        if src.len() > N
            || src.len() > usize::from(u8::MAX)
            || !src.iter().all(u8::is_ascii_graphic)
        {
            return None;
        }
        let mut bytes = [0; N];
        bytes[..src.len()].copy_from_slice(src);
        Some(Self {
            bytes,
            len: u8::try_from(src.len()).ok()?,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Construction admits printable ASCII only, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> std::fmt::Debug for Ascii<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> std::fmt::Display for Ascii<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> serde::Serialize for Ascii<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An alarm account (subscriber) number as sent: 3–16 characters, usually hex digits.
pub type Account = Ascii<16>;
