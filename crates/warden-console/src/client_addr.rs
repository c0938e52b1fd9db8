//! The client's real address: the connection's peer, or, when the peer is one of the
//! configured trusted proxies, the nearest address in `X-Forwarded-For` that is not a
//! trusted proxy (read from the right, as each proxy appends the address it saw). A
//! client cannot choose its own address by sending the header directly: it is read only
//! from a trusted peer.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Trusted proxies, parsed from `console.trusted_proxies` (addresses or CIDR ranges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses each entry; an error names the entry that is neither an address nor a range.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address behind `peer` given the request's headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return peer;
            };
            for part in text.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(ip),
                    // A malformed chain is not believed at all.
                    Err(_) => return peer,
                }
            }
        }
        // From the nearest hop outwards, the first address no trusted proxy owns; when
        // every hop is a trusted proxy, the farthest one.
        hops.iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_peer_that_is_not_trusted_is_the_client_whatever_it_sends() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).expect("parse");
        assert_eq!(
            t.client(ip("192.0.2.7"), &headers(&["203.0.113.9"])),
            ip("192.0.2.7")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.0.0.1"), &headers(&["203.0.113.9"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse(&["10.0.0.1", "172.16.0.0/12"]).expect("parse");
        // A forged first entry is not believed: the address the proxy saw is.
        let h = headers(&["198.51.100.1, 203.0.113.9", "172.16.4.4"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(
            t.client(ip("10.0.0.1"), &headers(&["172.16.0.2"])),
            ip("172.16.0.2")
        );
        // No header, or a malformed one: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.1"), &headers(&[])), ip("10.0.0.1"));
        assert_eq!(
            t.client(ip("10.0.0.1"), &headers(&["not-an-ip, 203.0.113.9"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_bad_entry_is_named() {
        let e = TrustedProxies::parse(&["10.0.0.1", "proxy.example"]).expect_err("bad");
        assert!(e.contains("proxy.example"), "{e}");
    }
}
