//! The policy phases of one request, in order: canonical target -> per-client limit ->
//! authenticate -> built-in deny set -> per-user limit -> CSRF -> rules -> per-route limit.
//! On success the request is rewritten for the PACS: canonical path, no client
//! credentials or method overrides, our own `X-Forwarded-User`, the PACS's own account.

use std::sync::Arc;
use std::time::Instant;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use super::canonical::{self, CanonicalPath, PathRefusal};
use super::error::Refusal;
use super::forward::ConnInfo;
use super::metered::RequestRecord;
use super::policy::identity::{self, AuthMethod, Caller, Verification};
use super::policy::limits::{IpKey, Throttled};
use super::policy::rules::{self, Verdict};
use super::policy::{Policy, PolicyHandle};

/// Headers through which clients (and Orthanc, for `X-HTTP-Method-Override`) change the
/// method a request is handled as; stripped so that the method checked is the one used.
static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
];
/// How long a login waits for a free password-hashing slot before getting 429.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
pub static X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Apply the policy to `req`, rewriting it for the PACS if it is admitted.
pub async fn admit<B>(
    req: &mut Request<B>,
    policy: &Policy,
    handle: &PolicyHandle,
    conn: &ConnInfo,
    record: &mut RequestRecord,
) -> Result<(), Refusal> {
    let path = canonical::canonicalize(req.uri().path())?;
    record.path = Some(path.as_str().to_string());
    if query_overrides_method(req.uri().query()) {
        return Err(Refusal::MethodOverrideQuery);
    }
    for h in &METHOD_OVERRIDES {
        req.headers_mut().remove(h);
    }
    let ip = conn.peer.ip();
    let cluster = handle.cluster();
    policy
        .limits
        .check_ip(cluster, ip, Instant::now())
        .await
        .map_err(throttled)?;
    let caller = authenticate(req.headers(), policy, handle, conn).await?;
    record.user = caller.name().map(str::to_string);
    record.auth = caller.method();
    let segments: Vec<&str> = path.segments().collect();
    if let Some(id) = policy.deny.refuses(&segments) {
        return Err(Refusal::Dangerous(id));
    }
    if let Caller::User { name, .. } = &caller {
        policy
            .limits
            .check_user(cluster, name, Instant::now())
            .await
            .map_err(throttled)?;
    }
    if policy.csrf && is_cross_site(req) {
        return Err(Refusal::CrossSite);
    }
    let rule = if policy.is_open() {
        "open".to_string()
    } else {
        match rules::evaluate(&policy.rules, &caller, ip, req.method(), &segments) {
            Verdict::Allow(name) => name.to_string(),
            Verdict::Deny(name) => return Err(Refusal::DeniedByRule(name.to_string())),
            Verdict::NoMatch if caller == Caller::Anonymous && policy.users.has_passwords() => {
                return Err(Refusal::Unauthenticated)
            }
            Verdict::NoMatch => return Err(Refusal::NoRule),
        }
    };
    record.rule = Some(rule);
    // Only admitted requests spend a route's shared budget.
    policy
        .limits
        .check_route(cluster, req.method(), &segments, Instant::now())
        .await
        .map_err(throttled)?;
    rewrite(req, &path, &caller, policy)
}

fn throttled(t: Throttled) -> Refusal {
    Refusal::Throttled {
        limit: t.limit,
        retry_after: t.retry_after,
    }
}

/// Basic credentials if sent (they must be right), else the client certificate's user,
/// else anonymous. Lockouts are checked first: before the cache and before any hashing.
async fn authenticate(
    headers: &HeaderMap,
    policy: &Policy,
    handle: &PolicyHandle,
    conn: &ConnInfo,
) -> Result<Caller, Refusal> {
    if policy.users.is_empty() {
        // No users configured: Authorization belongs to the PACS (pass-through mode).
        return Ok(Caller::Anonymous);
    }
    let Some(value) = headers.get(AUTHORIZATION) else {
        let by_cert = conn
            .identity
            .as_deref()
            .and_then(|id| policy.users.by_certificate(id));
        return Ok(match by_cert {
            Some(name) => Caller::User {
                name,
                method: AuthMethod::Certificate,
            },
            None => Caller::Anonymous,
        });
    };
    let creds = identity::parse_basic(value).ok_or(Refusal::BadCredentials)?;
    let ip_key = IpKey::of(conn.peer.ip());
    let user_key = super::policy::lockouts::UserKey::of(&creds.user, policy, handle);
    let (ip_ref, user_ref) = (&ip_key, &user_key);
    let locked = |now| async move {
        handle
            .locked(ip_ref, user_ref, now)
            .await
            .map_err(Refusal::LockedOut)
    };
    // The lockout comes before the cache of verified passwords: while a key is locked,
    // every attempt gets the same 429, so a locked account is no oracle (a cached right
    // password answering 200 among 429s would allow guessing at full speed).
    let now = Instant::now();
    locked(now).await?;
    if let Some(name) = policy.users.cached(&creds, now) {
        return Ok(Caller::User {
            name,
            method: AuthMethod::Password,
        });
    }
    // Wait briefly for a hashing slot; a queue that does not move means a login flood.
    let permit = tokio::time::timeout(HASH_QUEUE_WAIT, handle.hashing.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(Refusal::Throttled {
            limit: "password hashing",
            retry_after: std::time::Duration::from_secs(1),
        })?;
    // Attempts queued behind the ones that caused a lockout must not hash either.
    locked(Instant::now()).await?;
    let users = policy.users.clone();
    let verified = tokio::task::spawn_blocking(move || users.verify(&creds, Instant::now()))
        .await
        .unwrap_or(Verification::Failed);
    drop(permit);
    match verified {
        Verification::Cached(name) | Verification::Verified(name) => {
            handle.succeeded(&user_key).await;
            Ok(Caller::User {
                name,
                method: AuthMethod::Password,
            })
        }
        Verification::Failed => {
            handle
                .failed(policy, &ip_key, &user_key, Instant::now())
                .await;
            Err(Refusal::BadCredentials)
        }
    }
}

/// Orthanc treats `GET ...?_method=DELETE` as DELETE (Ruby-on-Rails style faking), so a
/// `_method` parameter would change the method behind the rules' back. Orthanc 1.10.1
/// compares raw names split on `&` only; older versions and other parsers decode names,
/// split on `;`, stop at NUL or take `_method[]`. Rather than model each, any query that
/// contains `_method` once fully decoded (every level of `%25` encoding, `+` as space,
/// any case) is refused: no Orthanc route takes such a parameter.
fn query_overrides_method(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    let mut text = q.replace('+', " ");
    // Each round undoes one level of encoding; a few rounds reach a fixed point for any
    // spelling short enough to matter (`%255F` -> `%5F` -> `_`).
    for _ in 0..4 {
        if text.to_ascii_lowercase().contains("_method") {
            return true;
        }
        let decoded = percent_decode_lossy(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    text.to_ascii_lowercase().contains("_method")
}

fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A state-changing request a browser marks as cross-site (Fetch Metadata), or whose
/// `Origin` is not the host it was sent to (OWASP CSRF cheat sheet, "verifying origin").
fn is_cross_site<B>(req: &Request<B>) -> bool {
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return false;
    }
    let headers = req.headers();
    if headers
        .get(&SEC_FETCH_SITE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix("https://"))
        .map(|h| h.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !same_host(o, &h),
        // `Origin: null`, an http:// origin, or no Host to compare with.
        _ => true,
    }
}

fn same_host(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.strip_suffix(":443").unwrap_or(s).to_ascii_lowercase();
    norm(a) == norm(b)
}

fn rewrite<B>(
    req: &mut Request<B>,
    path: &CanonicalPath,
    caller: &Caller,
    policy: &Policy,
) -> Result<(), Refusal> {
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(target).map_err(|_| PathRefusal::BadEscape)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| PathRefusal::NotAPath)?;
    let headers = req.headers_mut();
    if !policy.users.is_empty() {
        // The client's credentials were for us; the PACS never sees them.
        headers.remove(AUTHORIZATION);
    }
    headers.remove(&X_FORWARDED_USER);
    if let Some(name) = caller.name().and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert(X_FORWARDED_USER.clone(), name);
    }
    if let Some(auth) = &policy.upstream_authorization {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    Ok(())
}

/// Add the configured hardening headers to a response.
pub fn harden(headers: &mut HeaderMap, policy: &Arc<Policy>) {
    for (name, value) in &policy.response_headers {
        headers.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/instances");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn cross_site_state_changes_are_detected() {
        let host = ("host", "pacs.example:8443");
        assert!(!is_cross_site(&req("POST", &[host])));
        assert!(!is_cross_site(&req(
            "POST",
            &[host, ("origin", "https://pacs.example:8443")]
        )));
        assert!(is_cross_site(&req(
            "POST",
            &[host, ("origin", "https://evil.example")]
        )));
        assert!(is_cross_site(&req("POST", &[host, ("origin", "null")])));
        assert!(is_cross_site(&req(
            "POST",
            &[host, ("origin", "http://pacs.example:8443")]
        )));
        assert!(is_cross_site(&req(
            "DELETE",
            &[host, ("sec-fetch-site", "cross-site")]
        )));
        assert!(!is_cross_site(&req(
            "GET",
            &[host, ("origin", "https://evil.example")]
        )));
        assert!(!is_cross_site(&req(
            "POST",
            &[("host", "pacs:443"), ("origin", "https://pacs")]
        )));
    }

    #[test]
    fn method_faking_in_the_query_is_detected() {
        assert!(query_overrides_method(Some("_method=DELETE")));
        assert!(query_overrides_method(Some("a=1&%5Fmethod=delete")));
        assert!(query_overrides_method(Some("_METHOD")));
        for spelled in [
            "_method%00=DELETE",
            "x=1;_method=DELETE",
            "_method[]=DELETE",
            "%255Fmethod=DELETE",
            "%25255fmethod=DELETE",
            "%5f%6d%65%74%68%6f%64=PUT",
            "a=b&_Method",
        ] {
            assert!(query_overrides_method(Some(spelled)), "{spelled}");
        }
        assert!(!query_overrides_method(Some("expand&since=10")));
        assert!(!query_overrides_method(Some("method=x&expand")));
        assert!(!query_overrides_method(None));
    }
}
