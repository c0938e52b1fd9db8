//! The Contact ID (SIA DC-05) event-code table and the SIA two-letter codes.
//!
//! The Contact ID rows are generated at build time from `data/contact-id-codes.tsv`, a copy
//! of the shared protocol vectors' table (spandsp's `ademco_contactid.c`, with pysiaalarm's
//! ADM-CID → SIA mapping).

use serde::Serialize;
use warden_types::Qualifier;

/// What the three-digit `CCC` field of a Contact ID event means for this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataField {
    /// `CCC` is a zone number.
    Zone,
    /// `CCC` is a user number.
    User,
    /// The source table does not say.
    Unspecified,
}

/// One Contact ID event code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidCode {
    pub code: u16,
    pub description: &'static str,
    pub data: DataField,
    /// The SIA code DC-09's ADM-CID mapping gives for qualifier 1 (new).
    pub sia_new: Option<&'static str>,
    /// The SIA code for qualifier 3 (restore).
    pub sia_restore: Option<&'static str>,
}

impl CidCode {
    /// The SIA two-letter code this event maps to for a qualifier, if the table has one.
    pub fn sia_code(&self, qualifier: Qualifier) -> Option<&'static str> {
        match qualifier {
            Qualifier::Restore => self.sia_restore,
            _ => self.sia_new,
        }
    }

    /// The description, falling back to the mapped SIA code's description where the Contact
    /// ID table has none.
    pub fn describe(&self) -> &'static str {
        if self.description.is_empty() {
            self.sia_new.and_then(sia_description).unwrap_or("")
        } else {
            self.description
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/cid_codes.rs"));

/// Looks up a Contact ID event code (100–999).
pub fn contact_id(code: u16) -> Option<&'static CidCode> {
    CID_CODES
        .binary_search_by_key(&code, |c| c.code)
        .ok()
        .map(|i| &CID_CODES[i])
}

/// Every Contact ID code in the table, sorted by code.
pub fn contact_id_codes() -> &'static [CidCode] {
    CID_CODES
}

/// Descriptions of the SIA DC-04 two-letter event codes that telecare and intruder panels
/// send over DC-09 and the Sur-Gard SIA output. Sorted by code for binary search.
static SIA_CODES: &[(&str, &str)] = &[
    ("AR", "AC restoral"),
    ("AT", "AC trouble"),
    ("BA", "Burglary alarm"),
    ("BB", "Burglary bypass"),
    ("BC", "Burglary cancel"),
    ("BH", "Burglary alarm restore"),
    ("BR", "Burglary restoral"),
    ("BT", "Burglary trouble"),
    ("BU", "Burglary unbypass"),
    ("CA", "Automatic closing"),
    ("CF", "Forced closing"),
    ("CG", "Close area"),
    ("CI", "Fail to close"),
    ("CL", "Closing report"),
    ("CP", "Automatic arming"),
    ("CQ", "Remote closing"),
    ("CR", "Recent closing"),
    ("CS", "Closing keyswitch"),
    ("DD", "Access denied"),
    ("DF", "Door forced"),
    ("DO", "Access open"),
    ("EA", "Exit alarm"),
    ("EE", "Exit error"),
    ("EM", "Expansion device missing"),
    ("ER", "Expansion restoral"),
    ("ET", "Expansion trouble"),
    ("FA", "Fire alarm"),
    ("FB", "Fire bypass"),
    ("FH", "Fire alarm restore"),
    ("FJ", "Fire trouble restore"),
    ("FR", "Fire restoral"),
    ("FT", "Fire trouble"),
    ("FX", "Fire test"),
    ("GA", "Gas alarm"),
    ("GH", "Gas alarm restore"),
    ("GT", "Gas trouble"),
    ("HA", "Holdup alarm"),
    ("HH", "Holdup alarm restore"),
    ("HR", "Holdup restoral"),
    ("HT", "Holdup trouble"),
    ("JA", "User code tamper"),
    ("JC", "User code tamper cancelled"),
    ("JT", "Time changed"),
    ("KA", "Heat alarm"),
    ("KH", "Heat alarm restore"),
    ("KR", "Heat restoral"),
    ("LB", "Local program begin"),
    ("LR", "Phone line restoral"),
    ("LT", "Phone line trouble"),
    ("LX", "Local programming ended"),
    ("MA", "Medical alarm"),
    ("MH", "Medical alarm restore"),
    ("MR", "Medical restoral"),
    ("MT", "Medical trouble"),
    ("NA", "No activity"),
    ("NL", "Network link lost"),
    ("NR", "Network restoral"),
    ("OA", "Automatic opening"),
    ("OC", "Cancel report"),
    ("OG", "Open area"),
    ("OI", "Fail to open"),
    ("OP", "Opening report"),
    ("OQ", "Remote opening"),
    ("OR", "Disarm from alarm"),
    ("OS", "Opening keyswitch"),
    ("PA", "Panic alarm"),
    ("PH", "Panic alarm restore"),
    ("PR", "Panic restoral"),
    ("PT", "Panic trouble"),
    ("QA", "Emergency alarm"),
    ("QH", "Emergency alarm restore"),
    ("QR", "Emergency restoral"),
    ("RB", "Remote program begin"),
    ("RC", "Relay close"),
    ("RO", "Relay open"),
    ("RP", "Automatic test"),
    ("RR", "Power up"),
    ("RU", "Remote program fail"),
    ("RX", "Manual test"),
    ("RY", "Test off normal"),
    ("TA", "Tamper alarm"),
    ("TR", "Tamper restoral"),
    ("UA", "Untyped zone alarm"),
    ("UH", "Untyped alarm restore"),
    ("VT", "Printer trouble"),
    ("WA", "Water alarm"),
    ("WH", "Water alarm restore"),
    ("WR", "Water restoral"),
    ("XR", "Transmitter battery restoral"),
    ("XT", "Transmitter battery trouble"),
    ("YC", "Communications fail"),
    ("YK", "Communications restoral"),
    ("YM", "System battery missing"),
    ("YR", "System battery restoral"),
    ("YT", "System battery trouble"),
    ("YW", "Watchdog reset"),
    ("YX", "Service required"),
    ("YZ", "Service completed"),
    ("ZA", "Freeze alarm"),
    ("ZH", "Freeze alarm restore"),
];

/// Describes a SIA two-letter event code.
pub fn sia_description(code: &str) -> Option<&'static str> {
    SIA_CODES
        .binary_search_by_key(&code, |(c, _)| c)
        .ok()
        .map(|i| SIA_CODES[i].1)
}

/// Every SIA code this crate can describe, sorted.
pub fn sia_codes() -> &'static [(&'static str, &'static str)] {
    SIA_CODES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_shared_table_is_present_and_sorted() {
        let tsv = include_str!("../data/contact-id-codes.tsv");
        let rows = tsv.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
        assert_eq!(CID_CODES.len(), rows);
        assert!(CID_CODES.windows(2).all(|w| w[0].code < w[1].code));
    }

    #[test]
    fn telecare_codes_have_the_expected_meaning() {
        let pendant = contact_id(101).expect("101 is in the table");
        assert_eq!(pendant.description, "Personal emergency");
        assert_eq!(pendant.sia_code(Qualifier::New), Some("QA"));
        assert_eq!(pendant.sia_code(Qualifier::Restore), Some("QH"));
        assert_eq!(
            contact_id(162).map(|c| c.description),
            Some("Carbon monoxide detected")
        );
        assert_eq!(contact_id(401).map(|c| c.data), Some(DataField::User));
        assert!(contact_id(99).is_none());
    }

    #[test]
    fn codes_without_a_description_borrow_the_sia_one() {
        assert_eq!(
            contact_id(358).map(CidCode::describe),
            Some("Communications fail")
        );
    }

    #[test]
    fn sia_table_is_sorted_and_describes_the_telecare_codes() {
        assert!(
            SIA_CODES.windows(2).all(|w| w[0].0 < w[1].0),
            "SIA_CODES must stay sorted"
        );
        for code in ["MA", "QA", "FA", "GA", "PA", "WA", "AT", "YT", "RP"] {
            assert!(sia_description(code).is_some(), "SIA {code} undescribed");
        }
    }
}
