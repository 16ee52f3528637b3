//! Master keys in local key files: 32 random bytes, base64, mode 0600.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use aes::cipher::{BlockEncrypt, KeyInit};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine;
use zeroize::Zeroizing;

use super::{DataKey, MasterKeyProvider, KEY_LEN, WRAPPED_LEN, WRAP_NONCE_LEN};
use crate::{Error, Result};

/// A key file is a line of base64; anything much longer is not a key file.
const KEY_FILE_MAX: u64 = 4096;

// === impl MasterKey ===

/// One master key. `Debug` shows the id only.
pub struct MasterKey {
    id: u32,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(id: u32, bytes: [u8; KEY_LEN]) -> Result<MasterKey> {
        let bytes = Zeroizing::new(bytes);
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref()).map_err(|_| Error::Crypto)?;
        Ok(MasterKey {
            id,
            bytes,
            aead: LessSafeKey::new(unbound),
        })
    }

    /// Load a key file: base64 of exactly 32 bytes, surrounding whitespace allowed, not
    /// readable or writable by group or others.
    pub fn load(id: u32, path: &Path) -> Result<MasterKey> {
        let bad = |reason: String| Error::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| bad(format!("cannot open: {e}")))?;
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "permissions {:o} give group or others access; run chmod 600",
                meta.mode() & 0o777
            )));
        }
        let mut text = Zeroizing::new(Vec::new());
        file.take(KEY_FILE_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        if text.len() as u64 > KEY_FILE_MAX {
            return Err(bad("too long for a key file".into()));
        }
        let bytes = parse_key_text(&text).map_err(bad)?;
        MasterKey::from_bytes(id, *bytes)
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Strict parse of key file content: standard base64 (with padding) of exactly 32 bytes.
/// Unlike the official plugin we refuse longer or shorter keys instead of truncating them.
pub fn parse_key_text(text: &[u8]) -> std::result::Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let trimmed = text.trim_ascii();
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map_err(|_| "not base64 (expected `openssl rand -base64 32` output)".to_string())?,
    );
    let bytes: [u8; KEY_LEN] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| format!("decodes to {} bytes, expected 32", decoded.len()))?;
    Ok(Zeroizing::new(bytes))
}

/// New key file content: base64 of 32 random bytes and a newline.
pub fn generate_key_text() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Crypto)?;
    let mut text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
    text.push('\n');
    Ok(text)
}

// === impl MasterKeyProvider ===

impl MasterKeyProvider for MasterKey {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn remote(&self) -> bool {
        false
    }

    /// `nonce (12) || AES-256-GCM(master, dek, aad) (32) || tag (16)`: the v2 header's
    /// bytes 28..88 have exactly this layout.
    fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Crypto)?;
        let mut blob = vec![0u8; WRAP_NONCE_LEN + WRAPPED_LEN];
        blob[..WRAP_NONCE_LEN].copy_from_slice(&nonce);
        let (body, tag_out) = blob[WRAP_NONCE_LEN..].split_at_mut(KEY_LEN);
        body.copy_from_slice(dek.expose());
        let tag = self
            .aead
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .map_err(|_| Error::Crypto)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(blob)
    }

    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        if blob.len() != WRAP_NONCE_LEN + WRAPPED_LEN {
            return Err(Error::Integrity);
        }
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        nonce.copy_from_slice(&blob[..WRAP_NONCE_LEN]);
        let mut buf = Zeroizing::new([0u8; WRAPPED_LEN]);
        buf.copy_from_slice(&blob[WRAP_NONCE_LEN..]);
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                buf.as_mut(),
            )
            .map_err(|_| Error::Integrity)?;
        DataKey::from_slice(plain)
    }

    fn a1_keystream(&self) -> Result<Zeroizing<[u8; 32]>> {
        // KS = AES-256-ECB_KEK(0^128) || AES-256-ECB_KEK(0^127 1): CTR mode with an
        // all-zero initial counter block (a1-format.md, "Layout").
        let cipher = aes::Aes256::new_from_slice(self.bytes.as_ref()).map_err(|_| Error::Crypto)?;
        let mut ks = Zeroizing::new([0u8; 32]);
        let (b0, b1) = ks.split_at_mut(16);
        b1[15] = 1;
        cipher.encrypt_block(b0.into());
        cipher.encrypt_block(b1.into());
        Ok(ks)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyRing, KeyWrapper};
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(
            MasterKey::from_bytes(2, [2; 32]).unwrap(),
            [MasterKey::from_bytes(1, [1; 32]).unwrap()],
        )
    }

    #[test]
    fn key_text_must_be_exactly_32_bytes_of_base64() {
        let ok = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
        assert_eq!(parse_key_text(ok).unwrap()[31], 0x1f);
        assert!(parse_key_text(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==").is_err());
        assert!(parse_key_text(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==").is_err());
        assert!(parse_key_text(b"not base64 at all!").is_err());
        assert!(parse_key_text(b"").is_err());
        let generated = generate_key_text().unwrap();
        assert!(parse_key_text(generated.as_bytes()).is_ok());
    }

    #[test]
    fn wrap_binds_key_id_and_header() {
        let ring = ring();
        let dek = DataKey::from_bytes([7; 32]);
        let w = ring.wrap(2, b"header", &dek).unwrap();
        assert_eq!(ring.unwrap(2, b"header", &w).unwrap().expose(), &[7; 32]);
        assert!(matches!(
            ring.unwrap(2, b"other", &w),
            Err(Error::Integrity)
        ));
        assert!(matches!(
            ring.unwrap(1, b"header", &w),
            Err(Error::Integrity)
        ));
        assert!(matches!(
            ring.unwrap(9, b"header", &w),
            Err(Error::UnknownKey(9))
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", ring());
        assert!(
            text.contains("current: 2") && !text.contains("[2, 2"),
            "{text}"
        );
        let key = format!("{:?}", MasterKey::from_bytes(2, [2; 32]).unwrap());
        assert!(key.contains("id: 2") && !key.contains("[2, 2"), "{key}");
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, generate_key_text().unwrap().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load(1, &path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(MasterKey::load(1, &path).unwrap().id(), 1);
    }
}
