//! Forwarding one request to the PACS and its response back, both bodies streamed (never
//! buffered), over pooled keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::ProxyError;
use super::headers;
use crate::config::HttpConfig;
use crate::tls::PeerIdentity;

/// Body of every response we send: the PACS's, streamed, or a short one of our own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// What the proxy knows about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub identity: Option<Arc<PeerIdentity>>,
}

/// The PACS's REST API and a pool of keep-alive connections to it.
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    authority: HeaderValue,
    base: String,
}

impl Upstream {
    pub fn new(config: &HttpConfig) -> Result<Self, http::header::InvalidHeaderValue> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.upstream_connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            client,
            authority: HeaderValue::from_str(&config.upstream.authority)?,
            base: format!("http://{}", config.upstream.authority),
        })
    }

    /// Send `req` (already authorised) upstream and return the response to stream back.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let req = self.rewrite(req, conn)?;
        let mut resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                ProxyError::ConnectUpstream(error_chain(&e))
            } else {
                ProxyError::ForwardRequest(error_chain(&e))
            }
        })?;
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }

    fn rewrite(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Request<Incoming>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let client_host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| parts.headers.get(http::header::HOST).cloned());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("{}{}", self.base, path)
            .parse::<Uri>()
            .map_err(|e| ProxyError::ForwardRequest(e.to_string()))?;
        // HTTP/2 from the client, HTTP/1.1 to the PACS (Orthanc speaks only HTTP/1.1).
        parts.version = Version::HTTP_11;
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_forwarded(
            &mut parts.headers,
            conn.peer.ip(),
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
