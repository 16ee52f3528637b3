//! Resumed sessions skip certificate verification: the client proves only that it holds
//! the session's secret (RFC 8446 §2.2, RFC 5246 §7.3), and rustls hands back the chain
//! stored with the session. [`recheck`] verifies that chain again as a full handshake
//! would now, so a CRL or CA change since the session began applies, as does expiry.
//!
//! A re-check costs two signature verifications (the leaf and the CRL; measured ~60 us
//! with RSA-2048 and ~150 us with P-256 on one core), as much as the resumed handshake
//! itself, so a passed check is remembered per chain for [`TTL`]. The cache belongs to
//! one client-trust configuration: a reload with other CAs or CRLs starts an empty one,
//! so a revocation is never served from it; only an expiry can be noticed up to [`TTL`]
//! late.
//!
//! Established connections are not re-handshaken: [`Revocation`] verifies their chain
//! again whenever client trust changes, and ends them if it fails ([`Revocable`] for
//! streams owned elsewhere, e.g. by the DICOM relay).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// How long a passed re-check is trusted for the same chain.
pub const TTL: Duration = Duration::from_secs(60);
/// Chains remembered at most; when full the cache starts over (memory stays bounded).
const CAPACITY: usize = 4096;

/// Verify a resumed session's client certificate chain with `verifier`, uncached.
pub fn recheck(
    conn: &rustls::CommonState,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    verify_chain(conn.peer_certificates(), verifier)
}

/// Verify a client certificate chain (leaf first) as a full handshake would now.
pub fn verify_chain(
    chain: Option<&[CertificateDer<'_>]>,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    // `NoClientAuth` panics if asked to verify; a listener that asks for no certificate
    // never stores one in a session.
    if !verifier.offer_client_auth() {
        return match chain {
            None | Some([]) => Ok(()),
            Some(_) => Err(rustls::Error::General(
                "client certificates are no longer accepted".into(),
            )),
        };
    }
    match chain {
        Some([leaf, intermediates @ ..]) => verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ()),
        _ if verifier.client_auth_mandatory() => Err(rustls::Error::NoCertificatesPresented),
        _ => Ok(()),
    }
}

/// Chains that passed [`recheck`] recently, for one verifier.
#[derive(Default)]
pub struct Rechecked {
    passed: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Rechecked {
    /// [`recheck`], skipped for a chain that passed it less than [`TTL`] ago.
    pub fn check(
        &self,
        conn: &rustls::CommonState,
        verifier: &dyn ClientCertVerifier,
        now: Instant,
    ) -> Result<(), rustls::Error> {
        let Some(chain) = conn.peer_certificates().filter(|c| !c.is_empty()) else {
            return recheck(conn, verifier);
        };
        let mut h = Sha256::new();
        for cert in chain {
            h.update((cert.len() as u64).to_be_bytes());
            h.update(cert.as_ref());
        }
        let key: [u8; 32] = h.finalize().into();
        if self.lock().get(&key).is_some_and(|until| now < *until) {
            return Ok(());
        }
        recheck(conn, verifier)?;
        let mut passed = self.lock();
        if passed.len() >= CAPACITY {
            passed.clear();
        }
        passed.insert(key, now + TTL);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        crate::sync::lock(&self.passed)
    }
}

// === established connections ===

/// Watches, for one established connection, whether its client certificate still
/// verifies after each change of client trust (a reloaded CRL or CA bundle): a
/// connection is not re-handshaken, so without this a revoked client would keep a
/// keep-alive, HTTP/2 or DICOM connection for as long as it keeps it busy.
pub struct Revocation {
    chain: Option<Vec<CertificateDer<'static>>>,
    changes: watch::Receiver<u64>,
    verifier: Arc<dyn Fn() -> Arc<dyn ClientCertVerifier> + Send + Sync>,
}

impl Revocation {
    /// `changes` must have been subscribed before the handshake, so that a change during
    /// it is seen; `verifier` yields the verifier current at each call.
    pub fn new(
        chain: Option<&[CertificateDer<'_>]>,
        changes: watch::Receiver<u64>,
        verifier: Arc<dyn Fn() -> Arc<dyn ClientCertVerifier> + Send + Sync>,
    ) -> Self {
        Self {
            chain: chain
                .filter(|c| !c.is_empty())
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect()),
            changes,
            verifier,
        }
    }

    /// Resolves once the connection's client certificate no longer verifies after a
    /// trust change; never for a connection without one.
    pub async fn revoked(mut self) {
        if let Some(chain) = self.chain.take() {
            while self.changes.changed().await.is_ok() {
                if let Err(e) = verify_chain(Some(&chain), &*(self.verifier)()) {
                    tracing::info!(error = %e, "client certificate no longer trusted after a reload: connection closed");
                    return;
                }
            }
        }
        std::future::pending().await
    }
}

pin_project! {
    /// An IO stream that fails every read and write (ConnectionAborted) once `revoked`
    /// resolves: ends a relay that owns the stream, through its normal error path.
    pub struct Revocable<S> {
        #[pin]
        inner: S,
        revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
        fired: bool,
    }
}

impl<S> Revocable<S> {
    pub fn new(inner: S, revocation: Revocation) -> Self {
        Self {
            inner,
            revoked: Box::pin(revocation.revoked()),
            fired: false,
        }
    }
}

fn check_revoked(
    revoked: &mut Pin<Box<dyn Future<Output = ()> + Send>>,
    fired: &mut bool,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if !*fired && revoked.as_mut().poll(cx).is_ready() {
        *fired = true;
    }
    if *fired {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "client certificate no longer trusted",
        ));
    }
    Ok(())
}

impl<S: AsyncRead> AsyncRead for Revocable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        check_revoked(this.revoked, this.fired, cx)?;
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Revocable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        check_revoked(this.revoked, this.fired, cx)?;
        this.inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
