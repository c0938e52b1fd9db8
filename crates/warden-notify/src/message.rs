//! What a page says, in plain English: the alarm's reference, what it is, why the person is
//! being paged, and what they must do (acknowledge, then call the control room). One text for
//! every channel; the e-mail adds a subject, the webhook the same fields as JSON.

use warden_store::PendingPage;

/// A page's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One line: the e-mail subject.
    pub subject: String,
    /// The whole message: SMS, e-mail body, voice call, webhook `text`.
    pub text: String,
    /// The signed one-time acknowledgement link, when the centre has a public address.
    pub ack_url: Option<String>,
}

/// How a person can acknowledge, besides the console.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ways<'a> {
    /// The page's signed link.
    pub link: Option<&'a str>,
    /// Replies to SMS reach Warden (the gateway's inbound webhook is configured).
    pub sms_reply: bool,
    /// The control room's number, to call after acknowledging.
    pub control_room: Option<&'a str>,
}

/// The message of page `p`.
pub fn page(p: &PendingPage, ways: Ways<'_>) -> Message {
    let priority = p.priority.as_deref().unwrap_or("unknown").replace('_', "-");
    let kind = p
        .incident_kind
        .as_deref()
        .unwrap_or("alarm")
        .replace('_', " ");
    let reference = p.incident_id;
    let summary = p
        .summary
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let why = match p.reason.as_str() {
        "reminder" => "Reminder: you acknowledged this alarm and it is still open.",
        "fallback" => "Nobody else could be reached for this alarm.",
        _ => "Nobody in the control room has answered this alarm in time.",
    };
    let mut how = Vec::new();
    if let Some(link) = ways.link {
        how.push(format!("open {link}"));
    }
    if ways.sms_reply && p.channel == "sms" {
        how.push(format!("reply ACK {reference}"));
    }
    how.push("use My pages in the Warden console".to_owned());
    let call = ways.control_room.map_or_else(
        || "then call the control room".to_owned(),
        |n| format!("then call the control room on {n}"),
    );
    let text = format!(
        "Warden alarm #{reference}: {priority} {kind}{summary}. {why} To acknowledge, {how}; \
         {call}.",
        how = how.join(" or "),
    );
    Message {
        subject: format!("Warden alarm #{reference}: {priority} {kind}, please acknowledge"),
        text,
        ack_url: ways.link.map(str::to_owned),
    }
}

/// What an out-of-hours caller is told when their job is logged or changes, in plain
/// English, with the reference to quote.
pub fn caller_update(u: &warden_store::CallerUpdate<'_>) -> String {
    use warden_types::JobStatus;
    let what = match u.status {
        JobStatus::Routed => format!(
            "We have passed your report ({}) to the officer on call, who will deal with it.",
            u.category
        ),
        JobStatus::Unrouted => format!(
            "We have logged your report ({}); the control room is arranging who will deal \
             with it.",
            u.category
        ),
        JobStatus::Acknowledged => "The officer on call has seen your report.".to_owned(),
        JobStatus::InProgress => "Someone is now dealing with your report.".to_owned(),
        JobStatus::Closed => "Your report is now closed. If the problem is not fixed, call \
                              us again and quote your reference."
            .to_owned(),
    };
    format!(
        "Out-of-hours service: your reference is {}. {what} Quote your reference if you \
         contact us.",
        u.reference
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(channel: &str) -> PendingPage {
        PendingPage {
            id: 7,
            incident_id: 42,
            person_id: 1,
            step: 0,
            round: 0,
            reason: "step".into(),
            channel: channel.into(),
            address: "+447700900123".into(),
            attempts: 0,
            priority: Some("life_critical".into()),
            incident_kind: Some("pendant".into()),
            summary: Some("Mrs Example, 1 Elm Road".into()),
        }
    }

    #[test]
    fn a_page_names_the_alarm_and_every_way_to_acknowledge_it() {
        let m = page(
            &pending("sms"),
            Ways {
                link: Some("https://warden.example/ack/x"),
                sms_reply: true,
                control_room: Some("0300 000 0000"),
            },
        );
        assert_eq!(
            m.text,
            "Warden alarm #42: life-critical pendant (Mrs Example, 1 Elm Road). Nobody in the \
             control room has answered this alarm in time. To acknowledge, open \
             https://warden.example/ack/x or reply ACK 42 or use My pages in the Warden console; \
             then call the control room on 0300 000 0000."
        );
        assert_eq!(
            m.subject,
            "Warden alarm #42: life-critical pendant, please acknowledge"
        );
    }

    #[test]
    fn only_an_sms_offers_a_reply() {
        let m = page(
            &pending("email"),
            Ways {
                sms_reply: true,
                ..Ways::default()
            },
        );
        assert!(!m.text.contains("reply ACK"), "{}", m.text);
        assert!(
            m.text.ends_with("then call the control room."),
            "{}",
            m.text
        );
    }
}

#[cfg(test)]
mod caller_tests {
    use warden_store::CallerUpdate;
    use warden_types::JobStatus;

    #[test]
    fn a_caller_hears_the_reference_and_what_happens_next() {
        let text = super::caller_update(&CallerUpdate {
            reference: "OOH-2026-000123",
            category: "Emergency repairs",
            status: JobStatus::Routed,
        });
        assert_eq!(
            text,
            "Out-of-hours service: your reference is OOH-2026-000123. We have passed your \
             report (Emergency repairs) to the officer on call, who will deal with it. Quote \
             your reference if you contact us."
        );
    }
}
