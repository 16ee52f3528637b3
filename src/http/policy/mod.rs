//! The HTTPS access policy, compiled from the configuration: users, the built-in deny set,
//! ordered rules, rate limits, CSRF and the headers added on the way. `guard.rs` applies it
//! to each request. A [`PolicyHandle`] holds the current policy and swaps it atomically on
//! reload; lockout state lives beside it so a reload does not unlock an attacker.

pub mod admin;
pub mod hash_cli;
pub mod identity;
pub mod limits;
pub mod lockouts;
pub mod rules;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use self::identity::{random_bytes, Users};
use self::limits::{IpKey, RateLimits};
use self::rules::Rule;
use crate::config::LockoutPolicy;
pub use crate::config::{Authentication, PolicyConfig};
use crate::config::{Config, ConfigError, DenySet, DANGEROUS};
use crate::limit::cluster::Cluster;
use crate::limit::Lockouts;
use crate::reload::{Commit, Reloadable};

/// Failed-login keys remembered at most per kind (client networks; user names are bounded
/// by the configuration plus one shared key for unknown names).
const MAX_LOCKOUT_KEYS: usize = 100_000;

/// The compiled policy one request is judged by.
pub struct Policy {
    pub users: Arc<Users>,
    pub rules: Vec<Rule>,
    pub deny: DenySet,
    pub limits: RateLimits,
    pub ip_lockout: LockoutPolicy,
    pub user_lockout: LockoutPolicy,
    pub csrf: bool,
    /// `Authorization` value sent to the PACS (its own account), if configured.
    pub upstream_authorization: Option<HeaderValue>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Policy {
    /// Build from validated configuration; reads the upstream credentials file. `admin` is
    /// the generated account, loaded once at start (required when the config says one
    /// applies).
    pub fn build(
        config: &PolicyConfig,
        admin: Option<&admin::Loaded>,
    ) -> Result<Self, ConfigError> {
        let key = random_bytes::<32>()?;
        let salt = random_bytes::<16>()?;
        let decoy = identity::hash_password(&crate::tls::Fingerprint::of(&key).to_string(), &salt)
            .map_err(|e| ConfigError::new("users", e, ""))?;
        let mut users = config.users.clone();
        if let Some(path) = &config.generated_admin {
            users.push(admin::matching(admin, path)?);
        }
        Ok(Self {
            users: Arc::new(Users::new(&users, key, decoy)),
            rules: config.rules.clone(),
            deny: DenySet::new(&config.allow_dangerous),
            limits: RateLimits::new(&config.limits),
            ip_lockout: config.auth_failures_per_ip,
            user_lockout: config.auth_failures_per_user,
            csrf: config.csrf,
            upstream_authorization: config
                .upstream_credentials_file
                .as_deref()
                .map(upstream_authorization)
                .transpose()?,
            response_headers: config.response_headers.clone(),
        })
    }

    /// No rules: the gateway forwards whatever the deny set lets through.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }
}

/// `user:password` from the file (first line), as a Basic `Authorization` value.
fn upstream_authorization(path: &std::path::Path) -> Result<HeaderValue, ConfigError> {
    use base64::Engine;
    let key = "http.upstream_credentials_file";
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            key,
            format!("cannot read {}: {e}", path.display()),
            "point it at a file holding user:password for the PACS (mode 0600)",
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    if !line.contains(':') {
        return Err(ConfigError::new(
            key,
            "does not hold user:password on its first line",
            "write the PACS account as user:password",
        ));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(line);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| ConfigError::new(key, "is not a valid header value", ""))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The current policy plus state that outlives reloads.
pub struct PolicyHandle {
    current: Arc<ArcSwap<Policy>>,
    /// The generated account as loaded at start. Reloads reuse it instead of reading the
    /// file again: after the privilege drop the file (root's, 0600) is not readable, and
    /// the plaintext is better not handled twice.
    admin: Option<admin::Loaded>,
    pub ip_failures: Lockouts<IpKey>,
    pub user_failures: Lockouts<String>,
    /// Names that are not configured users, each its own key (a shared key would lock
    /// them together and so tell them apart from real names), held as a keyed 64-bit
    /// hash so that a spray of long names stays small; apart from the real users' map,
    /// so that a spray cannot fill it.
    pub unknown_user_failures: Lockouts<u64>,
    pub unknown_names: std::collections::hash_map::RandomState,
    /// Password hashes computed at once: argon2id takes ~19 MiB and a core each, so
    /// concurrent logins from many addresses must queue, not exhaust memory or threads.
    pub hashing: tokio::sync::Semaphore,
    /// `[cluster]`: rates and lockouts shared with other replicas (`lockouts.rs`).
    pub cluster: Option<Arc<Cluster>>,
}

impl PolicyHandle {
    pub fn new(
        policy: Policy,
        admin: Option<admin::Loaded>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
            admin,
            ip_failures: Lockouts::new(MAX_LOCKOUT_KEYS),
            user_failures: Lockouts::new(MAX_LOCKOUT_KEYS),
            unknown_user_failures: Lockouts::new(MAX_LOCKOUT_KEYS),
            unknown_names: Default::default(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            cluster,
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }
}

impl Reloadable for PolicyHandle {
    fn prepare(&self, config: &Config) -> Result<Commit, ConfigError> {
        let Some(http) = &config.http else {
            return Err(ConfigError::new(
                "http.enabled",
                "cannot disable the HTTPS listener by reloading",
                "restart pacsgate to change listeners",
            ));
        };
        let policy = Arc::new(Policy::build(&http.policy, self.admin.as_ref())?);
        let target = self.current.clone();
        warn_if_open(&http.policy);
        Ok(Box::new(move || target.store(policy)))
    }
}

/// The start-up (and reload) warning for `http.authentication = "none"`.
pub fn warn_if_open(config: &PolicyConfig) {
    if let Some(text) = open_warning(config) {
        tracing::warn!("{text}");
    }
}

/// What `authentication = "none"` lets through, naming the key; `None` when required.
pub fn open_warning(config: &PolicyConfig) -> Option<String> {
    if config.authentication != Authentication::None {
        return None;
    }
    Some(if config.rules.is_empty() {
        "http.authentication = \"none\" and no [[http.rules]] configured: every request \
         except the built-in deny set is forwarded WITHOUT AUTHENTICATION (pass-through); \
         remove the key (default \"required\") or add users and rules (see config.toml)"
            .to_string()
    } else {
        "http.authentication = \"none\": rules naming \"anonymous\" let requests through \
         WITHOUT AUTHENTICATION; remove the key (default \"required\") to refuse them"
            .to_string()
    })
}

/// The authentication mode as one line for `pacsgate check`.
pub fn describe_mode(config: &PolicyConfig) -> String {
    match (config.authentication, &config.generated_admin) {
        (Authentication::None, _) => format!(
            "http authentication: none (WARN {})",
            open_warning(config).unwrap_or_default()
        ),
        (Authentication::Required, Some(path)) => format!(
            "http authentication: required; no [users]: generated account \"{}\" (password file {})",
            admin::USER,
            path.display(),
        ),
        (Authentication::Required, None) => format!(
            "http authentication: required ({} configured users)",
            config.users.len()
        ),
    }
}

/// The effective policy as text, for `pacsgate check`.
pub fn describe(config: &PolicyConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for u in &config.users {
        let how = match (&u.password_hash, &u.certificate) {
            (Some(_), Some(_)) => "password or certificate",
            (Some(_), None) => "password",
            _ => "certificate",
        };
        let _ = writeln!(out, "user {}: {how}", u.name);
    }
    let _ = writeln!(out, "{}", describe_mode(config));
    if config.rules.is_empty() {
        let _ = writeln!(out, "rules: none (open: no authentication; deny set only)");
    }
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "any".to_string()
        } else {
            items.join(", ")
        }
    };
    for (i, r) in config.rules.iter().enumerate() {
        let users = r.users.iter().map(|u| match u {
            rules::UserMatch::AnyUser => "*".to_string(),
            rules::UserMatch::Anonymous => "anonymous".to_string(),
            rules::UserMatch::Named(n) => n.clone(),
        });
        let _ = writeln!(
            out,
            "rule {} {:?}: {} users [{}] from [{}] methods [{}] paths [{}]",
            i + 1,
            r.name,
            match r.action {
                rules::Action::Allow => "allow",
                rules::Action::Deny => "deny",
            },
            list(users.collect()),
            list(r.sources.iter().map(ToString::to_string).collect()),
            list(r.methods.iter().map(ToString::to_string).collect()),
            list(r.paths.iter().map(|g| g.as_str().to_string()).collect()),
        );
    }
    for d in DANGEROUS {
        let state = if config.allow_dangerous.iter().any(|o| o == d.id) {
            "OPENED by http.allow_dangerous"
        } else {
            "denied"
        };
        let _ = writeln!(out, "built-in {} {:?}: {state}", d.id, d.paths);
    }
    out
}
