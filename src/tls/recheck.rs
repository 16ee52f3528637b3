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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};

/// How long a passed re-check is trusted for the same chain.
pub const TTL: Duration = Duration::from_secs(60);
/// Chains remembered at most; when full the cache starts over (memory stays bounded).
const CAPACITY: usize = 4096;

/// Verify a resumed session's client certificate chain with `verifier`, uncached.
pub fn recheck(
    conn: &rustls::CommonState,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    // `NoClientAuth` panics if asked to verify; a listener that asks for no certificate
    // never stores one in a session.
    if !verifier.offer_client_auth() {
        return match conn.peer_certificates() {
            None | Some([]) => Ok(()),
            Some(_) => Err(rustls::Error::General(
                "client certificates are no longer accepted".into(),
            )),
        };
    }
    match conn.peer_certificates() {
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
        self.passed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
