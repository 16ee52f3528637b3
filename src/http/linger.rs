//! Lingering close: when the server ends a connection while the client is still sending
//! (a 431 for an oversized head, a 403 for an upload the policy refused), closing the
//! socket with unread bytes makes the kernel answer with a TCP RST, and the client loses
//! the response it had not read yet ("connection reset" instead of the status). So, like
//! nginx's `lingering_close`, shutting down first sends close_notify and FIN, then reads
//! and discards what the client still sends until it closes, for a bounded time and
//! number of bytes (RFC 9112 section 9.6 recommends exactly this staged close).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection may keep draining the client.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How many bytes a closing connection reads (and discards) at most.
const LINGER_BYTES: u64 = 16 * 1024 * 1024;

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
        drained: u64,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<S> Lingering<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: Closing::Open,
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
            *this.deadline = Some(Box::pin(tokio::time::sleep(LINGER_TIME)));
        }
        if *this.state == Closing::Draining {
            let timed_out = this
                .deadline
                .as_mut()
                .is_none_or(|d| d.as_mut().poll(cx).is_ready());
            if timed_out || drain(this.inner, cx, this.drained).is_ready() {
                *this.state = Closing::Closed;
                *this.deadline = None;
            } else {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads and discards until EOF, an error or the byte budget; pending while the client
/// has sent nothing more.
fn drain<S: AsyncRead>(
    mut inner: Pin<&mut S>,
    cx: &mut Context<'_>,
    drained: &mut u64,
) -> Poll<()> {
    let mut scratch = [0u8; 8192];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match inner.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                *drained += buf.filled().len() as u64;
                if *drained >= LINGER_BYTES {
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
        let mut server = Lingering::new(server);
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
        let mut server = Lingering::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= LINGER_TIME);
    }
}
