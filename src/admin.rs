//! The admin listener (`[admin] listen`, loopback unless `allow_remote`): `GET /metrics`
//! (Prometheus text), `GET /healthz` (the process answers) and `GET /readyz` (listeners
//! bound, the PACS's HTTP and DICOM ports accept a TCP connection, no serving certificate
//! has expired). Never on the public listeners; no authentication, so it stays local.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::config::{AdminConfig, Config};
use crate::server::{self, Shutdown};

/// How long a PACS probe may take, and how long its answer is reused: a scraper polling
/// every second must not turn into a connection storm against the PACS.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_CACHE: Duration = Duration::from_secs(2);
/// Admin connections at once (a scraper and an operator's curl; more is a mistake).
const MAX_CONNECTIONS: usize = 16;

pub struct AdminContext {
    pub config: AdminConfig,
    /// (name, host:port) of each PACS port to probe.
    upstreams: Vec<(&'static str, String)>,
    /// Set once every public listener is bound and accepting.
    listening: AtomicBool,
    probes: tokio::sync::Mutex<Option<(Instant, Vec<Probe>)>>,
}

#[derive(Debug, Clone)]
struct Probe {
    name: &'static str,
    target: String,
    error: Option<String>,
}

impl AdminContext {
    pub fn new(config: &Config) -> Option<Arc<Self>> {
        let admin = config.admin.clone()?;
        let mut upstreams = Vec::new();
        if let Some(h) = &config.http {
            upstreams.push(("pacs_http", h.upstream.authority.clone()));
        }
        if let Some(d) = &config.dicom {
            upstreams.push(("pacs_dicom", d.upstream.clone()));
        }
        Some(Arc::new(Self {
            config: admin,
            upstreams,
            listening: AtomicBool::new(false),
            probes: tokio::sync::Mutex::new(None),
        }))
    }

    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// Probe results, at most `PROBE_CACHE` old. The async mutex makes concurrent
    /// scrapes share one round of probes.
    async fn probes(&self) -> Vec<Probe> {
        let mut cached = self.probes.lock().await;
        if let Some((at, probes)) = cached.as_ref() {
            if at.elapsed() < PROBE_CACHE {
                return probes.clone();
            }
        }
        let mut probes = Vec::new();
        for (name, target) in &self.upstreams {
            let error = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(target)).await
            {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            probes.push(Probe {
                name,
                target: target.clone(),
                error,
            });
        }
        *cached = Some((Instant::now(), probes.clone()));
        probes
    }

    /// (ready, one line per check).
    async fn readiness(&self) -> (bool, String) {
        let mut ready = true;
        let mut text = String::new();
        // Writing to a String cannot fail.
        if self.listening.load(Ordering::Acquire) {
            let _ = writeln!(text, "ok listeners: bound");
        } else {
            ready = false;
            let _ = writeln!(text, "fail listeners: not bound yet");
        }
        for p in self.probes().await {
            match &p.error {
                None => {
                    let _ = writeln!(text, "ok {}: {} accepts connections", p.name, p.target);
                }
                Some(e) => {
                    ready = false;
                    let _ = writeln!(text, "fail {}: {}: {e}", p.name, p.target);
                }
            }
        }
        let expired = crate::tls::expiry::expired_now();
        if expired.is_empty() {
            let _ = writeln!(text, "ok certificates: none expired");
        } else {
            ready = false;
            let _ = writeln!(text, "fail certificates: expired: {}", expired.join(", "));
        }
        (ready, text)
    }
}

/// Serve the admin endpoints on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<AdminContext>,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    server::accept_loop(
        "admin",
        listener,
        (MAX_CONNECTIONS, None, None),
        shutdown,
        tracker,
        move |tcp, _peer, _admission| connection(tcp, ctx.clone()),
    )
    .await;
}

async fn connection(tcp: TcpStream, ctx: Arc<AdminContext>) {
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(req, &ctx).await) }
    });
    // One request per connection: a scrape or a probe, nothing to keep alive across a
    // shutdown. The header timeout bounds a client that never finishes its request.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(false)
        .serve_connection(TokioIo::new(tcp), service);
    if let Err(e) = conn.await {
        tracing::debug!(listener = "admin", error = %e, "admin connection ended with an error");
    }
}

async fn route(req: Request<Incoming>, ctx: &AdminContext) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => match crate::metrics::render() {
            Ok(body) => {
                let mut resp = text(StatusCode::OK, body);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                resp
            }
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding failed\n".into(),
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let (ready, body) = ctx.readiness().await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
