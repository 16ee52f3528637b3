//! Who is calling: a user from HTTP Basic credentials (argon2id) or from the verified
//! client certificate, or nobody (anonymous).
//!
//! Verifying argon2id costs tens of milliseconds by design, so a successful verification is
//! remembered for a short time per user (a keyed digest of the password, compared in
//! constant time): keep-alive clients sending the same credentials pay for it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::config::{check_phc, User};
use crate::config::{CertificateMatch, Fingerprint, UserMatch};
use crate::sync::lock;
use crate::tls::PeerIdentity;

/// How long a verified password is trusted without hashing again.
const VERIFIED_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    None,
    Password,
    Certificate,
}

/// The identity a request is judged under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User { name: Arc<str>, method: AuthMethod },
}

impl Caller {
    pub fn is(&self, m: &UserMatch) -> bool {
        match (self, m) {
            (Caller::Anonymous, UserMatch::Anonymous) => true,
            (Caller::User { .. }, UserMatch::AnyUser) => true,
            (Caller::User { name, .. }, UserMatch::Named(n)) => **name == **n,
            _ => false,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User { name, .. } => Some(name),
        }
    }

    pub fn method(&self) -> AuthMethod {
        match self {
            Caller::Anonymous => AuthMethod::None,
            Caller::User { method, .. } => *method,
        }
    }
}

/// Credentials from an `Authorization: Basic` header. No `Debug`: holds a password.
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

/// Parse `Basic base64(user:password)` (RFC 7617); `None` for anything else.
pub fn parse_basic(value: &HeaderValue) -> Option<BasicCredentials> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The configured users, indexed for both ways of authenticating.
pub struct Users {
    by_name: HashMap<String, User>,
    by_fingerprint: HashMap<Fingerprint, Arc<str>>,
    by_cert_name: Vec<(String, Arc<str>)>,
    /// A valid hash checked for unknown user names, so their timing matches known ones.
    decoy_hash: String,
    verified: Mutex<HashMap<String, Remembered>>,
    digest_key: [u8; 32],
}

/// A verified password: the user, a keyed digest of the password, and until when.
type Remembered = (Arc<str>, [u8; 32], Instant);

/// Result of checking a password.
pub enum Verification {
    /// Remembered from an earlier verification: no hashing was done.
    Cached(Arc<str>),
    Verified(Arc<str>),
    Failed,
}

impl Users {
    pub fn new(users: &[User], digest_key: [u8; 32], decoy_hash: String) -> Self {
        let mut by_fingerprint = HashMap::new();
        let mut by_cert_name = Vec::new();
        for u in users {
            let name: Arc<str> = Arc::from(u.name.as_str());
            match &u.certificate {
                Some(CertificateMatch::Fingerprint(fp)) => {
                    by_fingerprint.insert(*fp, name);
                }
                Some(CertificateMatch::Name(n)) => by_cert_name.push((n.clone(), name)),
                None => {}
            }
        }
        Self {
            by_name: users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            by_fingerprint,
            by_cert_name,
            decoy_hash,
            verified: Mutex::new(HashMap::new()),
            digest_key,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn has_passwords(&self) -> bool {
        self.by_name.values().any(|u| u.password_hash.is_some())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The user a verified client certificate belongs to, if any.
    pub fn by_certificate(&self, id: &PeerIdentity) -> Option<Arc<str>> {
        if let Some(name) = self.by_fingerprint.get(&id.fingerprint) {
            return Some(name.clone());
        }
        self.by_cert_name
            .iter()
            .find(|(n, _)| id.has_name(n))
            .map(|(_, user)| user.clone())
    }

    /// Fast path: the same user and password were verified less than a minute ago.
    pub fn cached(&self, creds: &BasicCredentials, now: Instant) -> Option<Arc<str>> {
        let digest = self.digest(&creds.password);
        let verified = lock(&self.verified);
        let (name, stored, until) = verified.get(&creds.user)?;
        (now < *until && bool::from(stored.ct_eq(&digest))).then(|| name.clone())
    }

    /// Slow path: argon2id. Runs the same work for unknown users (against a decoy hash).
    pub fn verify(&self, creds: &BasicCredentials, now: Instant) -> Verification {
        if let Some(name) = self.cached(creds, now) {
            return Verification::Cached(name);
        }
        let user = self.by_name.get(&creds.user);
        let phc = user
            .and_then(|u| u.password_hash.as_deref())
            .unwrap_or(&self.decoy_hash);
        let ok = PasswordHash::new(phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(creds.password.as_bytes(), &h)
                .is_ok()
        });
        match user {
            Some(u) if ok && u.password_hash.is_some() => {
                let name: Arc<str> = Arc::from(u.name.as_str());
                let digest = self.digest(&creds.password);
                lock(&self.verified)
                    .insert(u.name.clone(), (name.clone(), digest, now + VERIFIED_TTL));
                Verification::Verified(name)
            }
            _ => Verification::Failed,
        }
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.digest_key);
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

/// Hash `password` as argon2id with Argon2's default parameters (RFC 9106 second
/// recommendation: m=19 MiB, t=2, p=1) and a random salt; returns the PHC string.
pub fn hash_password(password: &str, salt: &[u8; 16]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Key material for the password cache and the generated account; `None` only if the
/// system has no randomness to give.
pub(super) fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut out = [0u8; N];
    crate::tls::server::provider()
        .secure_random
        .fill(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let hash = hash_password("s3cret", &[7; 16]).unwrap();
        let decoy = hash_password("decoy", &[8; 16]).unwrap();
        let admin = User {
            name: "admin".into(),
            password_hash: Some(hash),
            certificate: None,
        };
        Users::new(&[admin], [1; 32], decoy)
    }

    fn creds(user: &str, password: &str) -> BasicCredentials {
        BasicCredentials {
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn right_password_verifies_once_then_comes_from_the_cache() {
        let u = users();
        let now = Instant::now();
        assert!(matches!(
            u.verify(&creds("admin", "s3cret"), now),
            Verification::Verified(_)
        ));
        assert!(matches!(
            u.verify(&creds("admin", "s3cret"), now),
            Verification::Cached(_)
        ));
        assert!(matches!(
            u.verify(&creds("admin", "wrong"), now),
            Verification::Failed
        ));
        let later = now + VERIFIED_TTL + Duration::from_secs(1);
        assert!(u.cached(&creds("admin", "s3cret"), later).is_none());
    }

    #[test]
    fn unknown_users_and_wrong_passwords_fail() {
        let u = users();
        let now = Instant::now();
        assert!(matches!(
            u.verify(&creds("nobody", "decoy"), now),
            Verification::Failed
        ));
        assert!(matches!(
            u.verify(&creds("admin", ""), now),
            Verification::Failed
        ));
    }

    #[test]
    fn basic_header_parsing() {
        let v = HeaderValue::from_static("Basic YWRtaW46czNjOnJldA==");
        let c = parse_basic(&v).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("admin", "s3c:ret"));
        assert!(parse_basic(&HeaderValue::from_static("Bearer abc")).is_none());
        assert!(parse_basic(&HeaderValue::from_static("Basic !!!")).is_none());
        assert!(parse_basic(&HeaderValue::from_static("Basic YWRtaW4=")).is_none());
    }

    #[test]
    fn only_argon2id_phc_strings_are_accepted() {
        assert!(check_phc(&hash_password("x", &[1; 16]).unwrap()).is_ok());
        assert!(check_phc("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(check_phc("plain").is_err());
    }
}
