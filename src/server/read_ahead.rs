//! Read-ahead under TLS, only while a peer is sending in bulk.
//!
//! rustls asks its transport for one record's worth at a time (rustls 0.23
//! `DeframerVecBuffer::prepare_read`: 4 KiB more than it holds, at most one 16 KiB record
//! plus overhead), so an upload or a C-STORE costs one recvfrom(2) per TLS record:
//! measured 4,373 reads of 16,437 bytes for a 64 MiB HTTPS upload. `ReadAhead` notices bulk
//! (a read that fills the caller's buffer: more is probably queued in the kernel), then
//! reads up to `CAPACITY` at once and hands it out from memory. When a read brings less
//! than one record the peer has gone quiet, and the buffer is freed once handed out: idle
//! and request/response connections hold no read-ahead memory (a fixed `BufReader` would
//! hold its buffer for every open connection).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

/// Bytes read at once in bulk mode.
pub const CAPACITY: usize = 128 * 1024;
/// A bulk read bringing less than one full TLS record (RFC 8446 §5.1: 2^14 bytes of
/// plaintext) means the peer is no longer streaming.
const QUIET: usize = 16 * 1024;

pub struct ReadAhead<T> {
    inner: T,
    /// Bytes read ahead and not yet handed out. Allocated (uninitialised: entering bulk
    /// mode costs no memset a peer could make us repeat) only in bulk mode.
    buf: BytesMut,
    bulk: bool,
    /// Free `buf` once handed out (the last bulk read was short).
    release: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            bulk: false,
            release: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn hand_out(&mut self, dst: &mut ReadBuf<'_>) {
        let n = dst.remaining().min(self.buf.len());
        dst.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        if self.buf.is_empty() && self.release {
            self.buf = BytesMut::new();
            self.bulk = false;
            self.release = false;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            this.hand_out(dst);
            return Poll::Ready(Ok(()));
        }
        if !this.bulk {
            let wanted = dst.remaining();
            let before = dst.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, dst))?;
            if wanted > 0 && dst.filled().len() - before == wanted {
                this.bulk = true;
                this.buf = BytesMut::with_capacity(CAPACITY);
            }
            return Poll::Ready(Ok(()));
        }
        // Empty and in bulk mode: `clear` keeps the allocation (advance moved its start).
        this.buf.clear();
        this.buf.reserve(CAPACITY);
        let got = ready!(poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf))?;
        this.release = got < QUIET;
        this.hand_out(dst);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer writing `total` bytes in one go, read in rustls-sized pieces: every byte
    /// arrives in order, the buffer appears in bulk and is gone once the peer is quiet.
    #[tokio::test]
    async fn bulk_reads_ahead_and_quiet_frees_the_buffer() {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            peer.write_all(&sent).await.unwrap();
            peer
        });
        let mut ra = ReadAhead::new(ours);
        let mut got = Vec::new();
        let mut saw_bulk = false;
        let mut piece = [0u8; 4096];
        while got.len() < data.len() {
            let n = ra.read(&mut piece).await.unwrap();
            assert!(n > 0, "early EOF at {}", got.len());
            got.extend_from_slice(&piece[..n]);
            saw_bulk |= ra.buf.capacity() > 0;
        }
        assert_eq!(got, data);
        assert!(saw_bulk, "a 600 KB stream read 4 KiB at a time is bulk");
        // The peer is quiet now: a short read, then the buffer is released once drained.
        let mut peer = writer.await.unwrap();
        peer.write_all(b"tail").await.unwrap();
        let n = ra.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"tail");
        assert_eq!(
            ra.buf.capacity(),
            0,
            "read-ahead memory freed after a quiet read"
        );
        drop(peer);
        assert_eq!(ra.read(&mut piece).await.unwrap(), 0, "EOF passes through");
    }

    /// Small request/response traffic never allocates the read-ahead buffer.
    #[tokio::test]
    async fn small_reads_stay_direct() {
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut ra = ReadAhead::new(ours);
        let mut piece = [0u8; 4096];
        for i in 0..100u8 {
            peer.write_all(&[i; 300]).await.unwrap();
            let n = ra.read(&mut piece).await.unwrap();
            assert_eq!(&piece[..n], &[i; 300][..]);
            assert_eq!(ra.buf.capacity(), 0);
        }
    }
}
