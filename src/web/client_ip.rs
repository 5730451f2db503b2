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
