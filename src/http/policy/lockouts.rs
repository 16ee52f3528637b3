//! Failed-login lockouts per client network and per user name: in-process
//! (`crate::limit::Lockouts`) or, with `[cluster]`, in Redis shared by every replica
//! (`crate::limit::cluster`), so a brute force spread over replicas is cut off after the
//! configured total. While Redis is unavailable password logins fail closed: every attempt
//! gets the locked-out answer (429), right password or not, so an outage neither opens
//! unlimited guessing nor tells locked accounts apart; certificate logins never reach
//! this code and are unaffected.

use std::time::{Duration, Instant};

use super::limits::IpKey;
use super::{Policy, PolicyHandle};

/// What a password login is told while the shared lockout state cannot be read.
pub const DEGRADED_RETRY: Duration = Duration::from_secs(1);

/// Key kinds in the shared store.
const IP: &str = "lock-ip";
const USER: &str = "lock-user";

/// The per-name lockout key of a login attempt. In process: a configured user's name, or
/// a keyed hash of a name nobody has (kept apart in
/// [`PolicyHandle::unknown_user_failures`] so that a spray of names cannot fill the real
/// users' map). Shared: the name itself, hashed into a bounded Redis key, known or not
/// (the same for every name, so the store tells nothing about which names exist).
pub struct UserKey {
    local: Local,
    name: String,
}

enum Local {
    Known(String),
    Unknown(u64),
}

impl UserKey {
    pub fn of(name: &str, policy: &Policy, handle: &PolicyHandle) -> Self {
        use std::hash::BuildHasher;
        let local = if policy.users.exists(name) {
            Local::Known(name.to_string())
        } else {
            Local::Unknown(handle.unknown_names.hash_one(name))
        };
        let name = if handle.cluster.is_some() {
            name.to_string()
        } else {
            String::new()
        };
        Self { local, name }
    }
}

impl PolicyHandle {
    /// `Err(wait)` while the client network or the name is locked out (or, with
    /// `[cluster]`, while Redis cannot say: fail closed).
    pub async fn locked(&self, ip: &IpKey, user: &UserKey, now: Instant) -> Result<(), Duration> {
        if let Some(c) = self.cluster() {
            let ip = ip.id_bytes();
            return match c.locked(&[(IP, &ip), (USER, user.name.as_bytes())]).await {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => Err(wait),
                Err(_) => Err(DEGRADED_RETRY),
            };
        }
        self.ip_failures.check(ip, now).and(match &user.local {
            Local::Known(k) => self.user_failures.check(k, now),
            Local::Unknown(k) => self.unknown_user_failures.check(k, now),
        })
    }

    /// A wrong password: counted on the network and on the name.
    pub async fn failed(&self, policy: &Policy, ip: &IpKey, user: &UserKey, now: Instant) {
        if let Some(c) = self.cluster() {
            let ip = ip.id_bytes();
            let keys = [
                (IP, &ip[..], &policy.ip_lockout),
                (USER, user.name.as_bytes(), &policy.user_lockout),
            ];
            // Unavailable: nothing to record into; the next attempt fails closed anyway.
            let _ = c.fail(&keys).await;
            return;
        }
        self.ip_failures.fail(ip, &policy.ip_lockout, now);
        match &user.local {
            Local::Known(k) => self.user_failures.fail(k, &policy.user_lockout, now),
            Local::Unknown(k) => self
                .unknown_user_failures
                .fail(k, &policy.user_lockout, now),
        };
    }

    /// A correct password clears the name's record.
    pub async fn succeeded(&self, user: &UserKey) {
        if let Some(c) = self.cluster() {
            let _ = c.succeed(USER, user.name.as_bytes()).await;
            return;
        }
        if let Local::Known(k) = &user.local {
            self.user_failures.succeed(k);
        }
    }
}
