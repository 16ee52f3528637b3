//! Checks of pacsgate's own side: open mode on a public listener, serving certificates'
//! validity, and the modes and owners of the files holding secrets.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::finding::Finding;
use crate::config::{Config, KeyPairPaths};
use crate::http::policy::Authentication;
use crate::tls::expiry::{self, Validity};

pub fn checks(config: &Config) -> Vec<Finding> {
    let mut out = vec![open_mode(config)];
    let pairs: Vec<&KeyPairPaths> = std::iter::once(&config.tls.primary)
        .chain(config.tls.rsa.iter())
        .collect();
    for pair in &pairs {
        out.push(certificate(pair, config.tls.expiry_warning));
    }
    let mut secrets: Vec<(&str, &Path)> = pairs
        .iter()
        .filter(|p| p.key.exists())
        .map(|p| (p.key_key, p.key.as_path()))
        .collect();
    if let Some(h) = &config.http {
        if let Some(p) = h.policy.generated_admin.as_deref().filter(|p| p.exists()) {
            secrets.push(("http.admin_password_file", p));
        }
        if let Some(p) = &h.policy.upstream_credentials_file {
            secrets.push(("http.upstream_credentials_file", p));
        }
    }
    let owner = config.run_as.as_ref().map(|r| r.uid);
    out.extend(secrets.into_iter().map(|(k, p)| secret_file(k, p, owner)));
    out
}

fn open_mode(config: &Config) -> Finding {
    let check = "pacsgate open mode";
    let Some(h) = &config.http else {
        return Finding::pass(check, "no HTTPS listener");
    };
    match h.policy.authentication {
        Authentication::None if !h.listen.ip().is_loopback() => Finding::fail(
            check,
            format!(
                "http.authentication = \"none\" on {}: anyone who reaches it uses the PACS API",
                h.listen
            ),
            "remove http.authentication (\"required\" is the default) and add [users], or listen on 127.0.0.1",
        ),
        Authentication::None => Finding::warn(
            check,
            format!("http.authentication = \"none\", on loopback ({})", h.listen),
            "every local process and user can use the PACS API; prefer \"required\"",
        ),
        _ => Finding::pass(check, "http.authentication = \"required\""),
    }
}

fn certificate(pair: &KeyPairPaths, warn: std::time::Duration) -> Finding {
    let check = format!("certificate {}", pair.cert.display());
    let der = match crate::tls::material::load_chain(pair.cert_key, &pair.cert) {
        Ok(chain) => chain,
        Err(_) if !pair.cert.exists() => {
            return Finding::warn(
                check,
                "does not exist yet (a self-signed one is generated on first start)",
                "bring a certificate from your CA for production, or configure [tls.acme]",
            )
        }
        Err(e) => return Finding::fail(check, e.to_string(), "point it at a readable PEM chain"),
    };
    let Some(window) = der.first().and_then(|c| expiry::window(c.as_ref())) else {
        return Finding::fail(check, "the leaf certificate cannot be parsed", "replace it");
    };
    match expiry::classify(window, expiry::now_unix(), warn) {
        Validity::Fine { days_left } => {
            Finding::pass(check, format!("valid for {days_left} more days"))
        }
        Validity::ExpiresSoon { days_left } => Finding::warn(
            check,
            format!("expires in {days_left} day(s)"),
            "renew it; pacsgate picks up the new file without a restart",
        ),
        Validity::Expired => Finding::fail(check, "has expired", "renew it now; clients refuse it"),
        Validity::NotYetValid => Finding::fail(check, "is not valid yet", "check the system clock"),
    }
}

/// A secret must not be readable by others (FAIL) or the group (WARN), and should belong
/// to root, to `server.user`, or to whoever runs doctor (the service account).
pub fn secret_file(key: &str, path: &Path, owner: Option<u32>) -> Finding {
    let check = format!("key file {}", path.display());
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Finding::fail(
                check,
                format!("{key}: cannot read it: {e}"),
                "create it or fix the path",
            )
        }
    };
    let mode = meta.mode() & 0o777;
    let fix = format!("chmod 600 {}", path.display());
    if mode & 0o007 != 0 {
        return Finding::fail(
            check,
            format!("{key}: mode {mode:o}, others can read it"),
            &fix,
        );
    }
    if mode & 0o070 != 0 {
        return Finding::warn(
            check,
            format!("{key}: mode {mode:o}, the group can read it"),
            &fix,
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    let owners = [Some(0), owner, Some(me)];
    if !owners.contains(&Some(meta.uid())) {
        return Finding::warn(
            check,
            format!(
                "{key}: owned by uid {}, not root or the service user",
                meta.uid()
            ),
            "chown it to root or to the account the service runs as",
        );
    }
    Finding::pass(check, format!("{key}: mode {mode:o}, uid {}", meta.uid()))
}
