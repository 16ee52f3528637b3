use std::net::IpAddr;
use std::sync::Arc;

use http::Method;
use proptest::prelude::*;

use super::*;
use crate::config::DenySet;
use crate::http::canonical::canonicalize;
use crate::http::policy::identity::AuthMethod;

fn user(name: &str) -> Caller {
    Caller::User {
        name: Arc::from(name),
        method: AuthMethod::Password,
    }
}

fn segs(p: &str) -> Vec<String> {
    canonicalize(p)
        .unwrap()
        .segments()
        .map(str::to_string)
        .collect()
}

fn glob_matches(g: &str, p: &str) -> bool {
    let s = segs(p);
    let v: Vec<&str> = s.iter().map(String::as_str).collect();
    Glob::parse(g).unwrap().matches(&v)
}

/// The Orthanc book's sample: admin everything from 127.0.0.1, user GET only.
fn sample() -> Vec<Rule> {
    vec![
        Rule {
            name: "admin-local".into(),
            users: vec![UserMatch::Named("admin".into())],
            sources: vec!["127.0.0.1/32".parse().unwrap()],
            methods: vec![],
            paths: vec![Glob::parse("/**").unwrap()],
            action: Action::Allow,
        },
        Rule {
            name: "user-read".into(),
            users: vec![UserMatch::Named("user".into())],
            sources: vec![],
            methods: vec![Method::GET],
            paths: vec![Glob::parse("/**").unwrap()],
            action: Action::Allow,
        },
    ]
}

fn decide<'a>(rules: &'a [Rule], c: &Caller, ip: &str, m: Method, p: &str) -> Verdict<'a> {
    let ip: IpAddr = ip.parse().unwrap();
    let path = canonicalize(p).unwrap();
    let segments: Vec<&str> = path.segments().collect();
    evaluate(rules, c, ip, &m, &segments)
}

#[test]
fn globs() {
    assert!(glob_matches("/**", "/"));
    assert!(glob_matches("/**", "/a/b/c"));
    assert!(glob_matches("/instances/*/file", "/instances/abc/file"));
    assert!(!glob_matches(
        "/instances/*/file",
        "/instances/abc/def/file"
    ));
    assert!(glob_matches("/instances/**/file", "/instances/a/b/file"));
    assert!(glob_matches("/app/**", "/app"));
    assert!(glob_matches("/Tools/FIND", "/tools/find"));
    assert!(!glob_matches("/tools", "/tools/find"));
    assert!(glob_matches("/tools/log-level*", "/tools/log-level-http"));
    assert!(glob_matches("/tools/log-level*", "/tools/Log-Level"));
    assert!(!glob_matches("/tools/log-level*", "/tools/log"));
    for bad in ["tools", "/a*b", "/*a", "/a%2e*", "/a/%2e", "/**/**", "/./a"] {
        assert!(Glob::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn orthanc_book_sample_policy() {
    let rules = sample();
    let admin = user("admin");
    let u = user("user");
    assert_eq!(
        decide(&rules, &u, "10.0.0.1", Method::GET, "/patients"),
        Verdict::Allow("user-read")
    );
    assert_eq!(
        decide(&rules, &u, "127.0.0.1", Method::POST, "/tools/find"),
        Verdict::NoMatch
    );
    assert_eq!(
        decide(&rules, &admin, "127.0.0.1", Method::POST, "/tools/find"),
        Verdict::Allow("admin-local")
    );
    assert_eq!(
        decide(&rules, &admin, "::ffff:127.0.0.1", Method::DELETE, "/x"),
        Verdict::Allow("admin-local")
    );
    assert_eq!(
        decide(&rules, &admin, "127.0.0.2", Method::POST, "/tools/find"),
        Verdict::NoMatch
    );
    assert_eq!(
        decide(&rules, &Caller::Anonymous, "127.0.0.1", Method::GET, "/"),
        Verdict::NoMatch
    );
}

#[test]
fn first_match_wins_and_deny_rules_stop() {
    let mut rules = sample();
    rules.insert(
        0,
        Rule {
            name: "no-delete".into(),
            users: vec![UserMatch::AnyUser],
            sources: vec![],
            methods: vec![Method::DELETE],
            paths: vec![Glob::parse("/patients/**").unwrap()],
            action: Action::Deny,
        },
    );
    let admin = user("admin");
    assert_eq!(
        decide(&rules, &admin, "127.0.0.1", Method::DELETE, "/patients/1"),
        Verdict::Deny("no-delete")
    );
    assert_eq!(
        decide(&rules, &admin, "127.0.0.1", Method::DELETE, "/studies/1"),
        Verdict::Allow("admin-local")
    );
}

const DENIED: &[&str] = &[
    "tools/execute-script",
    "instances/0a1b/export",
    "series/x/export",
    "webdav",
    "webdav/a/b",
];

/// Spell `path` with random case, percent-encoding, dot segments and doubled slashes.
fn spell(path: &str, bits: &[u8]) -> String {
    let mut out = String::new();
    for (i, seg) in path.split('/').enumerate() {
        let b = bits.get(i % bits.len()).copied().unwrap_or(0);
        out.push('/');
        if b & 1 == 1 {
            out.push_str("./");
        }
        if b & 2 == 2 {
            out.push_str("zz/../");
        }
        if b & 4 == 4 {
            out.push('/');
        }
        for (j, c) in seg.chars().enumerate() {
            let k = bits.get((i + j) % bits.len()).copied().unwrap_or(0);
            let c = if k & 8 == 8 {
                c.to_ascii_uppercase()
            } else {
                c
            };
            if k & 16 == 16 {
                out.push_str(&format!("%{:02X}", c as u32));
            } else if k & 32 == 32 {
                out.push_str(&format!("%{:02x}", c as u32));
            } else {
                out.push(c);
            }
        }
    }
    if bits.first().is_some_and(|b| b & 64 == 64) {
        out.push('/');
    }
    out
}

proptest! {
    /// No spelling of a denied endpoint gets past the deny set, whatever the rules allow:
    /// it is refused by the canonicalizer (400) or by the deny set (403).
    #[test]
    fn no_spelling_of_a_denied_endpoint_is_allowed(
        which in 0..DENIED.len(),
        bits in proptest::collection::vec(any::<u8>(), 1..12),
    ) {
        let spelled = spell(DENIED[which], &bits);
        let deny = DenySet::new(&[]);
        if let Ok(p) = canonicalize(&spelled) {
            let s: Vec<&str> = p.segments().collect();
            prop_assert!(deny.refuses(&s).is_some(), "{} -> {} slipped through", spelled, p);
        }
    }

    #[test]
    fn rule_paths_see_through_spellings(bits in proptest::collection::vec(any::<u8>(), 1..12)) {
        let spelled = spell("patients/abc/protected", &bits);
        if let Ok(p) = canonicalize(&spelled) {
            let s: Vec<&str> = p.segments().collect();
            prop_assert!(Glob::parse("/patients/*/protected").unwrap().matches(&s));
        }
    }
}
