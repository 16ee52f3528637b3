//! Header hygiene between client and PACS: hop-by-hop headers end here (RFC 9110 §7.6.1),
//! and the X-Forwarded-* set is ours alone, replacing whatever the client sent.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client-supplied forwarding headers: a client must not be able to claim another address.
const FORWARDING: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Replace the forwarding headers with what this hop knows: the peer address, `https`,
/// and the host the client asked for. `Host` becomes the upstream authority.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    client_host: Option<HeaderValue>,
    upstream_authority: &HeaderValue,
) {
    for name in FORWARDING {
        headers.remove(name);
    }
    // An IP address is always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = client_host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert(HOST, upstream_authority.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_and_fixed_hop_by_hop_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn forwarding_headers_from_the_client_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        h.insert("forwarded", HeaderValue::from_static("for=10.9.9.9"));
        h.insert("x-real-ip", HeaderValue::from_static("10.9.9.9"));
        let up = HeaderValue::from_static("127.0.0.1:8042");
        set_forwarded(
            &mut h,
            "192.0.2.7".parse().unwrap(),
            Some(HeaderValue::from_static("pacs.example.org")),
            &up,
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "pacs.example.org");
        assert_eq!(h[HOST], "127.0.0.1:8042");
        assert!(!h.contains_key("forwarded") && !h.contains_key("x-real-ip"));
    }
}
