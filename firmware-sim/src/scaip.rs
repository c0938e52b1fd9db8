//! Simulated SCAIP social-alarm units: each sends a SIP `MESSAGE` with an
//! `application/scaip+xml` `<mrq>` over UDP, a heartbeat (`PI`) every `heartbeat` and now and
//! then an alarm (`ME`, status 10), and counts the answers: a `200` whose `<mrs>` echoes the
//! message's `ref` is an acknowledgement, any other status a refusal, silence (after 5 s,
//! retried once as a real unit would) unanswered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::dc09::Answers;

/// One unit.
#[derive(Debug, Clone)]
pub struct ScaipUnit {
    /// Its caller id (`cid`), as registered.
    pub cid: String,
    /// The receiver's UDP address.
    pub receiver: SocketAddr,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Every this many heartbeats, an alarm instead (0: never).
    pub alarm_every: u32,
}

/// The SIP request carrying report `n` of `unit` (an alarm when `alarm`), from `local`.
pub fn message(unit: &ScaipUnit, local: SocketAddr, n: u32, alarm: bool) -> (String, String) {
    let reference = format!("{n:08X}");
    let body = format!(
        "<mrq><ref>{reference}</ref><cha>0</cha><mty>{}</mty><cid>{}</cid><dty>02</dty><did>00</did><crd>no-voice:</crd><stc>{}</stc></mrq>",
        if alarm { "ME" } else { "PI" },
        unit.cid,
        if alarm { "010" } else { "102" },
    );
    let request = format!(
        "MESSAGE sip:alarm@{receiver} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{cid}x{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{cid}@{local}>;tag={cid}\r\n\
         To: <sip:alarm@{receiver}>\r\n\
         Call-ID: {cid}-{n}@{local}\r\n\
         CSeq: {n} MESSAGE\r\n\
         Content-Type: application/scaip+xml\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        receiver = unit.receiver,
        cid = unit.cid,
        len = body.len(),
    );
    (request, reference)
}

/// Runs `unit` until `stop`.
pub async fn run(unit: ScaipUnit, answers: Arc<Answers>, stop: CancellationToken) {
    let Ok(socket) = UdpSocket::bind(("127.0.0.1", 0)).await else {
        return;
    };
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut n: u32 = 0;
    while !stop.is_cancelled() {
        n = n.wrapping_add(1);
        let alarm = unit.alarm_every > 0 && n.is_multiple_of(unit.alarm_every);
        let (request, reference) = message(&unit, local, n, alarm);
        let mut answered = false;
        for _try in 0..2 {
            if socket
                .send_to(request.as_bytes(), unit.receiver)
                .await
                .is_err()
            {
                break;
            }
            let mut buf = [0u8; 2048];
            if let Ok(Ok(len)) =
                tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await
            {
                let reply = String::from_utf8_lossy(buf.get(..len).unwrap_or_default());
                if reply.starts_with("SIP/2.0 200 ")
                    && reply.contains(&format!("<ref>{reference}</ref>"))
                {
                    answers.acks.fetch_add(1, Ordering::Relaxed);
                } else {
                    answers.refusals.fetch_add(1, Ordering::Relaxed);
                }
                answered = true;
                break;
            }
        }
        if !answered {
            answers.unanswered.fetch_add(1, Ordering::Relaxed);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(unit.heartbeat) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_is_one_sip_request_with_a_scaip_body_warden_reads() {
        let unit = super::ScaipUnit {
            cid: "26317".into(),
            receiver: "127.0.0.1:5060".parse().expect("addr"),
            heartbeat: std::time::Duration::from_secs(1),
            alarm_every: 3,
        };
        let (text, reference) =
            super::message(&unit, "127.0.0.1:40000".parse().expect("addr"), 3, true);
        let req = warden_protocol::scaip::parse_request(text.as_bytes()).expect("request");
        let mrq = warden_protocol::scaip::parse_mrq(&req.body).expect("mrq");
        assert_eq!(mrq.reference, reference);
        assert!(!mrq.is_heartbeat());
        assert_eq!(mrq.unit(), "26317");
        assert_eq!(mrq.stc, Some(10));
    }
}
