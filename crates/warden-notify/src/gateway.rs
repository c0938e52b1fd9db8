//! SMS and voice calls through an HTTP gateway: one request per page, built from a template
//! so that Twilio-like APIs (form fields, basic auth) and UK gateways (JSON, an API key
//! header) both fit without code. Placeholders in the URL and the body:
//! `{to}` (the number), `{text}` (the message), `{text_xml}` (the message XML-escaped, for
//! TwiML-like voice bodies), `{page}` (the page's or caller message's id), `{reference}` (the alarm's number or the
//! out-of-hours job's reference).
//! Each value is encoded for where it lands: percent-encoded in the URL and in a `form`
//! body, JSON-string-escaped in a `json` body (the template supplies the quotes).
//!
//! A 2xx answer means the gateway took the message; 408, 429, 5xx, a timeout or a refused
//! connection are temporary; any other 4xx (a landline given an SMS, a number the gateway
//! refuses) is permanent and not retried.

use std::time::Duration;

use crate::channel::{Attempt, Envelope, classify};
use crate::message::Message;

/// How the body template is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `application/x-www-form-urlencoded`.
    #[default]
    Form,
    /// `application/json`.
    Json,
}

/// One gateway (SMS or voice).
#[derive(Clone)]
pub struct GatewayConfig {
    /// The request URL; may hold placeholders.
    pub url: String,
    pub encoding: Encoding,
    /// The body template.
    pub body: String,
    /// HTTP basic authentication (Twilio: account SID and auth token).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Extra headers (an API key); values are not logged.
    pub headers: Vec<(String, String)>,
    /// Limit on one request.
    pub timeout: Duration,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("url", &self.url)
            .field("encoding", &self.encoding)
            .field("body", &self.body)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn percent(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json_inner(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `template` with its placeholders replaced by `values`, each passed through `encode`.
/// Unknown `{…}` are left as they are (a JSON template's own braces).
pub fn render(template: &str, values: &[(&str, String)], encode: fn(&str) -> String) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), &encode(value));
    }
    out
}

/// The values a message fills in.
fn values(to: &Envelope<'_>, m: &Message) -> Vec<(&'static str, String)> {
    vec![
        ("to", to.address.to_owned()),
        ("text_xml", xml(&m.text)),
        ("text", m.text.clone()),
        ("page", to.id.to_string()),
        ("reference", to.reference.to_owned()),
    ]
}

/// The request a message becomes: URL, content type and body.
pub fn request(
    cfg: &GatewayConfig,
    to: &Envelope<'_>,
    m: &Message,
) -> (String, &'static str, String) {
    let values = values(to, m);
    let url = render(&cfg.url, &values, percent);
    match cfg.encoding {
        Encoding::Form => (
            url,
            "application/x-www-form-urlencoded",
            render(&cfg.body, &values, percent),
        ),
        Encoding::Json => (
            url,
            "application/json",
            render(&cfg.body, &values, json_inner),
        ),
    }
}

/// Sends message `m` to `to` through the gateway.
pub async fn send(
    client: &reqwest::Client,
    cfg: &GatewayConfig,
    to: &Envelope<'_>,
    m: &Message,
) -> Attempt {
    let (url, content_type, body) = request(cfg, to, m);
    let mut req = client
        .post(url)
        .timeout(cfg.timeout)
        .header("content-type", content_type)
        .header("idempotency-key", to.key())
        .body(body);
    if let Some(user) = &cfg.username {
        req = req.basic_auth(user, cfg.password.as_ref());
    }
    for (k, v) in &cfg.headers {
        req = req.header(k, v);
    }
    classify(req.send().await, "the gateway")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> (Envelope<'static>, Message) {
        let p = Envelope {
            channel: "sms",
            address: "+447700900123",
            kind: "page",
            id: 9,
            reference: "42",
        };
        let m = Message {
            subject: String::new(),
            text: "Alarm \"#42\" & <call> now".into(),
            ack_url: None,
        };
        (p, m)
    }

    fn cfg(encoding: Encoding, body: &str) -> GatewayConfig {
        GatewayConfig {
            url: "https://gw.example/send?ref={reference}".into(),
            encoding,
            body: body.into(),
            username: None,
            password: None,
            headers: vec![],
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_twilio_like_form_body_is_percent_encoded() {
        let (p, m) = page();
        let (url, ct, body) = request(
            &cfg(Encoding::Form, "To={to}&From=%2B441234&Body={text}"),
            &p,
            &m,
        );
        assert_eq!(url, "https://gw.example/send?ref=42");
        assert_eq!(ct, "application/x-www-form-urlencoded");
        assert_eq!(
            body,
            "To=%2B447700900123&From=%2B441234&Body=Alarm+%22%2342%22+%26+%3Ccall%3E+now"
        );
    }

    #[test]
    fn a_json_body_escapes_inside_the_templates_quotes() {
        let (p, m) = page();
        let (_, ct, body) = request(
            &cfg(
                Encoding::Json,
                r#"{"destination": "{to}", "message": "{text}", "ref": {page}}"#,
            ),
            &p,
            &m,
        );
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["message"], "Alarm \"#42\" & <call> now");
        assert_eq!(v["destination"], "+447700900123");
        assert_eq!(v["ref"], 9);
    }

    #[test]
    fn a_voice_body_can_carry_the_text_as_xml() {
        let (p, m) = page();
        let (_, _, body) = request(
            &cfg(
                Encoding::Form,
                "Twiml=<Response><Say>{text_xml}</Say></Response>",
            ),
            &p,
            &m,
        );
        let decoded: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            decoded,
            [(
                "Twiml".to_owned(),
                "<Response><Say>Alarm &quot;#42&quot; &amp; &lt;call&gt; now</Say></Response>"
                    .to_owned()
            )]
        );
    }
}
