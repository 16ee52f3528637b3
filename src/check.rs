//! `pacsgate check`: validate everything that can be validated without binding a port or
//! writing a file, and describe the effective configuration.

use std::fmt::Write;

use crate::config::{ClientAuth, Config, ConfigError, KeyPairPaths};
use crate::tls::{self, material};

/// The effective configuration as text; an error if any existing file is unusable.
pub fn describe(config: &Config) -> Result<String, ConfigError> {
    let provider = tls::server::provider();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "configuration {} is valid", config.source.display());
    let pairs = std::iter::once(&config.tls.primary).chain(config.tls.rsa.iter());
    for pair in pairs {
        let _ = writeln!(
            out,
            "{}",
            describe_pair(pair, &provider, config.tls.expiry_warning)?
        );
    }
    match &config.cluster {
        Some(c) => {
            // Reads the password file: its mode is checked here as at start.
            crate::limit::cluster::Cluster::new(c)?;
            let _ = writeln!(out, "{}", crate::limit::cluster::Cluster::describe(c));
        }
        None => {
            let _ = writeln!(out, "cluster: none (rates and lockouts are per process)");
        }
    }
    if let Some(a) = &config.admin {
        let _ = writeln!(out, "admin: {} (/metrics, /healthz, /readyz)", a.listen);
    }
    if let Some(ca) = &config.tls.client_ca {
        material::load_roots("tls.client_ca", ca)?;
        let _ = writeln!(out, "client CAs: {}", ca.display());
    }
    if let Some(h) = &config.http {
        let _ = writeln!(
            out,
            "https: {} -> http://{} (client certificates: {})",
            h.listen,
            h.upstream.authority,
            auth(h.client_auth)
        );
        proxy_protocol(&mut out, "https", &h.proxy_protocol);
        let _ = write!(out, "{}", crate::http::policy::describe(&h.policy));
        if let Some(path) = &h.policy.generated_admin {
            let _ = writeln!(out, "{}", crate::http::policy::admin::inspect(path)?);
        }
    }
    if let Some(d) = &config.dicom {
        let _ = writeln!(
            out,
            "dicom: {} -> {} (client certificates: {})",
            d.listen,
            d.upstream,
            auth(d.client_auth)
        );
        proxy_protocol(&mut out, "dicom", &d.proxy_protocol);
        for m in &d.policy.modalities {
            let allow: Vec<&str> = crate::config::Services::NAMES
                .iter()
                .filter(|(_, s)| m.allow.contains(*s))
                .map(|(n, _)| *n)
                .collect();
            let _ = writeln!(
                out,
                "dicom modality {}: AE {} allow [{}]{}",
                m.name,
                m.aet,
                allow.join(", "),
                if m.certificate.is_some() {
                    ", bound to a certificate"
                } else {
                    ""
                }
            );
        }
    }
    for o in &config.outbound {
        tls::client::build(o, &provider)?;
        let _ = writeln!(
            out,
            "{}: {} -> {} (TLS, server name {}, client certificate: {})",
            o.name,
            o.listen,
            o.remote,
            o.server_name,
            if o.client_identity.is_some() {
                "yes"
            } else {
                "no"
            }
        );
    }
    Ok(out)
}

fn describe_pair(
    pair: &KeyPairPaths,
    provider: &std::sync::Arc<rustls::crypto::CryptoProvider>,
    expiry_warning: std::time::Duration,
) -> Result<String, ConfigError> {
    if !pair.cert.exists() && !pair.key.exists() {
        return Ok(format!(
            "{}: {} does not exist yet; a self-signed certificate will be generated on first start",
            pair.cert_key,
            pair.cert.display()
        ));
    }
    let served = material::load_pair(pair, provider)?;
    let mut line = format!(
        "{}: {} ({:?}, {})",
        pair.cert_key,
        pair.cert.display(),
        served.algorithm,
        served.fingerprint
    );
    if let Some(w) = tls::expiry::warning(&served, expiry_warning) {
        line.push('\n');
        line.push_str(&w);
    }
    Ok(line)
}

fn auth(a: ClientAuth) -> &'static str {
    match a {
        ClientAuth::None => "none",
        ClientAuth::Optional => "optional",
        ClientAuth::Required => "required",
    }
}

/// The load balancers a listener believes PROXY headers from.
fn proxy_protocol(out: &mut String, listener: &str, trusted: &[ipnet::IpNet]) {
    if !trusted.is_empty() {
        let list: Vec<String> = trusted.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "{listener}: client addresses from PROXY v1/v2 headers of [{}] only",
            list.join(", ")
        );
    }
}
