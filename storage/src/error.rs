//! One error type for the storage layer; each variant names what failed.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("not an encrypted object (neither the pacsgate format nor A1)")]
    UnknownFormat,
    #[error("malformed header: {0}")]
    BadHeader(&'static str),
    #[error("object is truncated or has trailing bytes")]
    Truncated,
    #[error("master key id {0} is not configured (add it to PreviousMasterKeys)")]
    UnknownKey(u32),
    #[error("integrity check failed: object tampered with, truncated, swapped with or renamed from another object, or wrong master key")]
    Integrity,
    #[error("integrity check failed: object is bound to content type {stored}, Orthanc asked for {asked} (swapped attachment)")]
    WrongContentType { stored: u32, asked: u32 },
    #[error("object in format {0} is not bound to its name and AcceptUnboundFormats is false; run `pacsgate storage migrate`")]
    Unbound(&'static str),
    #[error("key service: {0}")]
    Kms(String),
    #[error("range {start}+{len} is outside the object ({size} bytes)")]
    Range { start: u64, len: u64, size: u64 },
    #[error("object of {0} bytes exceeds the configured limit (MaxConcurrentInputSize)")]
    TooLarge(u64),
    #[error("invalid object name {0:?}")]
    BadName(String),
    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("input changed while encrypting: expected {expected} bytes")]
    InputLength { expected: u64 },
    #[error("output buffer is {got} bytes, the sealed object needs {expected}")]
    OutputLength { expected: u64, got: u64 },
    #[error("{op} {name}: {source}")]
    Io {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("object store: {0}")]
    Backend(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("cryptographic library failure")]
    Crypto,
}

impl Error {
    pub(crate) fn io(op: &'static str, name: &str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            return Error::NotFound(name.to_string());
        }
        Error::Io {
            op,
            name: name.to_string(),
            source,
        }
    }
}
