//! Master keys (key-encryption keys) and data keys.
//!
//! A master key has a numeric id (`u32`, as in the official plugin's `MasterKey: [id, path]`)
//! and lives somewhere a [`MasterKeyProvider`] can reach: a local key file ([`file`]), an AWS
//! KMS key ([`aws_kms`]), a Vault / OpenBao Transit key ([`vault_transit`]) or an AES key
//! inside a PKCS#11 token ([`pkcs11`]). The current key
//! wraps new data keys; previous keys only unwrap. [`KeyRing`] holds them by id;
//! [`cache::CachedKeys`] adds the bounded data-key reuse and unwrap cache that makes a remote
//! key affordable. Key material lives in `Zeroizing` buffers, has no `Debug`, and never
//! reaches a log line.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::{Error, Result};

#[cfg(feature = "object-store")]
pub mod aws_kms;
pub mod cache;
mod file;
pub mod location;
pub mod pkcs11;
#[cfg(feature = "object-store")]
mod remote;
#[cfg(feature = "object-store")]
pub mod vault_transit;

pub use file::{generate_key_text, parse_key_text, MasterKey};

pub const KEY_LEN: usize = 32;
/// Random nonce of the AES-256-GCM key wrap (FORMAT.md, "wrapped data key").
pub const WRAP_NONCE_LEN: usize = 12;
/// Wrapped data key of v2 and of local AES-GCM wraps: ciphertext (32) || GCM tag (16).
pub const WRAPPED_LEN: usize = KEY_LEN + 16;
/// Largest wrapped data key a v3 header may carry (an AWS KMS ciphertext blob of a 32-byte
/// key is about 184 bytes; a local or PKCS#11 AES-GCM wrap is 60).
pub const MAX_BLOB_LEN: usize = 1024;

/// A data key (DEK). Never stored unwrapped; zeroized when dropped.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl Clone for DataKey {
    fn clone(&self) -> DataKey {
        DataKey(Zeroizing::new(*self.0))
    }
}

impl DataKey {
    /// A fresh random data key from the system CSPRNG.
    pub fn generate() -> Result<DataKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Crypto)?;
        Ok(DataKey(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    /// From a slice that must be exactly 32 bytes (an unwrap result).
    pub fn from_slice(bytes: &[u8]) -> Result<DataKey> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(Error::Integrity);
        }
        key.copy_from_slice(bytes);
        Ok(DataKey(key))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// One master key, wherever it lives. `aad` binds the wrapped key to its context (GCM
/// additional data locally and in PKCS#11, the encryption context in KMS).
pub trait MasterKeyProvider: Send + Sync {
    /// `file`, `aws-kms`, `vault-transit` or `pkcs11` (for `verify` and the log).
    fn kind(&self) -> &'static str;
    /// Whether every wrap and unwrap is a call to another service (counted and cached).
    fn remote(&self) -> bool;
    fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>>;
    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey>;
    /// The AES-256-CTR keystream A1 objects need; only where the raw key is local.
    fn a1_keystream(&self) -> Result<Zeroizing<[u8; 32]>> {
        Err(Error::Unsupported(
            "A1 objects need a local master key file, not a KMS or HSM key",
        ))
    }
}

/// Holds master keys by id and wraps/unwraps data keys with them.
pub trait KeyWrapper: Send + Sync {
    /// Id of the master key new objects are written under.
    fn current_id(&self) -> u32;
    fn wrap(&self, key_id: u32, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>>;
    fn unwrap(&self, key_id: u32, aad: &[u8], blob: &[u8]) -> Result<DataKey>;
    /// Where master key `key_id` lives (`file`, `aws-kms`, `pkcs11`), if configured.
    fn kind(&self, key_id: u32) -> Option<&'static str>;
    /// The 32-byte AES-256-CTR keystream (zero counter) under master key `key_id`, which is
    /// all the legacy A1 format needs to recover its IV and data key (a1-format.md).
    fn a1_keystream(&self, key_id: u32) -> Result<Zeroizing<[u8; 32]>>;

    /// A data key for a new v3 object under the current master key, with its wrapped form.
    /// [`cache::CachedKeys`] may hand out the same key for several objects (each object
    /// derives its own segment key from it with a random salt, FORMAT.md).
    fn data_key_for_write(&self) -> Result<(u32, DataKey, Arc<[u8]>)> {
        let id = self.current_id();
        let dek = DataKey::generate()?;
        let blob = self.wrap(id, &data_key_aad(id), &dek)?;
        Ok((id, dek, blob.into()))
    }

    /// The data key of a stored v3 object.
    fn data_key_for_read(&self, key_id: u32, blob: &[u8]) -> Result<DataKey> {
        self.unwrap(key_id, &data_key_aad(key_id), blob)
    }
}

/// What a v3 data key is wrapped with (FORMAT.md, "Wrapped data key"): a label and the master
/// key id, so a wrapped key cannot be relabelled with another id. Deliberately not the object
/// header: one wrapped key may serve several objects (`DataKeyReuseCount`).
pub fn data_key_aad(key_id: u32) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..28].copy_from_slice(b"pacsgate-storage v3 data key");
    aad[28..].copy_from_slice(&key_id.to_be_bytes());
    aad
}

// === impl KeyRing ===

/// Master keys by id: one current, any number of previous ones, each from any provider.
pub struct KeyRing {
    current: u32,
    keys: BTreeMap<u32, Box<dyn MasterKeyProvider>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self.keys.iter().map(|(id, k)| (id, k.kind())).collect();
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("keys", &keys)
            .finish()
    }
}

impl KeyRing {
    /// Local key files only. If a previous key repeats the current id, the current key wins
    /// (as in the official plugin); a repeated previous id keeps the later entry.
    pub fn new(current: MasterKey, previous: impl IntoIterator<Item = MasterKey>) -> KeyRing {
        let id = current.id();
        KeyRing::from_providers(
            (id, Box::new(current)),
            previous
                .into_iter()
                .map(|k| (k.id(), Box::new(k) as Box<dyn MasterKeyProvider>)),
        )
    }

    pub fn from_providers(
        current: (u32, Box<dyn MasterKeyProvider>),
        previous: impl IntoIterator<Item = (u32, Box<dyn MasterKeyProvider>)>,
    ) -> KeyRing {
        let mut keys: BTreeMap<u32, Box<dyn MasterKeyProvider>> = previous.into_iter().collect();
        keys.insert(current.0, current.1);
        KeyRing {
            current: current.0,
            keys,
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    fn key(&self, id: u32) -> Result<&dyn MasterKeyProvider> {
        self.keys
            .get(&id)
            .map(|k| k.as_ref())
            .ok_or(Error::UnknownKey(id))
    }

    pub fn is_remote(&self, id: u32) -> bool {
        self.keys.get(&id).is_some_and(|k| k.remote())
    }

    /// Start-up probe (fail closed): wrap and unwrap a random key with the current master
    /// key, so an unreachable KMS, a wrong PIN or a missing key stops the start.
    pub fn probe(&self) -> Result<()> {
        let dek = DataKey::generate()?;
        let aad = b"pacsgate-storage start-up probe";
        let blob = self.wrap(self.current, aad, &dek)?;
        let back = self.unwrap(self.current, aad, &blob)?;
        match back.expose() == dek.expose() {
            true => Ok(()),
            false => Err(Error::Integrity),
        }
    }
}

impl KeyWrapper for KeyRing {
    fn current_id(&self) -> u32 {
        self.current
    }

    fn wrap(&self, key_id: u32, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        self.key(key_id)?.wrap(aad, dek)
    }

    fn unwrap(&self, key_id: u32, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        self.key(key_id)?.unwrap(aad, blob)
    }

    fn kind(&self, key_id: u32) -> Option<&'static str> {
        self.keys.get(&key_id).map(|k| k.kind())
    }

    fn a1_keystream(&self, key_id: u32) -> Result<Zeroizing<[u8; 32]>> {
        self.key(key_id)?.a1_keystream()
    }
}
