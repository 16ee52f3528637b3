//! Keep-alive HTTP/1.1 connections to the PACS. Each client connection keeps the upstream
//! connection its last request used (its "sticky" slot) and returns it to a shared idle
//! pool when it ends, so a keep-alive client costs no pool traffic per request and a
//! client that reconnects per request still reuses warm upstream connections.
//!
//! Every phase has a clock: connect (`connect_timeout`), the response head once the PACS
//! is to move (`response_timeout`, see [`Turn`]), and each gap in the response body while
//! it is awaited (`body_timeout`, see [`PacsBody`]). A connection whose PACS missed a
//! clock is aborted, never reused.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::body::{PacsBody, Turn, Watched};
use super::error::UpstreamError;
use crate::sync::lock;
use crate::telemetry::error_chain;

/// Idle upstream connections older than this are closed rather than reused: the PACS
/// may have dropped them already (Orthanc's HTTP server closes idle keep-alives).
const IDLE_EXPIRY: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 256;

/// The clocks of the upstream phases (from `http.upstream_*_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub body: Duration,
}

/// One HTTP/1.1 connection to the PACS and the task driving it.
struct Conn<B> {
    tx: SendRequest<Watched<B>>,
    task: AbortHandle,
}

/// The upstream connection a client connection is using, if any.
pub struct Sticky<B>(Mutex<Option<Conn<B>>>);

impl<B> Default for Sticky<B> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<B> std::fmt::Debug for Sticky<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sticky")
    }
}

pub struct Pool<B> {
    addr: String,
    timeouts: Timeouts,
    idle: Mutex<Vec<(Conn<B>, Instant)>>,
}

impl<B> Pool<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    pub fn new(addr: String, timeouts: Timeouts) -> Self {
        Self {
            addr,
            timeouts,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send `req` on a ready connection (the client's own, an idle one, or a new one).
    /// A pooled connection the PACS closed at the same moment is retried once on another,
    /// as long as the request has not been written.
    pub async fn send(
        &self,
        req: Request<B>,
        sticky: &Sticky<B>,
    ) -> Result<Response<PacsBody>, UpstreamError> {
        // A request without a body is the PACS's turn from the start: nothing to watch.
        let turn = (!req.body().is_end_stream()).then(Turn::new);
        let mut req = req.map(|b| Watched::new(b, turn.clone()));
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.take(sticky) {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let sent = self.await_head(conn.tx.try_send_request(req), turn.as_deref());
            match sent.await {
                Some(Ok(resp)) => {
                    let task = conn.task.clone();
                    self.put_back(sticky, conn);
                    return Ok(resp.map(|b| PacsBody::new(b, self.timeouts.body, task)));
                }
                Some(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused && !retried => {
                        retried = true;
                        req = unsent;
                    }
                    _ => {
                        conn.task.abort();
                        return Err(UpstreamError::from_send(e.into_error()));
                    }
                },
                None => {
                    // The request is in flight on this connection: it can serve no other.
                    conn.task.abort();
                    return Err(UpstreamError::ResponseTimeout(self.timeouts.response));
                }
            }
        }
    }

    /// `send` resolved, or `None` once the PACS held its turn for `response_timeout`.
    /// The clock runs only while the PACS is to move: from the start for a request
    /// without a body, else while the request body waits on the PACS (it has taken no
    /// bytes since the last ones were handed over, or the body has ended). A client
    /// uploading slowly is cut by its own idle timeout, not blamed on the PACS.
    async fn await_head<F: Future>(&self, send: F, turn: Option<&Turn>) -> Option<F::Output> {
        let limit = self.timeouts.response;
        let started = Instant::now();
        let waiting_since = || match turn {
            None => Some(started),
            Some(t) => t.pacs_waiting_since(),
        };
        tokio::pin!(send);
        loop {
            let deadline = waiting_since().map(|since| since + limit);
            tokio::select! {
                biased;
                out = &mut send => return Some(out),
                () = sleep_until(deadline) => {
                    // Bytes taken meanwhile move the deadline: check again before giving up.
                    if waiting_since().is_some_and(|since| since.elapsed() >= limit) {
                        return None;
                    }
                }
                () = changed(turn) => {}
            }
        }
    }

    /// The client connection ended: its upstream connection goes back to the pool.
    pub fn release(&self, sticky: &Sticky<B>) {
        if let Some(conn) = lock(&sticky.0).take() {
            self.park(conn);
        }
    }

    fn take(&self, sticky: &Sticky<B>) -> Option<Conn<B>> {
        {
            let mut own = lock(&sticky.0);
            if own.as_ref().is_some_and(|c| c.tx.is_ready()) {
                return own.take();
            }
        }
        let mut idle = lock(&self.idle);
        idle.retain(|(c, since)| !c.tx.is_closed() && since.elapsed() < IDLE_EXPIRY);
        let ready = idle.iter().rposition(|(c, _)| c.tx.is_ready())?;
        Some(idle.swap_remove(ready).0)
    }

    fn put_back(&self, sticky: &Sticky<B>, conn: Conn<B>) {
        let mut own = lock(&sticky.0);
        match own.as_ref() {
            Some(current) if !current.tx.is_closed() => {
                drop(own);
                self.park(conn);
            }
            _ => *own = Some(conn),
        }
    }

    fn park(&self, conn: Conn<B>) {
        if conn.tx.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Conn<B>, UpstreamError> {
        let addr = &self.addr;
        let timeout = self.timeouts.connect;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                addr: addr.clone(),
                timeout,
            })?
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::ConnectionRefused => UpstreamError::ConnectRefused {
                    addr: addr.clone(),
                    source,
                },
                _ => failed(addr, source),
            })?;
        tcp.set_nodelay(true).map_err(|e| failed(addr, e))?;
        let (tx, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| failed(addr, e))?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %error_chain(&e), "upstream connection ended");
            }
        })
        .abort_handle();
        Ok(Conn { tx, task })
    }
}

fn failed(addr: &str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> UpstreamError {
    UpstreamError::ConnectFailed {
        addr: addr.to_string(),
        source: source.into(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn changed(turn: Option<&Turn>) {
    match turn {
        Some(t) => t.changed().await,
        None => std::future::pending().await,
    }
}
