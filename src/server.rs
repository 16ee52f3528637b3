//! What every listener shares: a bounded accept loop (one permit per connection, backoff
//! on accept errors, per-address budgets for connections that have not authenticated yet:
//! `budget`), task tracking for graceful shutdown, and an activity clock for idle
//! timeouts.

pub mod budget;
pub mod client_key;
pub mod linger;
pub mod proxied;
pub mod proxy;
pub mod read_ahead;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use budget::{Admission, ClientBudget};
pub use client_key::{unmap, IpKey};
pub use proxied::{Peer, ProxyProtocol};
pub use read_ahead::ReadAhead;

/// Shutdown has two steps: stop accepting (SIGTERM: in-flight work may finish), then abort
/// (the grace period is over: drop whatever is left).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub stop_accepting: CancellationToken,
    pub abort: CancellationToken,
}

/// Accept connections until shutdown, at most `max_connections` at a time (further clients
/// wait in the kernel backlog), each handled on its own task tracked by `tracker`. With a
/// `budget`, a connection from an address at its per-address cap is closed at once
/// without taking a slot, and one still pending at its deadline is dropped.
///
/// With `proxy` (the HTTPS and DICOM listeners), a connection from a listed load balancer
/// first gives its PROXY header (`proxied`); the budget then counts the client it names,
/// not the LB: the LB's address carries every client's connections and must not fill a
/// cap meant for one of them. Until the header is read such a connection holds only its
/// permit, for at most `proxied::HEADER_TIMEOUT`, and only the LB can open it. Any other
/// peer that starts with a PROXY header is refused before TLS.
pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    (max_connections, budget, proxy): Limits,
    shutdown: Shutdown,
    tracker: TaskTracker,
    handler: F,
) where
    F: Fn(TcpStream, Peer, Arc<Admission>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut backoff = Duration::from_millis(10);
    // A permit left over from a connection refused by the budget, reused for the next.
    let mut spare = None;
    let mut refusals = Refusals::default();
    // The gauge shows 0 from the start, not only after the first connection.
    crate::metrics::METRICS.open_connections.add(name, 0);
    loop {
        let permit = match spare.take() {
            Some(p) => Ok(p),
            None => tokio::select! {
                p = limit.clone().acquire_owned() => p,
                () = shutdown.stop_accepting.cancelled() => break,
            },
        };
        // The semaphore is never closed, so acquiring only fails if it were; stop then.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.stop_accepting.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (mini-redis does the same).
                tracing::warn!(listener = name, error = %e, "accept failed");
                spare = Some(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(listener = name, %peer, error = %e, "TCP_NODELAY failed");
        }
        let abort = shutdown.abort.clone();
        if let Some(pp) = proxy.clone().filter(|p| p.trusts(peer.ip())) {
            let work = from_balancer(name, (pp, budget.clone()), stream, peer, handler.clone());
            let open = crate::metrics::OpenConnection::new(name);
            spawn_connection(&tracker, abort, (name, peer), work, (permit, open));
            continue;
        }
        let admission = match admit(name, budget.as_ref(), Peer::direct(peer)) {
            Ok(a) => a,
            Err(over) => {
                // Dropping the stream closes it. A summary at info at most every
                // REFUSAL_REPORT, so a flood cannot flood the log.
                refusals.count(name, peer, over);
                spare = Some(permit);
                continue;
            }
        };
        let (proxy, handler) = (proxy.clone(), handler.clone());
        let work = async move {
            let work = direct(name, proxy, stream, peer, handler, admission.clone());
            supervise(name, Peer::direct(peer), work, &admission).await;
        };
        let open = crate::metrics::OpenConnection::new(name);
        spawn_connection(&tracker, abort, (name, peer), work, (permit, open));
    }
    tracing::debug!(listener = name, "stopped accepting");
}

/// What a listener's accept loop is bounded by: its connection limit, its per-address
/// budget, and its PROXY protocol setting (`None`: the listener never speaks it).
pub type Limits = (usize, Option<Arc<ClientBudget>>, Option<Arc<ProxyProtocol>>);

/// From a listed load balancer: read its PROXY header, count the client it names in the
/// budget, then serve as that client.
async fn from_balancer<F, Fut>(
    name: &'static str,
    (pp, budget): (Arc<ProxyProtocol>, Option<Arc<ClientBudget>>),
    mut stream: TcpStream,
    lb: SocketAddr,
    handler: Arc<F>,
) where
    F: Fn(TcpStream, Peer, Arc<Admission>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(client) = pp.read_header(name, &mut stream, lb).await else {
        return;
    };
    let Ok(admission) = admit(name, budget.as_ref(), client) else {
        return;
    };
    let work = handler(stream, client, admission.clone());
    supervise(name, client, work, &admission).await;
}

/// From anyone else (already counted in the budget): on a PROXY-capable listener, refuse
/// a PROXY header first; then serve as the TCP peer.
async fn direct<F, Fut>(
    name: &'static str,
    proxy: Option<Arc<ProxyProtocol>>,
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<F>,
    admission: Arc<Admission>,
) where
    F: Fn(TcpStream, Peer, Arc<Admission>) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(pp) = proxy {
        if pp.check_direct(name, &mut stream, peer).await.is_err() {
            return;
        }
    }
    handler(stream, Peer::direct(peer), admission).await;
}

/// Run a connection's work until it ends or its admission's pending deadline passes.
async fn supervise(
    name: &'static str,
    client: Peer,
    work: impl Future<Output = ()>,
    admission: &Admission,
) {
    tokio::select! {
        () = work => {}
        () = admission.pending_expired() => {
            tracing::info!(listener = name, peer = %client.addr, "closed: not authenticated before the pending_timeout");
        }
    }
}

/// Count `client` in the per-address budget (a direct peer at accept, a client named by a
/// PROXY header once the header is read); a refusal is logged at debug and counted.
fn admit(
    name: &'static str,
    budget: Option<&Arc<ClientBudget>>,
    client: Peer,
) -> Result<Arc<Admission>, budget::OverBudget> {
    let Some(budget) = budget else {
        return Ok(Arc::new(Admission::unlimited()));
    };
    budget.admit(client.addr.ip()).map(Arc::new).inspect_err(|over| {
        tracing::debug!(listener = name, peer = %client.addr, via = ?client.via, reason = %over, "connection refused");
        crate::metrics::METRICS.budget_refusals.inc(name);
    })
}

/// Run one connection's task, tracked, until it ends or the shutdown grace period is
/// over; `held` (its permit and open-connection gauge) is released with it.
fn spawn_connection(
    tracker: &TaskTracker,
    abort: CancellationToken,
    (name, peer): (&'static str, SocketAddr),
    work: impl Future<Output = ()> + Send + 'static,
    held: impl Send + 'static,
) {
    tracker.spawn(async move {
        tokio::select! {
            () = work => {}
            () = abort.cancelled() => {
                tracing::info!(listener = name, %peer, "connection dropped at the end of the shutdown grace period");
            }
        }
        drop(held);
    });
}

/// How often refusals by the per-address budgets are summarised at info.
const REFUSAL_REPORT: Duration = Duration::from_secs(10);

/// Refusals by the per-address budgets since the last summary.
#[derive(Default)]
struct Refusals {
    since_report: u64,
    last_report: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, listener: &'static str, peer: SocketAddr, over: budget::OverBudget) {
        self.since_report += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|t| now.duration_since(t) < REFUSAL_REPORT)
        {
            return;
        }
        tracing::info!(
            listener,
            refused = self.since_report,
            last.peer = %peer,
            last.reason = %over,
            "connections closed at accept: over a per-address budget"
        );
        self.since_report = 0;
        self.last_report = Some(now);
    }
}

/// When a connection last moved a byte, shared between its IO wrapper and its watchdog.
#[derive(Debug)]
pub struct LastIo {
    base: Instant,
    last_ms: AtomicU64,
}

impl LastIo {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }

    /// Resolves once no byte has moved for `limit`.
    pub async fn idle_timeout(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

pin_project! {
    /// An IO stream that records each read and write in a [`LastIo`].
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        activity: Arc<LastIo>,
    }
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<LastIo>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() != before {
            this.activity.touch();
        }
        res
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
