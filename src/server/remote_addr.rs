//! The address a request came from: the socket's peer, or, when that peer
//! is one of `server.trusted_proxies`, the address the proxy says it
//! forwarded for. A forwarding header from anyone else is ignored: it is
//! whatever the sender wants it to be. Stream caps and sign-in rate limits count by it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::http::ConnInfo;
use crate::sse::RemoteAddr;

/// `server.trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<[IpAddr]>);

/// Inserts [`RemoteAddr`] into the request.
pub async fn identify_remote_addr(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .map(|info| info.0.peer.ip());
    if let Some(peer) = peer {
        let addr = remote_addr(peer, request.headers(), &trusted.0);
        request.extensions_mut().insert(RemoteAddr(addr));
    }
    next.run(request).await
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) past
/// trusted proxies; the first address that is not one is the client's.
pub fn remote_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip.to_canonical()) => nearest = ip.to_canonical(),
            Ok(ip) => return ip.to_canonical(),
            // Garbage: trust nothing beyond the last proxy we know.
            Err(_) => return nearest,
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let trusted: Vec<IpAddr> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        remote_addr(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        assert_eq!(addr("203.0.113.9", &["1.2.3.4"], &[]), "203.0.113.9");
        assert_eq!(
            addr("203.0.113.9", &["1.2.3.4"], &["10.0.0.1"]),
            "203.0.113.9"
        );
        assert_eq!(addr("10.0.0.1", &["1.2.3.4"], &["10.0.0.1"]), "1.2.3.4");
    }

    #[test]
    fn the_nearest_untrusted_hop_wins() {
        // The client claims 6.6.6.6; its proxy appended the real address.
        assert_eq!(
            addr("10.0.0.1", &["6.6.6.6, 1.2.3.4"], &["10.0.0.1"]),
            "1.2.3.4"
        );
        // Two proxies of ours, one header line each.
        assert_eq!(
            addr(
                "10.0.0.1",
                &["6.6.6.6, 1.2.3.4", "10.0.0.2"],
                &["10.0.0.1", "10.0.0.2"]
            ),
            "1.2.3.4"
        );
        assert_eq!(addr("10.0.0.1", &["junk"], &["10.0.0.1"]), "10.0.0.1");
        assert_eq!(addr("10.0.0.1", &[], &["10.0.0.1"]), "10.0.0.1");
        assert_eq!(
            addr("::ffff:10.0.0.1", &["1.2.3.4"], &["10.0.0.1"]),
            "1.2.3.4"
        );
    }
}
