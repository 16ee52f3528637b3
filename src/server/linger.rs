//! Lingering close, for every listener: when the gateway ends a connection while the peer
//! is still sending (an HTTP 431 for an oversized head or a 403 for a refused upload; a
//! DICOM A-ASSOCIATE-RJ, or the A-ABORT for a first PDU that is not a well-formed RQ),
//! closing the socket with unread bytes makes the kernel answer with a TCP RST, and the
//! peer loses the refusal it had not read yet ("connection reset" instead of the status).
//! So, like nginx's `lingering_close`, shutting down first sends close_notify and FIN, then
//! reads and discards what the peer still sends until it closes, for a bounded time and
//! number of bytes ([`Bound`]). RFC 9112 section 9.6 recommends exactly this staged close
//! for HTTP; PS3.8 section 9.1.5 has the acceptor of an A-ASSOCIATE-RJ wait (ARTIM) for the
//! requestor to close the transport connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long, and how many bytes, a closing connection may keep draining its peer: the
/// bound on what a peer that never stops sending costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub time: Duration,
    pub bytes: u64,
}

/// HTTPS: a refused upload may still be arriving at full speed.
pub const HTTP: Bound = Bound {
    time: Duration::from_secs(2),
    bytes: 16 * 1024 * 1024,
};

/// HTTP, before a refusal is sent on a connection that stays open: how much of the unread
/// request body is read first (`http::drain`). Small: a large upload is not waited for,
/// the connection's lingering close ([`HTTP`]) covers it.
pub const HTTP_REFUSED_BODY: Bound = Bound {
    time: Duration::from_secs(1),
    bytes: 64 * 1024,
};

/// DICOM before the association exists: a requestor that sent an oversized first PDU
/// (or pipelined data after a refused RQ) may still be sending megabytes of it. PS3.8
/// §9.1.5 gives the acceptor of an RJ the ARTIM timer to wait for the close; 5 s, not the
/// configurable 30 s, since the per-address pending budget holds a slot meanwhile.
pub const DICOM: Bound = Bound {
    time: Duration::from_secs(5),
    bytes: 16 * 1024 * 1024,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    Draining,
    Closed,
}

pin_project! {
    /// An IO stream whose `poll_shutdown` lingers (see the module docs).
    pub struct Lingering<S> {
        #[pin]
        inner: S,
        state: Closing,
        bound: Bound,
        drained: u64,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> Lingering<S> {
    pub fn new(inner: S, bound: Bound) -> Self {
        Self {
            inner,
            state: Closing::Open,
            bound,
            drained: 0,
            deadline: None,
        }
    }
}

impl<S: AsyncRead> AsyncRead for Lingering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncWrite for Lingering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if *this.state == Closing::Open {
            ready!(this.inner.as_mut().poll_shutdown(cx))?;
            *this.state = Closing::Draining;
            *this.deadline = Some(Box::pin(tokio::time::sleep(this.bound.time)));
        }
        if *this.state == Closing::Draining {
            let timed_out = this
                .deadline
                .as_mut()
                .is_none_or(|d| d.as_mut().poll(cx).is_ready());
            if timed_out || drain_some(this.inner, cx, this.drained, this.bound.bytes).is_ready() {
                *this.state = Closing::Closed;
                *this.deadline = None;
            } else {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Lingering close of a stream the caller keeps: shut down, then drain within `bound`.
pub async fn close<S>(stream: &mut S, bound: Bound) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    Lingering::new(stream, bound).shutdown().await
}

/// The second half of a lingering close, for a stream already shut down (or a read half):
/// read and discard within `bound`.
pub async fn drain<S: AsyncRead + Unpin>(stream: &mut S, bound: Bound) {
    let mut drained = 0;
    let read = std::future::poll_fn(|cx| {
        drain_some(Pin::new(&mut *stream), cx, &mut drained, bound.bytes)
    });
    let _ = tokio::time::timeout(bound.time, read).await;
}

/// Reads and discards until EOF, an error or the byte budget; pending while the client
/// has sent nothing more.
fn drain_some<S: AsyncRead>(
    mut inner: Pin<&mut S>,
    cx: &mut Context<'_>,
    drained: &mut u64,
    limit: u64,
) -> Poll<()> {
    let mut scratch = [0u8; 8192];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match inner.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                *drained += buf.filled().len() as u64;
                if *drained >= limit {
                    return Poll::Ready(());
                }
            }
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_drains_until_the_client_closes() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server, HTTP);
        let closing = tokio::spawn(async move { server.shutdown().await });
        // The client sees the server's FIN, can still send, and its bytes are consumed.
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        client.write_all(&[7u8; 4096]).await.unwrap();
        assert!(!closing.is_finished());
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_linger_time() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server, HTTP);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= HTTP.time);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_draining_at_the_byte_bound() {
        let (mut server, mut client) = tokio::io::duplex(64 * 1024);
        let bound = Bound {
            time: Duration::from_secs(60),
            bytes: 100_000,
        };
        let closing = tokio::spawn(async move { close(&mut server, bound).await });
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        // A peer that never stops sending: the close ends once the bound is read, long
        // before the time bound.
        let started = tokio::time::Instant::now();
        let chunk = vec![0u8; 8192];
        while !closing.is_finished() {
            if client.write_all(&chunk).await.is_err() {
                break;
            }
        }
        closing.await.unwrap().unwrap();
        assert!(started.elapsed() < bound.time);
    }

    /// Abuse: a peer trickling a byte now and then (never enough for the byte bound, never
    /// silent long enough to look idle) is still cut off at the time bound.
    #[tokio::test(start_paused = true)]
    async fn drain_ends_at_the_time_bound_for_a_trickling_peer() {
        let (mut server, mut client) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        let draining = tokio::spawn(async move { drain(&mut server, DICOM).await });
        while !draining.is_finished() {
            if client.write_all(&[0u8]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        draining.await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= DICOM.time && elapsed < DICOM.time + Duration::from_secs(1));
    }
}
