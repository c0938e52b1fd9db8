//! Text that people type (notes, client records, devices, out-of-hours jobs), checked in
//! one place before it is stored or reaches the triage engine.
//!
//! Why here and not only in the database: Postgres text and jsonb cannot hold NUL, and a
//! note travels to the engine, whose commit writes it into `incident_events` as jsonb. A
//! NUL found there fails a triage commit rather than one request. Other C0 control
//! characters are stored fine but are invisible on screen and break CSV exports and
//! terminals, so they are refused too. Tab and line breaks are text.

use crate::error::ApiError;

/// The longest note on an incident, in characters.
pub const NOTE_MAX_CHARS: usize = 4000;

/// The first character a person's text may not hold, with its position (1-based, in
/// characters): any C0 control character except tab, line feed and carriage return (a
/// line break typed on Windows is CR LF).
pub fn control_char(s: &str) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|(_, c)| c.is_ascii_control() && *c != '\x7f' && !matches!(c, '\t' | '\n' | '\r'))
        .map(|(i, c)| (i + 1, c))
}

/// Refuses `value` when it holds a control character (400 `control_character`) or is longer
/// than `max` characters (400 `invalid_value`). Messages start with `field`, so the CSV
/// import can name the column.
pub fn check(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if let Some((at, c)) = control_char(value) {
        return Err(ApiError::bad_request(
            "control_character",
            format!(
                "{field} contains a control character (U+{:04X} at character {at}); remove it and try again",
                u32::from(c)
            ),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("{field} may be at most {max} characters"),
        ));
    }
    Ok(())
}

/// [`check`] for an optional field.
pub fn check_opt(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| check(field, v, max))
}

/// A note on an incident: no control characters, at most [`NOTE_MAX_CHARS`] characters
/// (400 `note_too_long`). Emptiness is the engine's rule (it answers `empty_note`).
pub fn check_note(text: &str) -> Result<(), ApiError> {
    if text.chars().count() > NOTE_MAX_CHARS {
        return Err(ApiError::bad_request(
            "note_too_long",
            format!("note is too long: a note may be at most {NOTE_MAX_CHARS} characters"),
        ));
    }
    check("note", text, NOTE_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::{check, check_note, control_char};

    #[test]
    fn tabs_and_line_breaks_are_text_and_other_c0_characters_are_not() {
        assert_eq!(control_char("Rang twice.\r\n\tNo answer"), None);
        assert_eq!(control_char("Café ☕"), None);
        assert_eq!(control_char("a\u{0}b"), Some((2, '\u{0}')));
        assert_eq!(control_char("ab\u{1b}[31m"), Some((3, '\u{1b}')));
        assert_eq!(control_char("\u{7}"), Some((1, '\u{7}')));
    }

    #[test]
    fn a_refusal_names_the_field_the_character_and_where_it_is() {
        let e = check("name", "Ann\u{0}", 200).expect_err("NUL refused");
        assert_eq!(e.code, "control_character");
        assert!(
            e.message
                .starts_with("name contains a control character (U+0000 at character 4)"),
            "{}",
            e.message
        );
        let e = check("name", &"x".repeat(201), 200).expect_err("too long");
        assert_eq!(e.code, "invalid_value");
        assert!(
            check("name", &"é".repeat(200), 200).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn a_note_is_at_most_4000_characters_counted_as_characters() {
        assert!(check_note(&"é".repeat(4000)).is_ok());
        assert_eq!(
            check_note(&"a".repeat(4001)).expect_err("long").code,
            "note_too_long"
        );
        let e = check_note("ok\u{0}").expect_err("NUL");
        assert!(
            e.message.starts_with("note contains a control character"),
            "{}",
            e.message
        );
    }
}
