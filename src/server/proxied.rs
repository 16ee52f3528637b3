//! PROXY protocol on a listener (`http.proxy_protocol`, `dicom.proxy_protocol`): from a
//! configured load balancer, read its header before TLS and take the client address from
//! it; from anyone else, refuse a connection that starts like a PROXY header.
//!
//! Abuse considered: a client that is not the LB sends a header naming an address that
//! `sources` or `check_modality_host` trusts -> refused here, before TLS. Whoever holds
//! the LB's address sends a malformed, endless or slow header -> closed at the first
//! wrong byte, at [`HEADER_TIMEOUT`], or at the size bounds of `proxy`; until then the
//! connection holds a permit but no per-address budget. A listed peer sends no header -> closed: a misconfigured LB would
//! otherwise make every client look like the LB.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client_key::unmap;
use super::proxy::{self, Header, HeaderError, Parsed};
use crate::metrics::METRICS;

/// How long the LB may take to send its whole header. HAProxy sends it with (or before)
/// the first client bytes, so this only has to cover one round trip on a slow path.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// How often refused headers are summarised at info (each one is logged at debug).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Who is on a connection: the client, and the load balancer it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client: the TCP peer, or the address the LB's header names.
    pub addr: SocketAddr,
    /// The LB's own address when the connection came through one.
    pub via: Option<SocketAddr>,
}

impl Peer {
    pub fn direct(addr: SocketAddr) -> Self {
        Self { addr, via: None }
    }
}

/// A listener's PROXY protocol setting: which peers are load balancers (empty: none) and
/// the TLS handshake timeout that bounds the wait for a direct client's first byte.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    pub trusted: Vec<IpNet>,
    pub first_byte_timeout: Duration,
}

/// Why a connection was closed before its protocol started (the metric's `result`).
#[derive(Debug, thiserror::Error)]
pub enum ProxyRefusal {
    #[error("load balancer sent no PROXY header")]
    Missing,
    #[error("{0}")]
    Malformed(HeaderError),
    #[error("PROXY header not complete within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("closed before the PROXY header was complete")]
    Closed,
    #[error("PROXY header from a peer not in proxy_protocol")]
    Untrusted,
}

impl ProxyRefusal {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Untrusted => "untrusted",
        }
    }
}

impl ProxyProtocol {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// From a load balancer: read exactly its header, then who the client is.
    pub async fn read_header(
        &self,
        listener: &'static str,
        stream: &mut TcpStream,
        lb: SocketAddr,
    ) -> Result<Peer, ProxyRefusal> {
        let read = tokio::time::timeout(HEADER_TIMEOUT, read_exact_header(stream)).await;
        let outcome = read.unwrap_or(Err(ProxyRefusal::Timeout));
        let result = match &outcome {
            Ok(Header::Proxied(_)) => "proxy",
            Ok(Header::Local) => "local",
            Err(e) => e.label(),
        };
        METRICS.proxy_protocol.inc((listener, result));
        match outcome {
            Ok(Header::Proxied(client)) => Ok(Peer {
                addr: client,
                via: Some(lb),
            }),
            Ok(Header::Local) => Ok(Peer {
                addr: lb,
                via: Some(lb),
            }),
            // A plain TCP health check (connect, close) ends this way: counted, debug only.
            Err(e @ ProxyRefusal::Closed) => {
                tracing::debug!(listener, via = %lb, reason = %e, "connection closed: PROXY protocol");
                Err(e)
            }
            Err(e) => {
                report(listener, lb, &e);
                Err(e)
            }
        }
    }

    /// From anyone else: look at the first byte without consuming it. `P` or CR start a
    /// PROXY header and can start neither a TLS record (RFC 8446 §5.1: content type 20-24)
    /// nor a DICOM PDU (PS3.8 §9.3: types 1-7), so the connection is over either way; up
    /// to 12 bytes are then read to tell a PROXY header (refused as `untrusted`) from
    /// other non-TLS bytes such as a plain-HTTP `POST` (counted as a failed handshake).
    /// `Err(None)`: closed without a PROXY header, or nothing sent in time (counted like
    /// a TLS handshake timeout, which it is).
    pub async fn check_direct(
        &self,
        listener: &'static str,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<(), Option<ProxyRefusal>> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.first_byte_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == b'P' || first[0] == b'\r' => {}
            Ok(Ok(1)) => return Ok(()),
            Ok(_) => return Err(None),
            Err(_) => {
                METRICS.tls_handshake(listener, Err("timeout"));
                tracing::debug!("TLS handshake timed out");
                return Err(None);
            }
        }
        let read = tokio::time::timeout(self.first_byte_timeout, signature(stream)).await;
        if read.unwrap_or(false) {
            METRICS.proxy_protocol.inc((listener, "untrusted"));
            report(listener, peer, &ProxyRefusal::Untrusted);
            return Err(Some(ProxyRefusal::Untrusted));
        }
        METRICS.tls_handshake(listener, Err("failed"));
        tracing::debug!("closed: neither TLS nor a PROXY header");
        Err(None)
    }
}

/// Whether the stream starts with a whole PROXY signature ("PROXY " or v2's 12 bytes);
/// reads until that is decided (at most 12 bytes).
async fn signature(stream: &mut TcpStream) -> bool {
    let mut head = [0u8; 12];
    let mut have = 0;
    loop {
        let seen = &head[..have];
        if seen.starts_with(proxy::V1_PREFIX) || seen == proxy::V2_SIGNATURE {
            return true;
        }
        let want = if proxy::V1_PREFIX.starts_with(seen) {
            proxy::V1_PREFIX.len()
        } else if proxy::V2_SIGNATURE.starts_with(seen) {
            proxy::V2_SIGNATURE.len()
        } else {
            return false;
        };
        match stream.read(&mut head[have..want]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => have += n,
        }
    }
}

/// Read the header a few bytes at a time, never more than `proxy::parse` says still
/// belongs to it (at most V1_MAX or 16 + V2_MAX_PAYLOAD bytes in all).
async fn read_exact_header(stream: &mut TcpStream) -> Result<Header, ProxyRefusal> {
    let mut buf = [0u8; 16 + proxy::V2_MAX_PAYLOAD];
    let mut have = 0;
    loop {
        let want = match proxy::parse(&buf[..have]) {
            Ok(Parsed::Done(header, _)) => return Ok(header),
            Ok(Parsed::Incomplete(n)) => n,
            Err(HeaderError::NotProxy) => return Err(ProxyRefusal::Missing),
            Err(e) => return Err(ProxyRefusal::Malformed(e)),
        };
        // `parse` never asks beyond the bounds above, so this slice is in range; the
        // `min` only keeps that true should it ever change.
        let end = (have + want).min(buf.len());
        if end == have {
            return Err(ProxyRefusal::Malformed(HeaderError::V2("too long")));
        }
        match stream.read(&mut buf[have..end]).await {
            Ok(0) | Err(_) => return Err(ProxyRefusal::Closed),
            Ok(n) => have += n,
        }
    }
}

/// Each refusal at debug; at most one info line per [`REPORT_EVERY`] across all tasks.
fn report(listener: &'static str, peer: SocketAddr, why: &ProxyRefusal) {
    static START: OnceLock<Instant> = OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    tracing::debug!(listener, %peer, reason = %why, "connection closed: PROXY protocol");
    let start = *START.get_or_init(Instant::now);
    // +1 so that the first report (at 0 ms) is never suppressed by the initial 0.
    let now = start.elapsed().as_millis() as u64 + 1;
    let last = LAST_MS.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= REPORT_EVERY.as_millis() as u64;
    if due
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::info!(listener, last.peer = %peer, last.reason = %why,
            "connections closed by the PROXY protocol check (more at debug; see the metric pacsgate_proxy_protocol_total)");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Header bytes written by a client, read by `read_exact_header`: the outcome and
    /// what is left unread on the socket afterwards.
    async fn exchange(bytes: &'static [u8]) -> (Result<Header, ProxyRefusal>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(bytes).await.unwrap();
            c.shutdown().await.unwrap();
            c
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let res = tokio::time::timeout(HEADER_TIMEOUT, read_exact_header(&mut server))
            .await
            .unwrap_or(Err(ProxyRefusal::Timeout));
        let mut rest = Vec::new();
        let _ = server.read_to_end(&mut rest).await;
        drop(client.await);
        (res, rest)
    }

    #[tokio::test]
    async fn exactly_the_header_is_read_and_bad_ones_are_refused_at_once() {
        let (res, rest) = exchange(b"PROXY TCP4 10.0.0.9 10.0.0.1 5 443\r\n\x16\x03\x01").await;
        assert_eq!(res.unwrap(), Header::Proxied("10.0.0.9:5".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        let started = Instant::now();
        let (res, _) = exchange(b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\x0c").await;
        assert!(matches!(res, Err(ProxyRefusal::Malformed(_))), "{res:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let (res, _) = exchange(b"\x16\x03\x01\x00\x10").await;
        assert!(matches!(res, Err(ProxyRefusal::Missing)), "{res:?}");
        let (res, _) = exchange(b"\r\n\r\n\0\r\nQU").await;
        assert!(matches!(res, Err(ProxyRefusal::Closed)), "{res:?}");
    }
}
