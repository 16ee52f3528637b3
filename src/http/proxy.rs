//! Forwarding one request to the PACS and its response back, both bodies streamed (never
//! buffered), over pooled keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::headers;
use super::upstream::{Pool, Sticky};
use crate::config::HttpConfig;
use crate::tls::PeerIdentity;

/// Body of every response we send: the PACS's, streamed, or a short one of our own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Body of every request we forward: the client's, streamed, bytes counted for the audit.
pub type RequestBody = super::metered::Metered<Incoming>;

/// What the proxy knows about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub identity: Option<Arc<PeerIdentity>>,
    /// The peer's IP as a header value, built once per connection.
    pub peer_header: HeaderValue,
    /// The upstream connection this client connection is using.
    pub upstream: Sticky,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, identity: Option<Arc<PeerIdentity>>) -> Self {
        // An IP address is always a valid header value; the fallback is unreachable.
        let peer_header = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            identity,
            peer_header,
            upstream: Sticky::default(),
        }
    }
}

/// The PACS's REST API and a pool of keep-alive connections to it.
pub struct Upstream {
    pool: Pool,
    authority: HeaderValue,
}

impl Upstream {
    pub fn new(config: &HttpConfig) -> Result<Self, http::header::InvalidHeaderValue> {
        Ok(Self {
            pool: Pool::new(
                config.upstream.authority.clone(),
                config.upstream_connect_timeout,
            ),
            authority: HeaderValue::from_str(&config.upstream.authority)?,
        })
    }

    /// The client connection ended: keep its upstream connection for others.
    pub fn release(&self, conn: &ConnInfo) {
        self.pool.release(&conn.upstream);
    }

    /// Send `req` (already authorised) upstream and return the response to stream back.
    pub async fn forward(
        &self,
        req: Request<RequestBody>,
        conn: &ConnInfo,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let req = self.rewrite(req, conn)?;
        let mut resp = self.pool.send(req, &conn.upstream).await?;
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }

    fn rewrite(
        &self,
        req: Request<RequestBody>,
        conn: &ConnInfo,
    ) -> Result<Request<RequestBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let client_host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| parts.headers.get(http::header::HOST).cloned());
        // Origin-form towards the PACS (RFC 9112 §3.2.1); the authority goes in Host.
        let path = std::mem::take(&mut parts.uri)
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
        // HTTP/2 from the client, HTTP/1.1 to the PACS (Orthanc speaks only HTTP/1.1).
        parts.version = Version::HTTP_11;
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_forwarded(
            &mut parts.headers,
            &conn.peer_header,
            client_host,
            &self.authority,
        );
        Ok(Request::from_parts(parts, body))
    }
}

/// `Display` of an error and its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
