//! The two bodies that cross the upstream connection, each telling whose turn it is so a
//! stalled PACS is told apart from a slow client:
//!
//! - [`Watched`] wraps the request body: while its last poll returned data (or its end)
//!   and the connection has not asked for more, the PACS is the one to move (read the
//!   bytes, then answer); while it waits for the client, no upstream clock runs (the
//!   client's idle timeout governs).
//! - [`PacsBody`] wraps the response body: while the writer to the client waits on it,
//!   a gap longer than the body timeout ends it with [`UpstreamError::BodyStalled`] and
//!   closes the upstream connection. A slow *client* does not poll it, so no clock runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Sleep;

use super::error::UpstreamError;

/// Whose turn it is on one forwarded request, shared by [`Watched`] and the task waiting
/// for the response head.
#[derive(Debug)]
pub struct Turn {
    base: Instant,
    client: AtomicBool,
    /// Nanoseconds after `base` of the PACS's last progress (it took bytes, or the turn
    /// passed to it).
    pacs_since: AtomicU64,
    changed: Notify,
}

impl Turn {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            client: AtomicBool::new(false),
            pacs_since: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// `None` while the client is to move; else when the PACS's current wait began.
    pub fn pacs_waiting_since(&self) -> Option<Instant> {
        if self.client.load(Ordering::Acquire) {
            return None;
        }
        let nanos = self.pacs_since.load(Ordering::Acquire);
        Some(self.base + Duration::from_nanos(nanos))
    }

    /// Resolves after the turn passed from one side to the other (a permit is kept if
    /// nobody waits, so no change is lost between a check and this wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn to_pacs(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.pacs_since.store(nanos, Ordering::Release);
        if self.client.swap(false, Ordering::AcqRel) {
            self.changed.notify_one();
        }
    }

    fn to_client(&self) {
        if !self.client.swap(true, Ordering::AcqRel) {
            self.changed.notify_one();
        }
    }
}

pin_project! {
    /// A request body that records whose turn it is in a [`Turn`].
    pub struct Watched<B> {
        #[pin]
        inner: B,
        turn: Option<Arc<Turn>>,
    }
}

impl<B: Body> Watched<B> {
    /// `turn` is `None` for bodies known to be empty: nothing to watch.
    pub fn new(inner: B, turn: Option<Arc<Turn>>) -> Self {
        Self { inner, turn }
    }
}

impl<B: Body<Data = Bytes>> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(turn) = this.turn {
            match &polled {
                Poll::Pending => turn.to_client(),
                Poll::Ready(_) => turn.to_pacs(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The PACS's response body, cut after `timeout` without a byte while it is awaited.
pub struct PacsBody {
    inner: Incoming,
    timeout: Duration,
    /// Armed while the reader waits on `inner`; allocated on the first wait only (most
    /// small responses arrive with their head).
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    ended: bool,
    /// The connection task: aborted on a stall so its socket is closed at once.
    conn: AbortHandle,
}

impl PacsBody {
    pub(super) fn new(inner: Incoming, timeout: Duration, conn: AbortHandle) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
            armed: false,
            ended: false,
            conn,
        }
    }

    fn fail(&mut self, e: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.ended = true;
        self.conn.abort();
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for PacsBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        // `Incoming`, `Sleep` (boxed) and the rest are `Unpin`.
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(UpstreamError::BodyFailed(e)),
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(UpstreamError::BodyStalled(this.timeout)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;

    /// A request body that answers each poll from a script (`None`: still waiting).
    struct Scripted(VecDeque<Option<Option<Bytes>>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(None) => Poll::Pending,
                Some(Some(data)) => Poll::Ready(data.map(|d| Ok(Frame::data(d)))),
                None => Poll::Ready(None),
            }
        }
    }

    fn poll(body: &mut Watched<Scripted>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(body).poll_frame(&mut cx);
    }

    #[test]
    fn the_clock_runs_only_while_the_pacs_is_to_move() {
        let turn = Turn::new();
        let script = [None, Some(Some(Bytes::from_static(b"x"))), Some(None)];
        let mut body = Watched::new(Scripted(script.into_iter().collect()), Some(turn.clone()));
        // Before the connection asks for the body, the PACS has the request head.
        let first = turn.pacs_waiting_since().expect("the PACS's turn at first");
        // Waiting on the client: no upstream clock.
        poll(&mut body);
        assert_eq!(turn.pacs_waiting_since(), None);
        // Bytes handed over: the PACS's turn again, counted from now.
        poll(&mut body);
        let since = turn
            .pacs_waiting_since()
            .expect("the PACS's turn after data");
        assert!(since >= first);
        // The body ended: still the PACS's turn (it owes the response head).
        poll(&mut body);
        assert!(turn.pacs_waiting_since().is_some());
    }

    #[tokio::test]
    async fn each_change_of_turn_wakes_the_waiter() {
        let turn = Turn::new();
        let mut body = Watched::new(Scripted([None].into_iter().collect()), Some(turn.clone()));
        poll(&mut body);
        // The change happened before anyone waited: its permit is kept, not lost.
        tokio::time::timeout(Duration::from_secs(5), turn.changed())
            .await
            .expect("woken by the change to the client's turn");
    }
}
