//! Envelope-encrypting storage for Orthanc attachments.
//!
//! # Layout
//!
//! - [`keys`]: master keys with numeric ids (the current one wraps, previous ones unwrap)
//!   from key files, AWS KMS (`keys::aws_kms`), Vault Transit (`keys::vault_transit`) or a
//!   PKCS#11 token ([`keys::pkcs11`]),
//!   behind the [`keys::KeyWrapper`] seam; [`keys::cache`] bounds the remote calls.
//! - [`format`]: the on-disk formats. [`format::pge`] v3 is what we write (chunked
//!   AES-256-GCM STREAM under a per-object key, bound to the object's uuid and content type;
//!   v2 is still read; `FORMAT.md`); [`format::a1`] reads the official plugin's `A1` objects.
//! - [`backend`]: where ciphertext lives: [`backend::fs`] (Orthanc's `xx/yy/uuid` layout,
//!   atomic writes) and, with the `object-store` feature, `backend::object` (S3, Azure, GCS).
//! - [`config`]: the `PacsgateStorage` section of Orthanc's JSON configuration, shared
//!   by the plugin and the CLI.
//! - [`store`]: [`Store`] ties both together; the Orthanc plugin and the CLI call it.
//!
//! # Flows
//!
//! Write: `Store::put(name, content type, bytes)` -> data key (fresh, or reused within the
//! cache bounds) wrapped under the current master key -> object key = HKDF(salt, data key)
//! -> header + 64 KiB sealed segments streamed into a backend writer -> commit (rename or
//! multipart complete); dropping the writer before commit leaves nothing visible.
//!
//! Read: `Store::read_whole` / `Store::read_range` -> fetch the header -> unwrap the data key
//! (unknown key id: error) -> fetch and open only the covering segments -> plaintext; any
//! tag failure or short object is an error, never partial plaintext.
//!
//! Everything here is synchronous; the object-store backend hides its own runtime.

pub mod backend;
pub mod config;
mod error;
pub mod format;
pub mod keys;
pub mod store;

pub use error::{Error, Result};
pub use store::Store;
