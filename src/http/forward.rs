//! Forwarding one admitted request to the PACS: rewrite it for the upstream hop (origin
//! form, HTTP/1.1, our X-Forwarded-* set, `Host`) and send it through the pool; both
//! bodies stream, never buffered.
//!
//! Hop-by-hop headers are not touched here for the request: `http::handle_request` strips
//! them once, before the guard, so what the guard sees is what is forwarded.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::Either;

use super::body::{ProxyBody, RequestBody};
use super::headers;
use super::upstream::{Pool, Sticky, Timeouts, UpstreamError};
use crate::config::HttpConfig;
use crate::tls::PeerIdentity;

/// What the forwarder knows about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the address a trusted load balancer's PROXY header
    /// names (`server::proxied`). Limits, rules, X-Forwarded-For and the audit use it.
    pub peer: SocketAddr,
    /// The load balancer the connection came through, if any.
    pub via: Option<SocketAddr>,
    pub identity: Option<Arc<PeerIdentity>>,
    /// The peer's IP as a header value, built once per connection.
    pub peer_header: HeaderValue,
    /// The upstream connection this client connection is using.
    pub upstream: Sticky<RequestBody>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, identity: Option<Arc<PeerIdentity>>) -> Self {
        // An IP address is always a valid header value; the fallback is unreachable.
        let peer_header = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            via: None,
            identity,
            peer_header,
            upstream: Sticky::default(),
        }
    }

    /// The load balancer the connection came through (`server::Peer::via`).
    pub fn via(mut self, lb: Option<SocketAddr>) -> Self {
        self.via = lb;
        self
    }
}

/// The PACS's REST API and a pool of keep-alive connections to it.
pub struct Forwarder {
    pool: Pool<RequestBody>,
    authority: HeaderValue,
}

impl Forwarder {
    pub fn new(config: &HttpConfig) -> Result<Self, http::header::InvalidHeaderValue> {
        let timeouts = Timeouts {
            connect: config.upstream_connect_timeout,
            response: config.upstream_timeout,
            body: config.upstream_body_timeout,
        };
        Ok(Self {
            pool: Pool::new(config.upstream.authority.clone(), timeouts),
            authority: HeaderValue::from_str(&config.upstream.authority)?,
        })
    }

    /// The client connection ended: keep its upstream connection for others.
    pub fn release(&self, conn: &ConnInfo) {
        self.pool.release(&conn.upstream);
    }

    /// Send `req` (admitted, hop-by-hop headers already gone) upstream and return the
    /// response to stream back.
    pub async fn forward(
        &self,
        req: Request<RequestBody>,
        conn: &ConnInfo,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let req = self.rewrite(req, conn);
        let mut resp = self.pool.send(req, &conn.upstream).await?;
        // The PACS's hop ends here too (RFC 9110 §7.6.1).
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }

    fn rewrite(&self, req: Request<RequestBody>, conn: &ConnInfo) -> Request<RequestBody> {
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
        headers::set_forwarded(
            &mut parts.headers,
            &conn.peer_header,
            client_host,
            &self.authority,
        );
        Request::from_parts(parts, body)
    }
}
