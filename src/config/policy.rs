//! Validation of the HTTPS access policy: `[users.NAME]` and the policy keys of `[http]`
//! (`authentication`, `admin_password_file`, `rules`, `allow_dangerous`, `rate_limits`,
//! `csrf_protection`, `upstream_credentials_file`, `response_headers`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::deny_set::DenySet;
use super::error::ConfigError;
use super::glob::Glob;
use super::http_policy::{
    check_phc, Action, Authentication, LimitsConfig, LockoutPolicy, PolicyConfig, RouteLimit, Rule,
    User, UserMatch, GENERATED_ADMIN_FILE, GENERATED_ADMIN_USER,
};
use super::raw::{RawHttp, RawRule, RawUser};
use super::values::{certificate, cidr, duration, rate};

/// Headers added to every response unless `[http.response_headers]` overrides them ("" removes).
const DEFAULT_RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=31536000"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("content-security-policy", "frame-ancestors 'self'"),
];

pub(super) fn policy(
    raw: &RawHttp,
    users: &BTreeMap<String, RawUser>,
    base: &Path,
    cert: &Path,
) -> Result<PolicyConfig, ConfigError> {
    let users = users
        .iter()
        .map(|(name, u)| user(name, u))
        .collect::<Result<Vec<_>, _>>()?;
    let authentication = authentication(raw)?;
    let generated_admin = generated_admin(raw, authentication, &users, base, cert)?;
    let mut names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    if generated_admin.is_some() {
        names.push(GENERATED_ADMIN_USER);
    }
    let mut rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(i, r, &names, authentication))
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() && generated_admin.is_some() {
        rules.push(authenticated_users_rule());
    }
    if rules.is_empty() && !users.is_empty() {
        return Err(ConfigError::new(
            "http.rules",
            "users are configured but no rule says what they may do",
            "add [[http.rules]] entries (see the commented example in config.toml)",
        ));
    }
    for id in &raw.allow_dangerous {
        if !DenySet::is_known(id) {
            return Err(ConfigError::new(
                "http.allow_dangerous",
                format!("unknown entry {id:?}"),
                "use ids from the README table: execute-script, export, webdav",
            ));
        }
    }
    let rl = &raw.rate_limits;
    let max_lockout = duration("http.rate_limits.max_lockout", &rl.max_lockout)?;
    Ok(PolicyConfig {
        authentication,
        generated_admin,
        users,
        rules,
        allow_dangerous: raw.allow_dangerous.clone(),
        limits: LimitsConfig {
            per_ip: rl
                .per_ip
                .as_deref()
                .map(|r| rate("http.rate_limits.per_ip", r))
                .transpose()?,
            per_user: rl
                .per_user
                .as_deref()
                .map(|r| rate("http.rate_limits.per_user", r))
                .transpose()?,
            routes: rl
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let key = format!("http.rate_limits.routes[{i}]");
                    Ok(RouteLimit {
                        methods: methods(&format!("{key}.methods"), &r.methods)?,
                        paths: globs(&format!("{key}.paths"), &r.paths)?,
                        rate: rate(&format!("{key}.rate"), &r.rate)?,
                    })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
        },
        auth_failures_per_ip: lockout(
            "http.rate_limits.auth_failures_per_ip",
            &rl.auth_failures_per_ip,
            max_lockout,
        )?,
        auth_failures_per_user: lockout(
            "http.rate_limits.auth_failures_per_user",
            &rl.auth_failures_per_user,
            max_lockout,
        )?,
        csrf: raw.csrf_protection,
        upstream_credentials_file: raw.upstream_credentials_file.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        }),
        response_headers: response_headers(&raw.response_headers)?,
    })
}

fn user(name: &str, raw: &RawUser) -> Result<User, ConfigError> {
    let key = |k: &str| format!("users.{name}.{k}");
    let name_ok = !name.is_empty()
        && name != "anonymous"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !name_ok {
        return Err(ConfigError::new(
            format!("users.{name}"),
            "is not a usable user name",
            "use letters, digits, '.', '_', '-' or '@' (not \"anonymous\")",
        ));
    }
    if let Some(phc) = &raw.password_hash {
        check_phc(phc).map_err(|e| {
            ConfigError::new(
                key("password_hash"),
                e,
                "paste the output of `pacsgate hash-password`",
            )
        })?;
    }
    let certificate = raw
        .certificate
        .as_deref()
        .map(|c| certificate(&key("certificate"), c))
        .transpose()?;
    if raw.password_hash.is_none() && certificate.is_none() {
        return Err(ConfigError::new(
            format!("users.{name}"),
            "has neither password_hash nor certificate",
            "set password_hash (from `pacsgate hash-password`) and/or certificate",
        ));
    }
    Ok(User {
        name: name.to_string(),
        password_hash: raw.password_hash.clone(),
        certificate,
    })
}

/// `http.authentication`: "required" (the default) or "none" (explicit pass-through).
fn authentication(raw: &RawHttp) -> Result<Authentication, ConfigError> {
    match raw.authentication.as_str() {
        "required" => Ok(Authentication::Required),
        "none" => Ok(Authentication::None),
        other => Err(ConfigError::new(
            "http.authentication",
            format!("unknown mode {other:?}"),
            "use \"required\" (the default) or \"none\" (unauthenticated pass-through)",
        )),
    }
}

/// With authentication required and no `[users]`, the generated `admin` account: its
/// password file, `admin.password` beside `tls.cert` unless `http.admin_password_file`
/// says otherwise. Nothing is read or written here (`pacsgate check` must not write).
fn generated_admin(
    raw: &RawHttp,
    authentication: Authentication,
    users: &[User],
    base: &Path,
    cert: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    let applies = authentication == Authentication::Required && users.is_empty();
    match (&raw.admin_password_file, applies) {
        (Some(_), false) => Err(ConfigError::new(
            "http.admin_password_file",
            "is set but no account is generated (users are configured, or authentication is \"none\")",
            "remove http.admin_password_file",
        )),
        (Some(p), true) if p.as_os_str().is_empty() => Err(ConfigError::new(
            "http.admin_password_file",
            "is empty",
            "name a file, or remove the key to use admin.password beside tls.cert",
        )),
        (Some(p), true) => Ok(Some(if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        })),
        (None, true) => Ok(Some(
            cert.parent()
                .unwrap_or(Path::new("."))
                .join(GENERATED_ADMIN_FILE),
        )),
        (None, false) => Ok(None),
    }
}

/// The rule the generated account gets when no rules are configured: any authenticated
/// user may do everything outside the built-in deny set.
fn authenticated_users_rule() -> Rule {
    Rule {
        name: "authenticated-users".to_string(),
        users: vec![UserMatch::AnyUser],
        sources: Vec::new(),
        methods: Vec::new(),
        // "/**" is a valid pattern; an empty list would match nothing.
        paths: Glob::parse("/**").into_iter().collect(),
        action: Action::Allow,
    }
}

fn rule(
    index: usize,
    raw: &RawRule,
    users: &[&str],
    authentication: Authentication,
) -> Result<Rule, ConfigError> {
    let key = |k: &str| format!("http.rules[{index}].{k}");
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| format!("rule {}", index + 1));
    let user_matches = raw
        .users
        .iter()
        .map(|u| match u.as_str() {
            "*" => Ok(UserMatch::AnyUser),
            "anonymous" if authentication == Authentication::Required => Err(ConfigError::new(
                key("users"),
                "names \"anonymous\" but http.authentication is \"required\"",
                "remove \"anonymous\", or set http.authentication = \"none\" to let unauthenticated requests through",
            )),
            "anonymous" => Ok(UserMatch::Anonymous),
            n if users.contains(&n) => Ok(UserMatch::Named(n.to_string())),
            n => Err(ConfigError::new(
                key("users"),
                format!("names unknown user {n:?}"),
                "define it under [users.NAME], or use \"*\" or \"anonymous\"",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if user_matches.is_empty() {
        return Err(ConfigError::new(
            key("users"),
            "is empty",
            "list user names, \"*\" or \"anonymous\"",
        ));
    }
    let sources = raw
        .sources
        .iter()
        .map(|s| cidr(&key("sources"), s))
        .collect::<Result<Vec<_>, _>>()?;
    let action = match raw.action.as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        other => {
            return Err(ConfigError::new(
                key("action"),
                format!("unknown action {other:?}"),
                "use \"allow\" or \"deny\"",
            ))
        }
    };
    Ok(Rule {
        name,
        users: user_matches,
        sources,
        methods: methods(&key("methods"), &raw.methods)?,
        paths: globs(&key("paths"), &raw.paths)?,
        action,
    })
}

/// `["*"]` (or nothing) means any method: an empty list.
fn methods(key: &str, raw: &[String]) -> Result<Vec<Method>, ConfigError> {
    if raw.is_empty() || raw.iter().any(|m| m == "*") {
        return Ok(Vec::new());
    }
    raw.iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::new(
                    key,
                    format!("{m:?} is not an HTTP method"),
                    "e.g. [\"GET\", \"POST\"]",
                )
            })
        })
        .collect()
}

fn globs(key: &str, raw: &[String]) -> Result<Vec<Glob>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            key,
            "is empty",
            "list path patterns such as \"/**\" or \"/instances/*/file\"",
        ));
    }
    raw.iter()
        .map(|p| {
            Glob::parse(p).map_err(|e| {
                ConfigError::new(
                    key,
                    e,
                    "patterns start with /; `*` is one segment, `**` any depth",
                )
            })
        })
        .collect()
}

fn lockout(key: &str, value: &str, max_lockout: Duration) -> Result<LockoutPolicy, ConfigError> {
    let r = rate(key, value)?;
    Ok(LockoutPolicy {
        failures: r.count.get(),
        window: r.period,
        max_lockout: max_lockout.max(r.period),
    })
}

fn response_headers(
    raw: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut merged: BTreeMap<String, String> = DEFAULT_RESPONSE_HEADERS
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    for (k, v) in raw {
        merged.insert(k.to_ascii_lowercase(), v.clone());
    }
    merged
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let bad = || {
                ConfigError::new(
                    format!("http.response_headers.{k}"),
                    "is not a valid header name and value",
                    "use a header name as key and a printable ASCII value (\"\" removes a default)",
                )
            };
            Ok((
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?,
                HeaderValue::from_str(&v).map_err(|_| bad())?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
