//! Server-side rustls configuration: TLS 1.2 and 1.3 only with the BCP 195 (RFC 9325)
//! suites of the aws-lc-rs provider (AES-GCM and ChaCha20-Poly1305, ECDHE only), client
//! certificates per listener, and a certificate chosen per ClientHello.

use std::io;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{HandshakeKind, ServerConfig, SupportedProtocolVersion};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::error::{TlsError, TlsErrorKind as K};
use super::identity::PeerIdentity;
use super::material::{Material, ServedKey};
use super::recheck::{Rechecked, Revocation};
use crate::config::{ClientAuth, TlsVersion};

/// What differs between listeners sharing the same certificates.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub alpn: Vec<Vec<u8>>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
}

/// A listener's TLS configuration, swapped atomically on reload. Sessions and tickets
/// outlive reloads of the server's own certificates so clients keep resuming; a change of
/// what client certificates are trusted (CA bundle, CRLs) starts new ones, and every
/// resumed session's client certificate is verified again against the current trust
/// (see [`ReloadableServer::accept`]).
pub struct ReloadableServer {
    profile: Profile,
    provider: Arc<CryptoProvider>,
    current: Arc<ArcSwap<Current>>,
    /// Serialises reloads (the session store is read, then replaced).
    reloading: Mutex<()>,
    /// Counts changes of client trust; established connections watch it.
    trust_changes: watch::Sender<u64>,
}

/// An accepted TLS connection: the stream, the client's verified identity, and what
/// tells when that identity stops verifying.
pub struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    pub identity: Option<Arc<PeerIdentity>>,
    pub revocation: Revocation,
}

/// One configuration and what it was built with.
struct Current {
    config: Arc<ServerConfig>,
    /// The configuration's client-certificate verifier (rustls keeps its own copy private).
    verifier: Arc<dyn ClientCertVerifier>,
    sessions: Sessions,
    /// Digest of the client trust anchors and CRLs the verifier was built from.
    trust: [u8; 32],
    /// Resumed chains that passed a re-check with this verifier.
    rechecked: Rechecked,
}

/// TLS 1.2 session ids and TLS 1.3 tickets: what lets a client resume without presenting
/// its certificate again.
#[derive(Clone)]
struct Sessions {
    cache: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl Sessions {
    fn new() -> Result<Self, TlsError> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|source| TlsError::new("tls", K::Tickets { source }))?;
        Ok(Self {
            cache: ServerSessionMemoryCache::new(4096),
            ticketer,
        })
    }
}

impl ReloadableServer {
    pub fn new(
        profile: Profile,
        provider: Arc<CryptoProvider>,
        material: &Material,
    ) -> Result<Arc<Self>, TlsError> {
        let current = build(&profile, &provider, material, Sessions::new()?)?;
        Ok(Arc::new(Self {
            profile,
            provider,
            current: Arc::new(ArcSwap::from_pointee(current)),
            reloading: Mutex::new(()),
            trust_changes: watch::Sender::new(0),
        }))
    }

    /// Build a configuration from new material and swap it in; the old one keeps serving
    /// if this fails. New client trust (a reloaded CRL, another CA bundle) also means new
    /// session stores: sessions resumed from before would skip the new checks otherwise.
    pub fn reload(&self, material: &Material) -> Result<(), TlsError> {
        let _serial = crate::sync::lock(&self.reloading);
        let old = self.current.load_full();
        let trust_changed = trust_digest(material) != old.trust;
        let sessions = if trust_changed {
            Sessions::new()?
        } else {
            old.sessions.clone()
        };
        let current = build(&self.profile, &self.provider, material, sessions)?;
        self.current.store(Arc::new(current));
        if trust_changed {
            self.trust_changes.send_modify(|n| *n += 1);
            tracing::info!(
                listener = self.profile.name,
                "client trust changed: TLS sessions and tickets from before are not resumed"
            );
        }
        Ok(())
    }

    /// Accept one TLS connection with the configuration current at this moment, and
    /// return it with the client's verified identity. A resumed session's stored
    /// certificate chain is verified again with the verifier current now (see
    /// [`super::recheck`]); refused: `PermissionDenied`.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<Accepted<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        // Subscribed before the configuration is loaded: a trust change from here on is
        // seen by the revocation watch.
        let changes = self.trust_changes.subscribe();
        let acceptor = TlsAcceptor::from(self.current.load().config.clone());
        let mut stream = acceptor.accept(io).await?;
        stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
        let conn = stream.get_ref().1;
        if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            let current = self.current.load();
            current
                .rechecked
                .check(conn, &*current.verifier, std::time::Instant::now())
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        }
        let current = self.current.clone();
        let revocation = Revocation::new(
            conn.peer_certificates(),
            changes,
            Arc::new(move || current.load().verifier.clone()),
        );
        let identity = super::identity::peer_identity(conn);
        Ok(Accepted {
            stream,
            identity,
            revocation,
        })
    }

    pub fn name(&self) -> &'static str {
        self.profile.name
    }
}

/// Encrypted records rustls may hold before they are written (its default is 64 KiB):
/// a download or a C-GET then goes out in 128 KiB writev(2)s instead of 64 KiB ones. The
/// PACS's unsent response chunks (hyper holds them either way) dominate what a slow
/// reader costs; this adds at most 64 KiB per connection while its peer is not reading.
pub const SEND_BUFFER: usize = 128 * 1024;

/// The aws-lc-rs provider restricted to BCP 195: its TLS 1.2 suites are already ECDHE with
/// AEADs only, so nothing needs removing; kept as one function so the policy has one home.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static BOTH: [&SupportedProtocolVersion; 2] = [&TLS13, &TLS12];
    static ONLY_13: [&SupportedProtocolVersion; 1] = [&TLS13];
    match min {
        TlsVersion::V1_2 => &BOTH,
        TlsVersion::V1_3 => &ONLY_13,
    }
}

fn build(
    profile: &Profile,
    provider: &Arc<CryptoProvider>,
    material: &Material,
    sessions: Sessions,
) -> Result<Current, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(profile.min_version))
        .map_err(|source| TlsError::new("tls.min_version", K::Versions { source }))?;
    let verifier = match (profile.client_auth, &material.client_roots) {
        (ClientAuth::None, _) | (_, None) => WebPkiClientVerifier::no_client_auth(),
        (auth, Some(roots)) => {
            let mut b =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .with_crls(material.crls.iter().cloned());
            if auth == ClientAuth::Optional {
                b = b.allow_unauthenticated();
            }
            b.build()
                .map_err(|source| TlsError::new("tls.client_ca", K::Verifier { source }))?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(Arc::new(KeyChooser {
            keys: material.keys.clone(),
            provider: provider.clone(),
        }));
    config.alpn_protocols = profile.alpn.clone();
    config.session_storage = sessions.cache.clone();
    config.ticketer = sessions.ticketer.clone();
    Ok(Current {
        config: Arc::new(config),
        verifier,
        sessions,
        trust: trust_digest(material),
        rechecked: Rechecked::default(),
    })
}

/// SHA-256 over the client trust anchors and CRLs, in order.
fn trust_digest(material: &Material) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    for anchor in material.client_roots.iter().flat_map(|r| r.roots.iter()) {
        part(anchor.subject.as_ref());
        part(anchor.subject_public_key_info.as_ref());
        part(anchor.name_constraints.as_deref().unwrap_or_default());
    }
    for crl in &material.crls {
        part(crl.as_ref());
    }
    h.finalize().into()
}

/// Picks the first configured key the client can use: with TLS 1.3 any key whose signature
/// scheme it offers; with TLS 1.2 only keys matching one of its ECDHE suites. This is what
/// serves RSA to dcmtk 3.6.7 under `+pz` while others get the faster ECDSA key.
#[derive(Debug)]
struct KeyChooser {
    keys: Vec<ServedKey>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for KeyChooser {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.cipher_suites();
        let ours = || {
            self.provider
                .cipher_suites
                .iter()
                .filter(|s| offered.contains(&s.suite()))
        };
        let tls13 = ours().any(|s| s.version() == &TLS13);
        let usable = |k: &&ServedKey| {
            k.certified
                .key
                .choose_scheme(hello.signature_schemes())
                .is_some()
                && (tls13
                    || ours().any(|s| {
                        s.version() == &TLS12 && s.usable_for_signature_algorithm(k.algorithm)
                    }))
        };
        self.keys
            .iter()
            .find(usable)
            .or(self.keys.first())
            .map(|k| k.certified.clone())
    }
}

#[cfg(test)]
mod tests;
