//! The client's IP address, for logs and audit records.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The TCP peer, unless it is a trusted proxy: then the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy. Entries left of that are client-controlled
/// and ignored, so a client cannot forge its address by sending the header itself.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    let mut candidate = peer;
    for header in req
        .headers()
        .get_all("x-forwarded-for")
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let Ok(s) = header.to_str() else {
            return Some(candidate);
        };
        for part in s.split(',').rev() {
            let Ok(ip) = part.trim().parse::<IpAddr>() else {
                return Some(candidate);
            };
            candidate = ip;
            if !trusted.iter().any(|n| n.contains(&ip)) {
                return Some(ip);
            }
        }
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(peer: &str, xff: Option<&str>, trusted: &[&str]) -> Option<IpAddr> {
        let mut req = TestRequest::default().peer_addr(format!("{peer}:40000").parse().unwrap());
        if let Some(x) = xff {
            req = req.insert_header(("x-forwarded-for", x));
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_ip(&req.to_http_request(), &trusted)
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let addr = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            ip("203.0.113.9", Some("1.2.3.4"), &[]),
            addr("203.0.113.9"),
            "untrusted peer: header ignored"
        );
        assert_eq!(
            ip("10.0.0.2", Some("1.2.3.4"), &["10.0.0.0/8"]),
            addr("1.2.3.4")
        );
        assert_eq!(
            ip(
                "10.0.0.2",
                Some("6.6.6.6, 1.2.3.4, 10.0.0.7"),
                &["10.0.0.0/8"]
            ),
            addr("1.2.3.4"),
            "the right-most untrusted hop; client-written entries to its left are ignored"
        );
        assert_eq!(
            ip("10.0.0.2", Some("not-an-ip"), &["10.0.0.0/8"]),
            addr("10.0.0.2"),
            "garbage: the peer"
        );
        assert_eq!(ip("10.0.0.2", None, &["10.0.0.0/8"]), addr("10.0.0.2"));
    }
}
