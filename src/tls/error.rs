//! What can go wrong loading, checking or generating TLS material, with the underlying
//! error kept as the source. Each error names the configuration key it is about and knows
//! the operator's fix; `config::ConfigError` takes it through `config::Misconfiguration`
//! (the one conversion, at start-up: exit 64), and the reload path logs it while the old
//! material keeps serving.

use std::io;
use std::path::PathBuf;

use crate::config::Misconfiguration;

/// A TLS file or setting that cannot be used, and the key that configures it.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct TlsError {
    /// The configuration key (`tls.cert`, `NAME.client_key`, `FILE` for the CLI).
    pub key: String,
    /// Boxed: start-up errors are rare, and `Result`s of this type stay small.
    #[source]
    pub kind: Box<TlsErrorKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsErrorKind {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("{} contains no PEM {what}", path.display())]
    NoPem { path: PathBuf, what: &'static str },
    /// Parsed, but without a single block of the kind needed.
    #[error("{} contains no PEM {block}", path.display())]
    Empty {
        path: PathBuf,
        block: &'static str,
        fix: &'static str,
    },
    #[error("{} is not valid PEM: {source:?}", path.display())]
    BadPem {
        path: PathBuf,
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} is an encrypted private key (passphrase-protected)", path.display())]
    Encrypted { path: PathBuf },
    #[error("{} does not match the certificate in {} ({source})", key.display(), cert.display())]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        source: rustls::Error,
    },
    #[error("does not match client_cert or is unusable: {source}")]
    ClientKey { source: rustls::Error },
    #[error("{}: a certificate is not a usable CA: {source}", path.display())]
    NotCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("certificate {index} in {} cannot be parsed: {detail}", path.display())]
    Unparsable {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error("cannot build the client certificate verifier: {source}")]
    Verifier {
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{source}")]
    Versions { source: rustls::Error },
    #[error("cannot create a ticket key: {source}")]
    Tickets { source: rustls::Error },
    #[error("{} does not exist but {present} does", path.display())]
    HalfPair { path: PathBuf, present: String },
    #[error("cannot generate a self-signed certificate ({what}: {source})")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} exists", path.display())]
    Exists { path: PathBuf },
    #[error("directory {} does not exist", dir.display())]
    NoDirectory { dir: PathBuf },
}

impl TlsError {
    pub fn new(key: impl Into<String>, kind: TlsErrorKind) -> Self {
        Self {
            key: key.into(),
            kind: Box::new(kind),
        }
    }
}

impl Misconfiguration for TlsError {
    fn key(&self) -> String {
        self.key.clone()
    }

    fn fix(&self) -> String {
        use TlsErrorKind as K;
        let key = &self.key;
        match self.kind.as_ref() {
            K::Read { what, .. } | K::NoPem { what, .. } | K::BadPem { what, .. } => {
                format!("point it at a readable PEM {what}")
            }
            K::Empty { fix, .. } => (*fix).into(),
            K::Encrypted { path } => {
                let p = path.display();
                format!(
                    "decrypt it once: openssl pkey -in {p} -out {p}.plain && chmod 600 {p}.plain, then point {key} at it"
                )
            }
            K::KeyMismatch { .. } => {
                "use the private key that was issued with this certificate".into()
            }
            K::ClientKey { .. } => "use the private key issued with the client certificate".into(),
            K::NotCa { .. } => "list only CA certificates in this bundle".into(),
            K::Unparsable { .. } => "check that the file holds X.509 certificates".into(),
            K::Verifier { .. } => "check the CA bundle and CRLs".into(),
            K::Versions { .. } | K::Tickets { .. } => String::new(),
            K::HalfPair { present, .. } => format!(
                "restore it, or delete {present} too so a new self-signed pair is generated"
            ),
            K::Generate { .. } => {
                "check that the certificate directory is writable, or bring your own certificate"
                    .into()
            }
            K::Write { .. } => "make the directory writable by pacsgate".into(),
            K::Exists { .. } => "pass --force to replace it (a new key: peers that pinned the old fingerprint must re-pin), or choose another path".into(),
            K::NoDirectory { dir } => format!(
                "create it first (e.g. install -d -m 0750 {})",
                dir.display()
            ),
        }
    }
}
