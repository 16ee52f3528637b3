//! Header hygiene between client and PACS: hop-by-hop headers end here (RFC 9110 §7.6.1),
//! and the X-Forwarded-* set is ours alone, replacing whatever the client sent.

use http::header::PROXY_AUTHENTICATE;
use http::header::PROXY_AUTHORIZATION;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, FORWARDED, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Remove hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard `Proxy-Connection`
/// and `Keep-Alive`), including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        headers.remove(CONNECTION);
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Replace the forwarding headers with what this hop knows: the peer address (`peer`,
/// prepared once per connection), `https`, and the host the client asked for. `Host`
/// becomes the upstream authority.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    client_host: Option<HeaderValue>,
    upstream_authority: &HeaderValue,
) {
    for name in [&FORWARDED, &X_FORWARDED_PORT, &X_REAL_IP, &X_FORWARDED_HOST] {
        headers.remove(name);
    }
    headers.insert(X_FORWARDED_FOR.clone(), peer.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    if let Some(host) = client_host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
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
        h.append(CONNECTION, HeaderValue::from_static("X-Other"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn forwarding_headers_from_the_client_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.9.9.8"));
        h.insert("forwarded", HeaderValue::from_static("for=10.9.9.9"));
        h.insert("x-real-ip", HeaderValue::from_static("10.9.9.9"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let up = HeaderValue::from_static("127.0.0.1:8042");
        set_forwarded(&mut h, &HeaderValue::from_static("192.0.2.7"), None, &up);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key("x-forwarded-host"));
        assert_eq!(h[HOST], "127.0.0.1:8042");
        assert!(!h.contains_key("forwarded") && !h.contains_key("x-real-ip"));
    }
}
