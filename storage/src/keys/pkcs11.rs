//! A master key inside a PKCS#11 token (HSM, smart card, SoftHSM): a non-extractable
//! AES-256 secret key; data keys are wrapped with `C_Encrypt`/`C_Decrypt` and `CKM_AES_GCM`
//! inside the token (PKCS#11 v2.40 section 2.12.3), so the key never reaches this process.
//!
//! The location is an RFC 7512 URI: `pkcs11:token=LABEL;object=LABEL` with the module and
//! the PIN source in the query, `?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pacsgate/pin`.
//! A `pin-value` in the URI is refused: the configuration is readable by more than Orthanc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{DataKey, MasterKeyProvider, KEY_LEN, WRAP_NONCE_LEN};
use crate::{Error, Result};

/// GCM tag length in bits (the full 16 bytes).
const TAG_BITS: u64 = 128;
const PIN_FILE_MAX: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The URI as configured (for messages; it holds no secret).
    pub text: String,
    pub token: String,
    pub object: String,
    pub module_path: PathBuf,
    pub pin_source: PathBuf,
}

impl Pkcs11Uri {
    /// Strict RFC 7512 subset: path attributes `token`, `object`, `type=secret-key`;
    /// query attributes `module-path`, `pin-source` (a file). Anything else is refused
    /// rather than ignored, so a typo cannot select another key.
    pub fn parse(text: &str) -> std::result::Result<Pkcs11Uri, String> {
        let fail = |why: &str| {
            format!("{text:?}: {why}; expected pkcs11:token=LABEL;object=LABEL?module-path=/path/to/module.so&pin-source=file:/path/to/pin")
        };
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| fail("not a pkcs11: URI"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut attrs: HashMap<&str, String> = HashMap::new();
        let pairs = path.split(';').map(|p| (p, true)).chain(
            query
                .split('&')
                .filter(|q| !q.is_empty())
                .map(|q| (q, false)),
        );
        for (pair, in_path) in pairs {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| fail("attribute without '='"))?;
            let allowed = match in_path {
                true => ["token", "object", "type"].contains(&name),
                false => ["module-path", "pin-source"].contains(&name),
            };
            if name == "pin-value" {
                return Err(fail(
                    "pin-value is refused: put the PIN in a file (pin-source=file:...)",
                ));
            }
            if !allowed {
                return Err(fail(&format!("unsupported attribute {name:?}")));
            }
            let value = percent_decode(value).ok_or_else(|| fail("bad percent-encoding"))?;
            if attrs.insert(name, value).is_some() {
                return Err(fail(&format!("attribute {name:?} repeated")));
            }
        }
        if attrs.get("type").is_some_and(|t| t != "secret-key") {
            return Err(fail("type must be secret-key"));
        }
        let mut need = |name: &str| {
            attrs
                .remove(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| fail(&format!("{name} missing")))
        };
        let (token, object, module) = (need("token")?, need("object")?, need("module-path")?);
        let pin = need("pin-source")?;
        let pin_source = PathBuf::from(pin.strip_prefix("file:").unwrap_or(&pin));
        if !pin_source.is_absolute() || !Path::new(&module).is_absolute() {
            return Err(fail("module-path and pin-source must be absolute paths"));
        }
        Ok(Pkcs11Uri {
            text: text.to_string(),
            token,
            object,
            module_path: PathBuf::from(module),
            pin_source,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One initialised context per module: `C_Initialize` may run once per process, and
/// `C_Finalize` on drop would pull the token from under the other keys of the module.
fn context(module: &Path) -> Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| hsm(&format!("loading {}", module.display()), e))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm("C_Initialize", e)),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn hsm(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Kms(format!("PKCS#11 {what}: {e}"))
}

/// A logged-in session on the token and the key's handle.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    state: Mutex<(Session, ObjectHandle)>,
}

/// Token errors after which a new session (and login) may succeed: the HSM restarted, the
/// token was reinserted, or another client logged the application out.
fn session_lost(e: &cryptoki::error::Error) -> bool {
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

impl Pkcs11Key {
    /// Find the token by label, log in with the PIN from `pin-source`, find the key.
    pub fn open(uri: &Pkcs11Uri) -> Result<Pkcs11Key> {
        Ok(Pkcs11Key {
            uri: uri.clone(),
            state: Mutex::new(Pkcs11Key::connect(uri)?),
        })
    }

    fn connect(uri: &Pkcs11Uri) -> Result<(Session, ObjectHandle)> {
        let session = login(uri, false)?;
        let found = session
            .find_objects(&key_template(uri))
            .map_err(|e| hsm("C_FindObjects", e))?;
        let key = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(hsm(
                    &format!("key {:?}", uri.object),
                    "not in the token (create it with `pacsgate storage keygen --pkcs11 URI`)",
                ))
            }
            _ => {
                return Err(hsm(
                    &format!("key {:?}", uri.object),
                    "label is not unique in the token",
                ))
            }
        };
        Ok((session, key))
    }

    /// Run a token operation; once, after a lost session, log in again and retry.
    fn with_key<T>(
        &self,
        op: impl Fn(&Session, ObjectHandle) -> cryptoki::error::Result<T>,
    ) -> std::result::Result<T, cryptoki::error::Error> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match op(&state.0, state.1) {
            Err(e) if session_lost(&e) => {
                // A failed reconnect reports the original error.
                match Pkcs11Key::connect(&self.uri) {
                    Ok(fresh) => *state = fresh,
                    Err(_) => return Err(e),
                }
                op(&state.0, state.1)
            }
            other => other,
        }
    }

    /// Create the AES-256 key in the token: sensitive, never extractable, encrypt/decrypt
    /// only. Refuses when a key with that label exists.
    pub fn generate(uri: &Pkcs11Uri) -> Result<()> {
        let session = login(uri, true)?;
        let existing = session
            .find_objects(&key_template(uri))
            .map_err(|e| hsm("C_FindObjects", e))?;
        if !existing.is_empty() {
            return Err(hsm(
                &format!("key {:?}", uri.object),
                "already exists; choose another object label",
            ));
        }
        let mut template = key_template(uri);
        template.extend([
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::ValueLen((KEY_LEN as u64).into()),
        ]);
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| hsm("C_GenerateKey", e))?;
        Ok(())
    }
}

fn key_template(uri: &Pkcs11Uri) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ]
}

fn login(uri: &Pkcs11Uri, rw: bool) -> Result<Session> {
    let ctx = context(&uri.module_path)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| hsm("C_GetSlotList", e))?;
    let slot = slots
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label() == uri.token))
        .ok_or_else(|| hsm(&format!("token {:?}", uri.token), "not found"))?;
    let session = match rw {
        true => ctx.open_rw_session(slot),
        false => ctx.open_ro_session(slot),
    }
    .map_err(|e| hsm("C_OpenSession", e))?;
    let pin = read_pin(&uri.pin_source)?;
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            Ok(session)
        }
        Err(e) => Err(hsm("C_Login", e)),
    }
}

/// The PIN file: one line, private to its owner (like key files).
fn read_pin(path: &Path) -> Result<AuthPin> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let bad = |reason: String| Error::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open PIN file: {e}")))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(bad(
            "PIN file gives group or others access; run chmod 600".into()
        ));
    }
    let mut text = Zeroizing::new(String::new());
    file.take(PIN_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read PIN file: {e}")))?;
    Ok(AuthPin::new(text.trim().to_string()))
}

impl MasterKeyProvider for Pkcs11Key {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    /// Local library calls, but each one a token operation: counted and cached like a KMS.
    fn remote(&self) -> bool {
        true
    }

    /// `iv (12) || C_Encrypt(CKM_AES_GCM, dek) (32 + 16-byte tag)`: the same layout as a
    /// local key file's wrap.
    fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        let mut iv = [0u8; WRAP_NONCE_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| Error::Crypto)?;
        let sealed = self
            .with_key(|session, key| {
                let mut iv_param = iv;
                let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, dek.expose())
            })
            .map_err(|e| hsm("C_Encrypt", e))?;
        let mut blob = iv.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        if blob.len() != WRAP_NONCE_LEN + KEY_LEN + 16 {
            return Err(Error::Integrity);
        }
        let mut iv = [0u8; WRAP_NONCE_LEN];
        iv.copy_from_slice(&blob[..WRAP_NONCE_LEN]);
        let plain = Zeroizing::new(
            self.with_key(|session, key| {
                let mut iv_param = iv;
                let params = GcmParams::new(&mut iv_param, aad, TAG_BITS.into())?;
                session.decrypt(&Mechanism::AesGcm(params), key, &blob[WRAP_NONCE_LEN..])
            })
            .map_err(|e| match e {
                cryptoki::error::Error::Pkcs11(RvError::EncryptedDataInvalid, _) => {
                    Error::Integrity
                }
                e => hsm("C_Decrypt", e),
            })?,
        );
        DataKey::from_slice(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_parsed_strictly() {
        let ok = "pkcs11:token=pacs%20gate;object=master-2;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pacsgate/pin";
        let uri = Pkcs11Uri::parse(ok).unwrap();
        assert_eq!(uri.token, "pacs gate");
        assert_eq!(uri.object, "master-2");
        assert_eq!(uri.pin_source, PathBuf::from("/etc/pacsgate/pin"));
        for (bad, needle) in [
            (
                "pkcs11:token=t;object=o?module-path=/m.so&pin-value=1234",
                "pin-value",
            ),
            (
                "pkcs11:token=t;object=o;id=%01?module-path=/m.so&pin-source=/p",
                "\"id\"",
            ),
            (
                "pkcs11:token=t?module-path=/m.so&pin-source=/p",
                "object missing",
            ),
            (
                "pkcs11:token=t;token=u;object=o?module-path=/m.so&pin-source=/p",
                "repeated",
            ),
            (
                "pkcs11:token=t;object=o;type=private?module-path=/m.so&pin-source=/p",
                "secret-key",
            ),
            (
                "pkcs11:token=t;object=o?module-path=m.so&pin-source=/p",
                "absolute",
            ),
            (
                "pkcs11:token=t;object=%zz?module-path=/m.so&pin-source=/p",
                "percent",
            ),
        ] {
            let err = Pkcs11Uri::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
