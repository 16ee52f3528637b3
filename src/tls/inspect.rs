//! `pacsgate cert inspect FILE`: what an operator needs to pin or debug a certificate.

use std::fmt::Write;
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::{TlsError, TlsErrorKind as K};
use super::identity::{common_name, subject_alt_names, Fingerprint};
use super::material::load_chain;

/// A human-readable description of every certificate in a PEM file.
pub fn describe(path: &Path) -> Result<String, TlsError> {
    let chain = load_chain("FILE", path)?;
    let mut out = String::new();
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
            let kind = K::Unparsable {
                path: path.to_path_buf(),
                index: i + 1,
                detail: e.to_string(),
            };
            TlsError::new("FILE", kind)
        })?;
        describe_one(&mut out, i, &cert, Fingerprint::of(der.as_ref()));
    }
    Ok(out)
}

fn describe_one(out: &mut String, index: usize, cert: &X509Certificate<'_>, fp: Fingerprint) {
    let validity = cert.validity();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "certificate {}:", index + 1);
    let _ = writeln!(out, "  subject:     {}", cert.subject());
    if let Some(cn) = common_name(cert) {
        let _ = writeln!(out, "  common name: {cn}");
    }
    let _ = writeln!(out, "  SANs:        {}", subject_alt_names(cert).join(", "));
    let _ = writeln!(out, "  issuer:      {}", cert.issuer());
    let _ = writeln!(out, "  not before:  {}", validity.not_before);
    let _ = writeln!(out, "  not after:   {}", validity.not_after);
    let _ = writeln!(
        out,
        "  key:         {}",
        key_algorithm(
            cert.public_key()
                .algorithm
                .algorithm
                .to_id_string()
                .as_str()
        )
    );
    let _ = writeln!(out, "  fingerprint: {fp}");
    let _ = writeln!(out, "               ({})", fp.colon_hex());
}

fn key_algorithm(oid: &str) -> &str {
    match oid {
        "1.2.840.10045.2.1" => "ECDSA",
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.112" => "Ed25519",
        other => other,
    }
}
