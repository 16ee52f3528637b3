//! The HTTPS listener: TLS handshake (bounded), HTTP/1.1 or HTTP/2 by ALPN, then each
//! request goes through the proxy to the PACS. The policy issue inserts authenticate ->
//! rate-limit -> authorize in `handle_request`, before `Upstream::forward`.

pub mod error;
mod headers;
pub mod proxy;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use self::proxy::{ConnInfo, ProxyBody, Upstream};
use crate::audit::Audit;
use crate::config::HttpConfig;
use crate::server::{self, Activity, Shutdown, Tracked};
use crate::tls::{self, ReloadableServer};

/// Everything a connection task needs, shared by all of them.
pub struct HttpContext {
    pub config: HttpConfig,
    pub tls: Arc<ReloadableServer>,
    pub upstream: Upstream,
    pub audit: Arc<Audit>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpContext {
    pub fn new(
        config: HttpConfig,
        tls: Arc<ReloadableServer>,
        upstream: Upstream,
        audit: Arc<Audit>,
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
    let max = ctx.config.max_connections;
    let stop = shutdown.stop_accepting.clone();
    server::accept_loop(
        "https",
        listener,
        max,
        shutdown,
        tracker,
        move |tcp, peer| {
            let span = tracing::info_span!(
                "conn",
                listener = "https",
                %peer,
                tls.cn = tracing::field::Empty,
                tls.fp = tracing::field::Empty
            );
            handle_connection(tcp, peer, ctx.clone(), stop.clone()).instrument(span)
        },
    )
    .await;
}

async fn handle_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    stop: tokio_util::sync::CancellationToken,
) {
    let handshake =
        tokio::time::timeout(ctx.config.handshake_timeout, ctx.tls.acceptor().accept(tcp));
    let stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tls::log_handshake_failure(&e),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    let identity = tls::peer_identity(stream.get_ref().1);
    tls::record_identity(&tracing::Span::current(), identity.as_deref());
    let conn_info = Arc::new(ConnInfo::new(peer, identity));
    let info = conn_info.clone();
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let service_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = service_ctx.clone();
        let conn = conn_info.clone();
        async move { Ok::<_, Infallible>(handle_request(req, &ctx, &conn).await) }
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
    req: Request<Incoming>,
    ctx: &HttpContext,
    conn: &ConnInfo,
) -> Response<ProxyBody> {
    match ctx.upstream.forward(req, conn).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "upstream failed");
            e.into_response()
        }
    }
}

fn log_connection_end(res: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = res {
        // Client hang-ups, resets and protocol garbage: not our fault, debug only.
        tracing::debug!(error = %proxy::error_chain(e.as_ref()), "connection ended with an error");
    }
}
