//! The HTTPS listener: TLS handshake (bounded), HTTP/1.1 or HTTP/2 by ALPN, then each
//! request passes the access policy (`guard`: canonical path, authenticate, rate-limit,
//! authorize) and is forwarded to the PACS (`forward`: rewrite, then `upstream`: pooled
//! connections with a clock on each phase); one audit record per request.

pub mod body;
pub mod canonical;
pub mod error;
pub mod forward;
pub mod guard;
mod headers;
pub mod metered;
pub mod policy;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use self::body::{ProxyBody, ResponseBody};
use self::forward::{ConnInfo, Forwarder};
use self::metered::{AuditEntry, Metered, RequestRecord};
use self::policy::identity::AuthMethod;
use self::policy::PolicyHandle;
use crate::audit::Audit;
use crate::config::HttpConfig;
use crate::metrics::{HTTPS, METRICS};
use crate::server::linger::{self, Lingering};
use crate::server::{
    self, Admission, ClientBudget, LastIo, Peer, ProxyProtocol, Shutdown, Tracked,
};
use crate::tls::{self, ReloadableServer};

/// Everything a connection task needs, shared by all of them.
pub struct HttpContext {
    pub config: HttpConfig,
    pub tls: Arc<ReloadableServer>,
    pub upstream: Forwarder,
    pub audit: Arc<Audit>,
    pub policy: Arc<PolicyHandle>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpContext {
    pub fn new(
        config: HttpConfig,
        tls: Arc<ReloadableServer>,
        upstream: Forwarder,
        audit: Arc<Audit>,
        policy: Arc<PolicyHandle>,
    ) -> Arc<Self> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(config.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(128);
        Arc::new(Self {
            config,
            tls,
            upstream,
            audit,
            policy,
            builder,
        })
    }
}

/// Serve HTTPS on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    let limits = (
        ctx.config.max_connections,
        Some(ClientBudget::new(ctx.config.budget)),
        Some(Arc::new(ProxyProtocol {
            trusted: ctx.config.proxy_protocol.clone(),
            first_byte_timeout: ctx.config.handshake_timeout,
        })),
    );
    let stop = shutdown.stop_accepting.clone();
    server::accept_loop(
        "https",
        listener,
        limits,
        shutdown,
        tracker,
        move |tcp, peer, admission| {
            let span = tracing::info_span!(
                "conn",
                listener = "https",
                peer = %peer.addr,
                via = tracing::field::Empty,
                tls.cn = tracing::field::Empty,
                tls.fp = tracing::field::Empty
            );
            if let Some(lb) = peer.via {
                span.record("via", tracing::field::display(lb));
            }
            handle_connection(tcp, (peer, admission), ctx.clone(), stop.clone()).instrument(span)
        },
    )
    .await;
}

/// `admission` stays pending (`server::budget`) until a request passes the access policy:
/// an idle connection, a request head that never ends, an HTTP/2 connection without a
/// stream, or one whose requests are all refused (401, 403, 429...) is closed at the
/// listener's `pending_timeout`.
async fn handle_connection(
    tcp: TcpStream,
    (peer, admission): (Peer, Arc<Admission>),
    ctx: Arc<HttpContext>,
    stop: tokio_util::sync::CancellationToken,
) {
    let handshake = tokio::time::timeout(ctx.config.handshake_timeout, ctx.tls.accept(tcp));
    let (stream, identity, revocation) = match tls::observe_handshake(HTTPS, handshake.await) {
        Ok(Ok(a)) => (a.stream, a.identity, a.revocation),
        Ok(Err(e)) => return tls::log_handshake_failure(&e),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    tls::record_identity(&tracing::Span::current(), identity.as_deref());
    let conn_info = Arc::new(ConnInfo::new(peer.addr, identity).via(peer.via));
    let info = conn_info.clone();
    let activity = LastIo::new();
    let io = TokioIo::new(Tracked::new(
        Lingering::new(stream, linger::HTTP),
        activity.clone(),
    ));
    let service_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = service_ctx.clone();
        let conn = conn_info.clone();
        let admission = admission.clone();
        async move { Ok::<_, Infallible>(handle_request(req, &ctx, &conn, &admission).await) }
    });
    let conn = ctx.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = ctx.config.idle_timeout;
    let ended = tokio::select! {
        res = conn.as_mut() => Some(res),
        () = stop.cancelled() => None,
        () = activity.idle_timeout(idle) => {
            tracing::debug!("idle timeout");
            Some(Ok(()))
        }
        // Logged by `revoked`; in-flight requests end with the connection.
        () = revocation.revoked() => Some(Ok(())),
    };
    let result = match ended {
        Some(res) => res,
        // Shutdown: finish in-flight requests, close idle keep-alive connections.
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    ctx.upstream.release(&info);
    log_connection_end(result);
}

async fn handle_request(
    mut req: Request<Incoming>,
    ctx: &HttpContext,
    conn: &ConnInfo,
    admission: &Admission,
) -> Response<ResponseBody> {
    let policy = ctx.policy.current();
    let mut entry = AuditEntry::new(ctx.audit.clone(), Instant::now(), new_record(&req, conn));
    // Hop-by-hop headers (and those the client names in `Connection`) end here, before the
    // guard adds our own: a client must not be able to name `X-Forwarded-User` or the
    // PACS `Authorization` the gateway injects and have the proxy strip them (RFC 9110
    // §7.6.1 applies to the client's hop, not to headers this hop creates).
    headers::strip_hop_by_hop(req.headers_mut());
    if !ctx.audit.admits() {
        // `audit.on_full = "refuse"` and records cannot be written now: no unaudited access.
        entry.record.denied = Some("audit unavailable".into());
        drain(req.into_body()).await;
        let mut resp = audit_unavailable();
        guard::harden(resp.headers_mut(), &policy);
        entry.record.status = resp.status().as_u16();
        return resp.map(|b| Metered::with_entry(b, entry));
    }
    let admitted = guard::admit(&mut req, &policy, &ctx.policy, conn, &mut entry.record).await;
    let mut resp = match admitted {
        Ok(()) => {
            admission.authenticated();
            let req = req.map(|b| Metered::new(b, entry.bytes_in.clone()));
            match ctx.upstream.forward(req, conn).await {
                Ok(resp) => resp,
                Err(e) => {
                    entry.upstream_failed(&e);
                    e.into_response()
                }
            }
        }
        Err(refusal) => {
            refusal.count();
            tracing::info!(reason = %refusal, path = ?entry.record.path, "request refused");
            entry.record.denied = Some(refusal.to_string());
            drain(req.into_body()).await;
            refusal.into_response()
        }
    };
    guard::harden(resp.headers_mut(), &policy);
    entry.record.status = resp.status().as_u16();
    resp.map(|b| Metered::with_entry(b, entry))
}

/// 503 while the audit cannot be written (RFC 9110 §15.6.4; Retry-After §10.2.3: the
/// writer retries a failed write every second).
fn audit_unavailable() -> Response<ProxyBody> {
    METRICS.http_refusals.inc("audit_unavailable");
    tracing::warn!("request refused: the audit cannot be written (audit.on_full = \"refuse\")");
    let mut resp = error::plain(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "503 Service Unavailable: the audit cannot be written; retry later\n",
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1u32));
    resp
}

/// Read (and discard) a small unread request body before refusing: an HTTP/2 stream reset
/// racing the response makes clients report a framing error instead of the status, and
/// HTTP/1.1 cannot reuse a connection with an unread body. Large bodies are not waited for.
async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    let bound = linger::HTTP_REFUSED_BODY;
    let mut seen = 0u64;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > bound.bytes {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(bound.time, read).await;
}

fn new_record(req: &Request<Incoming>, conn: &ConnInfo) -> RequestRecord {
    RequestRecord {
        user: None,
        auth: AuthMethod::None,
        cert_fingerprint: conn.identity.as_ref().map(|id| id.fingerprint.to_string()),
        client: conn.peer.ip().to_string(),
        via: conn.via.map(|lb| lb.ip().to_string()),
        method: req.method().as_str().to_string(),
        path: None,
        rule: None,
        denied: None,
        upstream_error: None,
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        duration_ms: 0.0,
    }
}

fn log_connection_end(res: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = res {
        // Client hang-ups, resets and protocol garbage: not our fault, debug only.
        tracing::debug!(error = %crate::telemetry::error_chain(e.as_ref()), "connection ended with an error");
    }
}
