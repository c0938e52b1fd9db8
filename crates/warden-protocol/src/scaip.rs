//! SCAIP (SS 91100 / BS 8521-2 / CLC/TS 50134-9): social-alarm units report over SIP. Each
//! report is a SIP `MESSAGE` request whose body, `Content-Type: application/scaip+xml`, is
//! one `<mrq>` element of short child elements:
//!
//! ```text
//! <mrq><ref>00001883</ref><cha>0</cha><mty>ME</mty><cid>26317</cid><dty>02</dty>
//!      <did>00</did><crd>gsm:+37284463906</crd><stc>010</stc></mrq>
//! ```
//!
//! `ref` is the message reference, echoed in the answer's `<mrs>`; `mty` the message type
//! (`ME` an alarm or event, `PI` a heartbeat); `cid` the caller (unit) id; `dty` the device
//! type, `did` the device id, `stc` the status code, `lco` a location code, `crd` where to call
//! back for voice, `cha` a channel. Vendors pad numbers differently (`2`, `02`, `0002`), so the
//! numeric fields are compared as numbers; elements Warden does not know are kept.
//!
//! The receiver answers each request with a SIP final response (200 for a stored report)
//! carrying an `<mrs>` body that echoes `ref`. This module is pure: [`split`] finds one SIP
//! message in a byte stream (TCP) or takes a datagram whole (UDP), [`parse_request`] reads the
//! request line and headers, [`parse_mrq`] the body, [`response`] builds the answer.
//! SIP parsing is kept small on purpose (no SIP crate in the Rust ecosystem is kept and fits a
//! receiver that must never panic); the XML is read with `roxmltree` (no DTDs, no entities).

use serde::{Deserialize, Serialize};

/// The largest SIP message accepted (headers and body): a SCAIP report is a few hundred bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// The body's media type.
pub const CONTENT_TYPE: &str = "application/scaip+xml";

/// Why a SIP message or its SCAIP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaipError {
    /// More than [`MAX_MESSAGE`] bytes without a whole message.
    #[error("SIP message larger than {max} bytes")]
    TooLarge { max: usize },
    /// Not a SIP request (the first line is not `METHOD uri SIP/2.0`).
    #[error("not a SIP request: {0}")]
    NotSip(String),
    /// A header Warden needs to answer is missing or malformed.
    #[error("SIP header {0}")]
    Header(String),
    /// The body is not `application/scaip+xml`.
    #[error("content type {0:?} is not application/scaip+xml")]
    ContentType(String),
    /// The body is not one well-formed `<mrq>` element.
    #[error("SCAIP body: {0}")]
    Body(String),
}

/// One SIP message found in a buffer: its length, or why the bytes are not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// No whole message yet.
    Incomplete,
    /// The first `len` bytes are one message (headers, blank line, `Content-Length` bytes).
    Message { len: usize },
    /// The buffer cannot hold a message (too large, or no usable `Content-Length`); the
    /// stream cannot be resynchronised.
    Broken(ScaipError),
}

/// Finds the first whole SIP message in a TCP stream's buffer (RFC 3261 §18.3: over a stream,
/// `Content-Length` is mandatory). CRLF keep-alives before a message are part of it.
pub fn split(buf: &[u8]) -> Split {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE {
            Split::Broken(ScaipError::TooLarge { max: MAX_MESSAGE })
        } else {
            Split::Incomplete
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| {
            let n = n.trim();
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l")
        })
        .map(|(_, v)| v.trim().parse::<usize>());
    let body = match length {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Split::Broken(ScaipError::Header("Content-Length is not a number".into()));
        }
        None => {
            return Split::Broken(ScaipError::Header(
                "Content-Length is missing (required over TCP)".into(),
            ));
        }
    };
    let len = end + 4 + body;
    if len > MAX_MESSAGE {
        Split::Broken(ScaipError::TooLarge { max: MAX_MESSAGE })
    } else if buf.len() < len {
        Split::Incomplete
    } else {
        Split::Message { len }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A SIP request as far as a receiver needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `MESSAGE`, `OPTIONS`, …
    pub method: String,
    /// The Request-URI.
    pub uri: String,
    /// Every `Via` value, in order (copied into the response).
    pub via: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
    /// The media type, lower-cased, without parameters; empty when absent.
    pub content_type: String,
    /// The `Authorization` header, if any (SIP digest: [`crate::sip_digest`]).
    pub authorization: Option<String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// Reads one SIP request (a datagram, or a message [`split`] found). Leading CRLFs
/// (keep-alives) are skipped.
pub fn parse_request(bytes: &[u8]) -> Result<Request, ScaipError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ScaipError::TooLarge { max: MAX_MESSAGE });
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches(['\r', '\n']);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScaipError::NotSip(clip(first)));
    };
    if version != "SIP/2.0"
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || uri.is_empty()
    {
        return Err(ScaipError::NotSip(clip(first)));
    }
    let mut r = Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        via: Vec::new(),
        from: String::new(),
        to: String::new(),
        call_id: String::new(),
        cseq: String::new(),
        content_type: String::new(),
        authorization: None,
        body: String::new(),
    };
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ScaipError::Header(format!(
                "line without a colon: {}",
                clip(line)
            )));
        };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => r.via.extend(
                value
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty()),
            ),
            "from" | "f" => r.from = value,
            "to" | "t" => r.to = value,
            "call-id" | "i" => r.call_id = value,
            "cseq" => r.cseq = value,
            "authorization" => r.authorization = Some(value),
            "content-type" | "c" => {
                r.content_type = value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
            }
            "content-length" | "l" => {
                length = Some(value.parse().map_err(|_| {
                    ScaipError::Header(format!("Content-Length {value:?} is not a number"))
                })?);
            }
            _ => {}
        }
    }
    for (name, v) in [
        ("Via", r.via.first().map_or("", String::as_str)),
        ("From", &r.from),
        ("To", &r.to),
        ("Call-ID", &r.call_id),
        ("CSeq", &r.cseq),
    ] {
        if v.is_empty() {
            return Err(ScaipError::Header(format!("{name} is missing")));
        }
    }
    r.body = match length {
        Some(n) => body.get(..n).unwrap_or(body).to_owned(),
        None => body.to_owned(),
    };
    Ok(r)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Message types.
pub const ALARM: &str = "ME";
/// Heartbeat.
pub const HEARTBEAT: &str = "PI";

/// One SCAIP report (`<mrq>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mrq {
    /// Message reference, echoed in the answer.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Message type as sent (`ME`, `PI`, …); absent in some units' alarms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mty: Option<String>,
    /// Caller (unit) id, trimmed; see [`Mrq::unit`].
    pub cid: String,
    /// Device type, status code, device id, location code, channel: as numbers when they
    /// are numbers (`02`, `2` and `0002` are the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dty: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stc: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lco: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cha: Option<u32>,
    /// Voice call-back route (`gsm:+44…`, `tel:…`, `no-voice:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crd: Option<String>,
    /// Every element as sent, in order, known or not (nothing the unit said is dropped).
    pub elements: Vec<(String, String)>,
}

impl Mrq {
    /// The unit's id as the registry knows it: digits without leading zeros (`" 008031372"`
    /// and `"8031372"` are one unit); any other id as sent, trimmed.
    pub fn unit(&self) -> String {
        warden_types::scaip_unit(&self.cid)
    }

    /// True for a heartbeat (`PI`); everything else, a missing `mty` included, is a report
    /// an operator must see.
    pub fn is_heartbeat(&self) -> bool {
        self.mty
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(HEARTBEAT))
    }
}

fn number(s: &str) -> Option<u32> {
    let t = s.trim();
    (!t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

/// Reads an `<mrq>` body. `ref` and `cid` are required (the answer echoes one, the other
/// names the unit).
pub fn parse_mrq(body: &str) -> Result<Mrq, ScaipError> {
    let doc =
        roxmltree::Document::parse(body.trim()).map_err(|e| ScaipError::Body(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "mrq" {
        return Err(ScaipError::Body(format!(
            "the root element is <{}>, not <mrq>",
            root.tag_name().name()
        )));
    }
    let elements: Vec<(String, String)> = root
        .children()
        .filter(roxmltree::Node::is_element)
        .map(|e| {
            (
                e.tag_name().name().to_owned(),
                e.text().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let get = |name: &str| {
        elements
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let reference = get("ref")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ScaipError::Body("no <ref>".into()))?
        .to_owned();
    let cid = get("cid")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ScaipError::Body("no <cid>".into()))?
        .to_owned();
    Ok(Mrq {
        reference,
        mty: get("mty").map(|m| m.trim().to_owned()),
        cid,
        dty: get("dty").and_then(number),
        stc: get("stc").and_then(number),
        did: get("did").and_then(number),
        lco: get("lco").and_then(number),
        cha: get("cha").and_then(number),
        crd: get("crd").map(|c| c.trim().to_owned()),
        elements,
    })
}

/// The `<mrs>` answer body for a report: `ref` echoed, status number `snu` 0 (received).
pub fn mrs(reference: &str) -> String {
    format!(
        "<mrs><ref>{}</ref><snu>0</snu></mrs>",
        xml_escape(reference)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A SIP response to `req`: status line, the request's `Via`s, `From`, `To` (with `to_tag`
/// added when the request's `To` has no tag), `Call-ID`, `CSeq`, and `body` (an `<mrs>`) as
/// `application/scaip+xml` when given.
pub fn response(
    req: &Request,
    code: u16,
    reason: &str,
    to_tag: &str,
    body: Option<&str>,
) -> Vec<u8> {
    response_with(req, code, reason, to_tag, &[], body)
}

/// [`response`] with `extra` headers (a `401`'s `WWW-Authenticate`).
pub fn response_with(
    req: &Request,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in &req.via {
        out.push_str("Via: ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    let to = if req.to.to_ascii_lowercase().contains(";tag=") || to_tag.is_empty() {
        req.to.clone()
    } else {
        format!("{};tag={to_tag}", req.to)
    };
    for (name, value) in [
        ("From", req.from.as_str()),
        ("To", to.as_str()),
        ("Call-ID", req.call_id.as_str()),
        ("CSeq", req.cseq.as_str()),
    ] {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if code == 405 {
        out.push_str("Allow: MESSAGE, OPTIONS\r\n");
    }
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    match body {
        Some(b) => {
            out.push_str("Content-Type: ");
            out.push_str(CONTENT_TYPE);
            out.push_str("\r\n");
            out.push_str("Content-Length: ");
            out.push_str(&b.len().to_string());
            out.push_str("\r\n\r\n");
            out.push_str(b);
        }
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies of `../shared/vectors/PROTOCOL-VECTORS.md` §D (device captures).
    pub(crate) const D: [&str; 9] = [
        "<mrq><ref>00001A85</ref><cha>0</cha><mty>PI</mty><cid>26317</cid><dty>02</dty><did>00</did><crd>no-voice:</crd><stc>102</stc></mrq>",
        "<mrq><mty>PI</mty><ref>1998218577</ref><cid>10149471</cid><dty>2</dty></mrq>",
        "<mrq><ref>v6l7eiuzBTfybE7j</ref><cid>999998</cid><dty>0002</dty><mty>PI</mty><stc>0009</stc><lco>002</lco><crd>gsm:</crd><cha>0</cha></mrq>",
        "<mrq><ref>00001883</ref><cha>0</cha><mty>ME</mty><cid>26317</cid><dty>02</dty><did>00</did><crd>gsm:+37284463906</crd><stc>010</stc></mrq>",
        "<mrq><ref>1193308443</ref><cid>10149471</cid><dty>3</dty><stc>10</stc><crd>gsm:</crd></mrq>",
        "<mrq><ref>lmepivnFqmI8Jvv1</ref><cid>999998</cid><dty>0002</dty><mty>ME</mty><stc>0067</stc><crd>gsm:</crd><cha>0</cha></mrq>",
        "<mrq><ref>yhexGeV5E49zglfi</ref><cid>999998</cid><dty>0004</dty><mty>ME</mty><stc>0010</stc><lco>002</lco><crd>gsm:</crd><cha>0</cha></mrq>",
        "<mrq><ref>803137200003</ref><mty>ME</mty><cid> 8031372</cid><dty>0004</dty><stc>0010</stc><crd>gsm:+</crd></mrq>",
        "<mrq><ref>787025300001</ref><cha>1</cha><mty>ME</mty><cid>__CID__</cid><dty>0004</dty><stc>0010</stc><crd>gsm:__GSMNUMBER__</crd></mrq>",
    ];

    fn message(body: &str) -> String {
        format!(
            "MESSAGE sip:alarm@arc.example;transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK776asdhds\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:26317@unit.example>;tag=49583\r\n\
             To: <sip:alarm@arc.example>\r\n\
             Call-ID: a84b4c76e66710@10.0.0.5\r\n\
             CSeq: 1 MESSAGE\r\n\
             Content-Type: application/scaip+xml\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn every_vector_body_parses_with_numbers_compared_numerically() {
        let m: Vec<Mrq> = D.iter().map(|b| parse_mrq(b).expect(b)).collect();
        assert!(m[0].is_heartbeat() && m[1].is_heartbeat() && m[2].is_heartbeat());
        assert!(
            m[3..].iter().all(|x| !x.is_heartbeat()),
            "ME and a missing mty are reports"
        );
        assert_eq!(m[0].dty, Some(2));
        assert_eq!(m[1].dty, Some(2));
        assert_eq!(m[2].dty, Some(2));
        assert_eq!(m[3].stc, Some(10));
        assert_eq!(m[4].stc, Some(10));
        assert_eq!(m[6].stc, Some(10));
        assert_eq!(m[5].stc, Some(67));
        assert_eq!(m[2].lco, Some(2));
        assert_eq!(m[7].unit(), "8031372", "the leading space of D8's cid");
        assert_eq!(m[0].reference, "00001A85");
        assert_eq!(m[3].crd.as_deref(), Some("gsm:+37284463906"));
        assert_eq!(m[4].mty, None);
        assert_eq!(m[8].unit(), "__CID__");
        // Nothing is dropped: every element is kept in order.
        assert_eq!(m[0].elements.len(), 8);
        assert_eq!(m[0].elements[7], ("stc".to_owned(), "102".to_owned()));
    }

    #[test]
    fn a_request_splits_parses_and_is_answered_with_its_reference() {
        let text = message(D[3]);
        let mut stream = text.clone().into_bytes();
        stream.extend_from_slice(message(D[0]).as_bytes());
        let Split::Message { len } = split(&stream) else {
            panic!("one message");
        };
        assert_eq!(len, text.len());
        assert_eq!(split(&stream[..len - 1]), Split::Incomplete);
        let req = parse_request(&stream[..len]).expect("request");
        assert_eq!(req.method, "MESSAGE");
        assert_eq!(req.content_type, CONTENT_TYPE);
        let mrq = parse_mrq(&req.body).expect("mrq");
        assert_eq!(mrq.reference, "00001883");
        let resp = response(&req, 200, "OK", "w1", Some(&mrs(&mrq.reference)));
        let expected = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK776asdhds\r\n\
            From: <sip:26317@unit.example>;tag=49583\r\n\
            To: <sip:alarm@arc.example>;tag=w1\r\n\
            Call-ID: a84b4c76e66710@10.0.0.5\r\n\
            CSeq: 1 MESSAGE\r\n\
            Content-Type: application/scaip+xml\r\n\
            Content-Length: 42\r\n\r\n\
            <mrs><ref>00001883</ref><snu>0</snu></mrs>";
        assert_eq!(String::from_utf8(resp).expect("utf-8"), expected);
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            parse_request(b"hello world"),
            Err(ScaipError::NotSip(_))
        ));
        assert!(matches!(
            parse_request(b"MESSAGE sip:a SIP/2.0\r\nFrom: x\r\n\r\n"),
            Err(ScaipError::Header(_))
        ));
        assert!(matches!(
            parse_mrq("<mrq><ref>1</ref></mrq>"),
            Err(ScaipError::Body(_))
        ));
        assert!(matches!(
            parse_mrq("<mrs><ref>1</ref><cid>2</cid></mrs>"),
            Err(ScaipError::Body(_))
        ));
        assert!(matches!(
            parse_mrq("<mrq><ref>1</ref>"),
            Err(ScaipError::Body(_))
        ));
        let entity = "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><mrq><ref>&a;</ref><cid>1</cid></mrq>";
        assert!(parse_mrq(entity).is_err(), "no DTDs");
        assert!(matches!(
            split(&vec![b'a'; MAX_MESSAGE + 1]),
            Split::Broken(_)
        ));
        assert!(matches!(
            split(b"MESSAGE sip:a SIP/2.0\r\nVia: x\r\n\r\n"),
            Split::Broken(ScaipError::Header(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn nothing_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = split(&bytes);
            if let Ok(r) = parse_request(&bytes) {
                let _ = parse_mrq(&r.body);
                let _ = response(&r, 200, "OK", "t", Some("<mrs/>"));
            }
            let _ = parse_mrq(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn split_finds_what_it_was_given(body in "[a-z<>/ ]{0,300}", tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let text = message(&body);
            let mut stream = text.clone().into_bytes();
            stream.extend_from_slice(&tail);
            proptest::prop_assert_eq!(split(&stream), Split::Message { len: text.len() });
            let req = parse_request(text.as_bytes()).expect("request");
            proptest::prop_assert_eq!(req.body, body);
        }
    }
}
