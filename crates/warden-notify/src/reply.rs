//! SMS replies: what a text sent back to Warden through the gateway's inbound webhook says,
//! and whether its sender is the number a page went to. Pure, so it is tested on its own.

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Acknowledge: the alarm reference given (`ACK 42`), or the sender's latest page.
    Ack(Option<i64>),
    /// Anything else.
    NotUnderstood,
}

/// Reads a reply: `ACK`, `OK`, `YES` or `Y` (any case, punctuation ignored), optionally
/// followed by the alarm's reference (`ACK 42`, `ack #42`).
pub fn parse(text: &str) -> Parsed {
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '!')
        .filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Parsed::NotUnderstood;
    };
    let first = first.to_ascii_uppercase();
    if !matches!(
        first.as_str(),
        "ACK" | "ACKNOWLEDGE" | "ACKNOWLEDGED" | "OK" | "YES" | "Y"
    ) {
        return Parsed::NotUnderstood;
    }
    match words.next() {
        None => Parsed::Ack(None),
        Some(w) => match w.trim_start_matches('#').parse::<i64>() {
            Ok(n) if n > 0 && words.next().is_none() => Parsed::Ack(Some(n)),
            _ => Parsed::NotUnderstood,
        },
    }
}

/// The digits of a phone number, international form where it can be told: `+44 7700
/// 900123`, `0044 7700 900123` and `07700 900123` all give `447700900123` (a national
/// number with one leading 0 is taken as UK, where Warden's centres are).
pub fn digits(number: &str) -> String {
    let d: String = number.chars().filter(char::is_ascii_digit).collect();
    if let Some(rest) = d.strip_prefix("00") {
        rest.to_owned()
    } else if !number.trim_start().starts_with('+')
        && let Some(rest) = d.strip_prefix('0')
    {
        format!("44{rest}")
    } else {
        d
    }
}

/// True when `a` and `b` are the same number (at least 7 digits each).
pub fn same_number(a: &str, b: &str) -> bool {
    let (a, b) = (digits(a), digits(b));
    a.len() >= 7 && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_that_acknowledge() {
        assert_eq!(parse("ACK"), Parsed::Ack(None));
        assert_eq!(parse(" ack 42 "), Parsed::Ack(Some(42)));
        assert_eq!(parse("Ack #42."), Parsed::Ack(Some(42)));
        assert_eq!(parse("yes"), Parsed::Ack(None));
        assert_eq!(parse("OK, 7"), Parsed::Ack(Some(7)));
    }

    #[test]
    fn replies_that_do_not() {
        for text in [
            "",
            "   ",
            "no",
            "call me",
            "ACK forty",
            "ACK 42 43",
            "ACK -1",
            "ACKNOWLEDGING",
        ] {
            assert_eq!(parse(text), Parsed::NotUnderstood, "{text:?}");
        }
    }

    #[test]
    fn numbers_compare_in_international_form() {
        assert!(same_number("+44 7700 900123", "07700900123"));
        assert!(same_number("00447700900123", "+447700900123"));
        assert!(same_number("+1 (555) 010-0000", "+15550100000"));
        assert!(!same_number("+447700900123", "+447700900124"));
        assert!(!same_number("+33700900123", "07700900123"));
        assert!(!same_number("123", "123"));
    }
}
