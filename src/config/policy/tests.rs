use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::http::policy::identity::hash_password;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/pacsgate"))
}

fn key_of(text: &str) -> String {
    parse(text).map(|_| ()).unwrap_err().key
}

fn with_user(rest: &str) -> String {
    let phc = hash_password("pw", &[3; 16]).unwrap();
    format!("[users.admin]\npassword_hash = \"{phc}\"\n{rest}")
}

const RULE: &str = "[[http.rules]]\nusers = [\"admin\"]\npaths = [\"/**\"]\n";

#[test]
fn a_valid_policy_parses_with_defaults() {
    let c = parse(&with_user(RULE)).unwrap();
    let p = c.http.unwrap().policy;
    assert_eq!(p.users.len(), 1);
    assert_eq!(p.rules[0].name, "rule 1");
    assert!(p.rules[0].methods.is_empty());
    assert!(p.csrf);
    assert_eq!(p.auth_failures_per_user.failures, 5);
    assert_eq!(p.response_headers.len(), 4);
}

#[test]
fn policy_errors_name_their_key() {
    assert_eq!(
        key_of("[users.admin]\npassword_hash = \"plain\"\n"),
        "users.admin.password_hash"
    );
    assert_eq!(key_of("[users.admin]\n"), "users.admin");
    assert_eq!(key_of(&with_user("")), "http.rules");
    assert_eq!(
        key_of(&with_user(
            "[[http.rules]]\nusers = [\"ghost\"]\npaths = [\"/**\"]\n"
        )),
        "http.rules[0].users"
    );
    assert_eq!(
        key_of(&with_user("[[http.rules]]\npaths = [\"/a*b\"]\n")),
        "http.rules[0].paths"
    );
    assert_eq!(
        key_of(&with_user(
            "[[http.rules]]\nsources = [\"nowhere\"]\npaths = [\"/**\"]\n"
        )),
        "http.rules[0].sources"
    );
    assert_eq!(
        key_of(&with_user(
            "[[http.rules]]\naction = \"maybe\"\npaths = [\"/**\"]\n"
        )),
        "http.rules[0].action"
    );
    assert_eq!(
        key_of("[http]\nallow_dangerous = [\"everything\"]\n"),
        "http.allow_dangerous"
    );
    assert_eq!(
        key_of("[http.rate_limits]\nper_ip = \"lots\"\n"),
        "http.rate_limits.per_ip"
    );
    assert_eq!(
        key_of("[users.bob]\ncertificate = \"sha256:12\"\n"),
        "users.bob.certificate"
    );
    assert!(key_of("[http.rules]\nx = 1\n").starts_with("http.rules"));
    assert_eq!(
        key_of(
            &format!("[users.site]\ncertificate = \"site.example\"\n{RULE}")
                .replace("admin", "site")
        ),
        "users.site.certificate"
    );
}
