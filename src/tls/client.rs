//! Client-side TLS for outbound tunnels: verify the remote DICOM peer against the configured
//! CA and its name, and present our client certificate (stunnel's client mode, with the
//! verification stunnel makes easy to get wrong done unconditionally).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::ClientConfig;

use super::error::{TlsError, TlsErrorKind as K};
use super::material::{load_chain, load_key, load_roots};
use super::server::versions;
use crate::config::OutboundConfig;

pub fn build(
    config: &OutboundConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let key = |k: &str| format!("{}.{k}", config.name);
    let roots = load_roots(&key("ca"), &config.ca)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(config.min_version))
        .map_err(|source| TlsError::new(key("min_version"), K::Versions { source }))?
        .with_root_certificates(roots);
    let client = match &config.client_identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = load_chain(&key("client_cert"), &pair.cert)?;
            let private = load_key(&key("client_key"), &pair.key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|source| TlsError::new(key("client_key"), K::ClientKey { source }))?
        }
    };
    Ok(Arc::new(client))
}
