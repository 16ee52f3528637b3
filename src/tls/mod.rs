//! Certificates and TLS: load or generate the server's certificates (`material`,
//! `self_signed`), build rustls configurations per listener (`server`) and for outbound
//! tunnels (`client`), reload them without dropping connections (`reload`), verify resumed
//! sessions' client certificates again (`recheck`), and extract the peer's identity
//! (`identity`). `inspect` backs `pacsgate cert inspect`.

pub mod acme;
pub mod client;
pub mod error;
pub mod expiry;
pub mod identity;
pub mod inspect;
pub mod material;
pub mod recheck;
pub mod reload;
pub mod self_signed;
pub mod server;

pub use error::{TlsError, TlsErrorKind};
pub use identity::{peer_identity, CertificateMatch, Fingerprint, PeerIdentity};
pub use server::{Profile, ReloadableServer};

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

/// Count a finished (or timed-out) handshake in `pacsgate_tls_handshakes_total` by
/// result, negotiated version and ALPN protocol; returns its argument.
pub fn observe_handshake<IO, T>(
    listener: &'static str,
    outcome: Result<std::io::Result<server::Accepted<IO>>, T>,
) -> Result<std::io::Result<server::Accepted<IO>>, T> {
    let counted = match &outcome {
        Ok(Ok(a)) => {
            let conn = a.stream.get_ref().1;
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
                _ => "other",
            };
            let alpn = match conn.alpn_protocol() {
                Some(b"h2") => "h2",
                Some(b"http/1.1") => "http/1.1",
                Some(_) => "other",
                None => "none",
            };
            Ok((version, alpn))
        }
        Ok(Err(_)) => Err("failed"),
        Err(_) => Err("timeout"),
    };
    crate::metrics::METRICS.tls_handshake(listener, counted);
    outcome
}
