//! What Warden refused: the `quarantine` rows as supervisors read them (counts by reason
//! and source over a window, and the recent rows themselves, raw bytes included), and the
//! one rendering of raw bytes for people ([`RawBytes`]), shared with the signal lists.
//!
//! Reads only: `quarantine` is append-only evidence (see the crate doc).

use serde::Serialize;
use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError};

/// Raw bytes as a person can read them: hex, and a printable rendering in which every
/// byte that is not a printable character is escaped.
///
/// At most [`RawBytes::MAX_SHOWN`] bytes are rendered (a quarantined MQTT payload may be
/// large; a page of 200 rows must stay small); `len` is always the full length and
/// `truncated` says whether the rendering stops short of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RawBytes {
    /// Lower-case hex of the rendered bytes, two digits per byte, no separators.
    pub hex: String,
    /// The rendered bytes as text: printable UTF-8 characters as they are; `\\` for a
    /// backslash; `\n`, `\r`, `\t`; `\xNN` for any other byte that is not a printable
    /// character (control bytes, invalid UTF-8); `\u{NN}` for a non-ASCII control
    /// character. The cut falls between characters, never inside one or an escape.
    pub printable: String,
    /// The full length in bytes.
    pub len: usize,
    /// Whether only the first [`RawBytes::MAX_SHOWN`] bytes are rendered.
    pub truncated: bool,
}

impl RawBytes {
    /// The most bytes rendered.
    pub const MAX_SHOWN: usize = 2048;

    /// Renders `raw`.
    pub fn of(raw: &[u8]) -> RawBytes {
        RawBytes::with_limit(raw, RawBytes::MAX_SHOWN)
    }

    /// Renders at most the first `max` bytes of `raw`, cut back to the last whole UTF-8
    /// character when `max` falls inside one (the hex shows exactly the rendered bytes).
    pub fn with_limit(raw: &[u8], max: usize) -> RawBytes {
        let shown = if raw.len() <= max {
            raw
        } else {
            &raw[..utf8_floor(raw, max)]
        };
        let mut hex = String::with_capacity(shown.len() * 2);
        for b in shown {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        RawBytes {
            hex,
            printable: printable(shown),
            len: raw.len(),
            truncated: shown.len() < raw.len(),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The largest `n <= max` such that `raw[..n]` does not end inside a valid UTF-8
/// character (bytes that are not UTF-8 are cut anywhere: each is its own unit).
fn utf8_floor(raw: &[u8], max: usize) -> usize {
    // A UTF-8 character is at most 4 bytes: look back at most 3 for its first byte.
    for back in 0..4.min(max + 1) {
        let start = max - back;
        let Some(&b) = raw.get(start) else { break };
        if b & 0xC0 != 0x80 {
            // `start` begins a unit: cut before it when the unit runs past `max`.
            let width = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => 1,
            };
            let whole = raw
                .get(start..start + width)
                .is_some_and(|c| std::str::from_utf8(c).is_ok());
            return if whole && start + width > max {
                start
            } else {
                max
            };
        }
    }
    max
}

/// `raw` as text with every non-printable byte or character escaped (see
/// [`RawBytes::printable`]).
fn printable(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// How many inputs were refused for one reason on one kind of link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RejectedCount {
    pub reason_code: String,
    pub source: String,
    pub count: i64,
}

/// One refused input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RejectedRow {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub source: String,
    pub link_id: String,
    pub reason_code: String,
    pub reason: String,
    pub raw: RawBytes,
}

/// What to read of the refused inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedQuery {
    /// Rows received at or after this instant are counted and listed.
    pub since: OffsetDateTime,
    /// Only rows of this reason code are listed (the counts are never filtered).
    pub reason_code: Option<String>,
    /// List rows older than this one (the `next_before` of the previous page).
    pub before: Option<Uuid>,
    /// At most this many rows.
    pub limit: i64,
}

/// A page of refused inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedPage {
    /// Rows received since `since`, by reason and source, largest first.
    pub counts: Vec<RejectedCount>,
    /// The most recent rows (newest first), older than `before` when given.
    pub rows: Vec<RejectedRow>,
    /// The cursor of the next (older) page, `None` on the last page.
    pub next_before: Option<Uuid>,
}

impl Store {
    /// Refused inputs received since `q.since`: counts by reason and source, and the most
    /// recent rows, newest first (ordered by arrival, then id). `Ok(None)` when `q.before`
    /// names no quarantined row.
    pub async fn rejected(&self, q: &RejectedQuery) -> Result<Option<RejectedPage>, StoreError> {
        let cursor: Option<(OffsetDateTime, Uuid)> = match q.before {
            None => None,
            Some(id) => {
                let row = sqlx::query("SELECT received_at FROM quarantine WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?;
                match row {
                    None => return Ok(None),
                    Some(r) => Some((r.try_get(0)?, id)),
                }
            }
        };
        let counts = sqlx::query(
            "SELECT reason_code, source, count(*) FROM quarantine WHERE received_at >= $1 \
             GROUP BY reason_code, source ORDER BY count(*) DESC, reason_code, source",
        )
        .bind(q.since)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(RejectedCount {
                reason_code: r.try_get(0)?,
                source: r.try_get(1)?,
                count: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // One more row than asked tells whether there is a next page.
        let rows = sqlx::query(
            "SELECT id, received_at, source, link_id, reason_code, reason, raw FROM quarantine \
             WHERE received_at >= $1 \
               AND ($2::text IS NULL OR reason_code = $2) \
               AND ($3::timestamptz IS NULL OR (received_at, id) < ($3, $4::uuid)) \
             ORDER BY received_at DESC, id DESC LIMIT $5",
        )
        .bind(q.since)
        .bind(q.reason_code.as_deref())
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(q.limit.saturating_add(1))
        .fetch_all(self.pool())
        .await?;
        let mut rows = rows
            .iter()
            .map(|r| {
                let raw: Vec<u8> = r.try_get(6)?;
                Ok(RejectedRow {
                    id: r.try_get(0)?,
                    received_at: r.try_get(1)?,
                    source: r.try_get(2)?,
                    link_id: r.try_get(3)?,
                    reason_code: r.try_get(4)?,
                    reason: r.try_get(5)?,
                    raw: RawBytes::of(&raw),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > q.limit;
        rows.truncate(usize::try_from(q.limit).unwrap_or(0));
        let next_before = if more {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Some(RejectedPage {
            counts,
            rows,
            next_before,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{RawBytes, printable};

    #[test]
    fn printable_text_keeps_characters_and_escapes_control_bytes_and_invalid_utf8() {
        assert_eq!(printable(b"5011 18"), "5011 18");
        assert_eq!(
            printable(b"a\x14\x00\r\n\t\\z"),
            "a\\x14\\x00\\r\\n\\t\\\\z"
        );
        assert_eq!(printable(&[0xff, b'A', 0xc3]), "\\xffA\\xc3");
        assert_eq!(printable("Café".as_bytes()), "Café");
        assert_eq!(printable("\u{85}x".as_bytes()), "\\u{85}x");
        assert_eq!(printable(b"\x7f"), "\\x7f");
    }

    #[test]
    fn raw_bytes_give_hex_and_the_full_length() {
        let r = RawBytes::of(b"\x0a\xff");
        assert_eq!(r.hex, "0aff");
        assert_eq!(r.printable, "\\n\\xff");
        assert_eq!(r.len, 2);
        assert!(!r.truncated);
    }

    #[test]
    fn a_long_rendering_is_cut_between_characters_never_inside_one() {
        // "é" is two bytes: a cut at 3 bytes would split the second one.
        let raw = "éé".as_bytes();
        let r = RawBytes::with_limit(raw, 3);
        assert_eq!(r.printable, "é");
        assert_eq!(r.hex, "c3a9");
        assert_eq!(r.len, 4);
        assert!(r.truncated);
        // A four-byte character cut after any of its first three bytes is left out whole.
        let raw = "a😀b".as_bytes();
        for max in 1..=4 {
            assert_eq!(RawBytes::with_limit(raw, max).printable, "a", "max {max}");
        }
        assert_eq!(RawBytes::with_limit(raw, 5).printable, "a😀");
        // Bytes that are not UTF-8 are cut anywhere.
        let r = RawBytes::with_limit(&[0xff, 0xfe, 0xfd], 2);
        assert_eq!(r.printable, "\\xff\\xfe");
        // A stray lead byte at the cut is its own unit.
        let r = RawBytes::with_limit(&[b'a', 0xe2, b'b', b'c'], 2);
        assert_eq!(r.printable, "a\\xe2");
    }
}
