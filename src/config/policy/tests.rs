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

#[test]
fn authentication_is_required_by_default_with_a_generated_admin() {
    use crate::http::policy::{Authentication, PolicyConfig};
    let policy = |text: &str| -> PolicyConfig { parse(text).unwrap().http.unwrap().policy };
    // No users: the admin account beside tls.cert and the authenticated-users rule.
    let p = policy("");
    assert_eq!(p.authentication, Authentication::Required);
    assert_eq!(
        p.generated_admin.as_deref(),
        Some(Path::new("/etc/pacsgate/certs/admin.password"))
    );
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].name, "authenticated-users");
    // A loopback listener is no exception (a proxy in front of it is a common setup).
    let p = policy("[http]\nlisten = \"127.0.0.1:8443\"\n");
    assert!(p.generated_admin.is_some());
    let p = policy("[http]\nadmin_password_file = \"/run/pg/admin\"\n");
    assert_eq!(
        p.generated_admin.as_deref(),
        Some(Path::new("/run/pg/admin"))
    );
    // Rules may name the generated account.
    let p = policy("[[http.rules]]\nusers = [\"admin\"]\nmethods = [\"GET\"]\npaths = [\"/**\"]\n");
    assert_eq!(p.rules.len(), 1);
    // Configured users: nothing generated.
    let p = policy(&with_user(RULE));
    assert!(p.generated_admin.is_none());
    // Pass-through only when asked for.
    let p = policy("[http]\nauthentication = \"none\"\n");
    assert_eq!(p.authentication, Authentication::None);
    assert!(p.generated_admin.is_none() && p.rules.is_empty());
    assert!(crate::http::policy::open_warning(&p)
        .unwrap()
        .contains("http.authentication = \"none\""));
}

#[test]
fn authentication_errors_name_their_key() {
    assert_eq!(
        key_of("[http]\nauthentication = \"optional\"\n"),
        "http.authentication"
    );
    let anon = "[[http.rules]]\nusers = [\"anonymous\"]\nmethods = [\"GET\"]\npaths = [\"/**\"]\n";
    let e = parse(&with_user(&format!("{RULE}{anon}"))).unwrap_err();
    assert_eq!(e.key, "http.rules[1].users");
    assert!(e.to_string().contains("authentication = \"none\""), "{e}");
    assert!(parse(&with_user(&format!(
        "[http]\nauthentication = \"none\"\n{RULE}{anon}"
    )))
    .is_ok());
    assert_eq!(
        key_of(&with_user(&format!(
            "[http]\nadmin_password_file = \"a\"\n{RULE}"
        ))),
        "http.admin_password_file"
    );
    assert_eq!(
        key_of("[http]\nauthentication = \"none\"\nadmin_password_file = \"a\"\n"),
        "http.admin_password_file"
    );
}
