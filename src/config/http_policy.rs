//! The validated settings of the HTTPS access policy: `http.authentication`, `[users]`,
//! `[[http.rules]]`, rate limits and lockouts. `http::policy` compiles them into the
//! policy a request is judged by.

use std::path::PathBuf;
use std::time::Duration;

use argon2::PasswordHash;
use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use super::certificate::CertificateMatch;
use super::glob::Glob;
use super::values::Rate;

/// The generated account's user name, when authentication is required and no users are
/// configured (`http::policy::admin`).
pub const GENERATED_ADMIN_USER: &str = "admin";
/// The generated account's password file, beside `tls.cert`.
pub const GENERATED_ADMIN_FILE: &str = "admin.password";

/// `http.authentication` (DESIGN.md contract name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// No request reaches the PACS without an authenticated user (the default). Without
    /// `[users]`, an `admin` account is generated (`admin.rs`).
    Required,
    /// Anonymous callers are let through: by rules naming "anonymous", or by everything
    /// outside the deny set when there are no rules (pass-through). Explicit and loud.
    None,
}

/// `[users]` plus the policy keys of `[http]`, validated.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub authentication: Authentication,
    /// The generated admin account's password file, when it applies (authentication
    /// required, no users configured). The account is added by [`Policy::build`].
    pub generated_admin: Option<PathBuf>,
    pub users: Vec<User>,
    /// Empty: no rules configured; every request the deny set lets through is forwarded.
    pub rules: Vec<Rule>,
    pub allow_dangerous: Vec<String>,
    pub limits: LimitsConfig,
    pub auth_failures_per_ip: LockoutPolicy,
    pub auth_failures_per_user: LockoutPolicy,
    pub csrf: bool,
    pub upstream_credentials_file: Option<PathBuf>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// A `[users.NAME]` entry, validated.
#[derive(Clone)]
pub struct User {
    pub name: String,
    /// PHC string of an argon2id hash (checked at load).
    pub password_hash: Option<String>,
    pub certificate: Option<CertificateMatch>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the hash: it is an offline brute-force target.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &self.password_hash.is_some())
            .field("certificate", &self.certificate)
            .finish()
    }
}

/// Who a rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMatch {
    /// Any authenticated user (`"*"`).
    AnyUser,
    /// No credentials at all (`"anonymous"`).
    Anonymous,
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// One `[[http.rules]]` entry, validated. Empty `sources` or `methods` match anything.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub users: Vec<UserMatch>,
    pub sources: Vec<IpNet>,
    pub methods: Vec<Method>,
    pub paths: Vec<Glob>,
    pub action: Action,
}

/// A `[[http.rate_limits.routes]]` entry: one shared budget for matching requests.
#[derive(Debug, Clone)]
pub struct RouteLimit {
    pub methods: Vec<Method>,
    pub paths: Vec<Glob>,
    pub rate: Rate,
}

#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    pub per_ip: Option<Rate>,
    pub per_user: Option<Rate>,
    pub routes: Vec<RouteLimit>,
}

/// `N` failures per window (from `"5/min"`), and the longest lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub failures: u32,
    pub window: Duration,
    pub max_lockout: Duration,
}

/// Check that `phc` is an argon2id PHC string (`$argon2id$v=19$m=...`).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", hash.algorithm));
    }
    argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}
