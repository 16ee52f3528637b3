//! Certificates and TLS: load or generate the server's certificates (`material`,
//! `self_signed`), build rustls configurations per listener (`server`) and for outbound
//! tunnels (`client`), reload them without dropping connections (`reload`), verify resumed
//! sessions' client certificates again (`recheck`), and extract the peer's identity
//! (`identity`). `inspect` backs `pacsgate cert inspect`.

pub mod client;
pub mod identity;
pub mod inspect;
pub mod material;
pub mod recheck;
pub mod reload;
pub mod self_signed;
pub mod server;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

pub use identity::{CertificateMatch, Fingerprint, PeerIdentity};
pub use server::{Profile, ReloadableServer};

/// The identity of the verified client certificate, if the client presented one.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Arc<PeerIdentity>> {
    let leaf: &CertificateDer<'_> = conn.peer_certificates()?.first()?;
    PeerIdentity::from_leaf(leaf).map(Arc::new)
}

/// Put the identity on the connection's span, so every later log line carries it.
pub fn record_identity(span: &tracing::Span, identity: Option<&PeerIdentity>) {
    if let Some(id) = identity {
        span.record("tls.cn", id.common_name.as_deref().unwrap_or(""));
        span.record("tls.fp", tracing::field::display(&id.fingerprint));
        tracing::info!(subject = %id.subject, sans = ?id.sans, "client certificate verified");
    }
}

/// A refused client certificate is a refusal (info); anything else failing in the
/// handshake is the client's problem (debug): plain text on the TLS port, a scanner, a
/// hang-up.
pub fn log_handshake_failure(e: &std::io::Error) {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        // Set only by `ReloadableServer::accept` for a resumed session that fails today.
        return tracing::info!(error = %e, "client certificate of a resumed session refused");
    }
    match tls_error {
        Some(
            err @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) => tracing::info!(error = %err, "client certificate refused"),
        Some(err) => tracing::debug!(error = %err, "TLS handshake failed"),
        None => tracing::debug!(error = %e, "TLS handshake failed"),
    }
}
