//! Server-side rustls configuration: TLS 1.2 and 1.3 only with the BCP 195 (RFC 9325)
//! suites of the aws-lc-rs provider (AES-GCM and ChaCha20-Poly1305, ECDHE only), client
//! certificates per listener, and a certificate chosen per ClientHello.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio_rustls::TlsAcceptor;

use super::material::{Material, ServedKey};
use crate::config::{ClientAuth, ConfigError, TlsVersion};

/// What differs between listeners sharing the same certificates.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub alpn: Vec<Vec<u8>>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
}

/// A listener's TLS configuration, swapped atomically on reload. Sessions and tickets
/// outlive reloads so clients keep resuming.
pub struct ReloadableServer {
    profile: Profile,
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
    current: ArcSwap<ServerConfig>,
}

impl ReloadableServer {
    pub fn new(
        profile: Profile,
        provider: Arc<CryptoProvider>,
        material: &Material,
    ) -> Result<Arc<Self>, ConfigError> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| ConfigError::new("tls", format!("cannot create a ticket key: {e}"), ""))?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(4096);
        let config = build(&profile, &provider, material, &sessions, &ticketer)?;
        Ok(Arc::new(Self {
            profile,
            provider,
            sessions,
            ticketer,
            current: ArcSwap::from_pointee(config),
        }))
    }

    /// Build a configuration from new material and swap it in; the old one keeps serving
    /// if this fails.
    pub fn reload(&self, material: &Material) -> Result<(), ConfigError> {
        let config = build(
            &self.profile,
            &self.provider,
            material,
            &self.sessions,
            &self.ticketer,
        )?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// An acceptor for one new connection, with the configuration current at this moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    pub fn name(&self) -> &'static str {
        self.profile.name
    }
}

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
    sessions: &Arc<dyn StoresServerSessions>,
    ticketer: &Arc<dyn ProducesTickets>,
) -> Result<ServerConfig, ConfigError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(profile.min_version))
        .map_err(|e| ConfigError::new("tls.min_version", e.to_string(), ""))?;
    let verifier = match (profile.client_auth, &material.client_roots) {
        (ClientAuth::None, _) | (_, None) => WebPkiClientVerifier::no_client_auth(),
        (auth, Some(roots)) => {
            let mut b =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .with_crls(material.crls.iter().cloned());
            if auth == ClientAuth::Optional {
                b = b.allow_unauthenticated();
            }
            b.build().map_err(|e| {
                ConfigError::new(
                    "tls.client_ca",
                    format!("cannot build the client certificate verifier: {e}"),
                    "check the CA bundle and CRLs",
                )
            })?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(KeyChooser {
            keys: material.keys.clone(),
            provider: provider.clone(),
        }));
    config.alpn_protocols = profile.alpn.clone();
    config.session_storage = sessions.clone();
    config.ticketer = ticketer.clone();
    Ok(config)
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
