//! The Orthanc book's sample policy enforced by the gateway in front of Debian's Orthanc
//! 1.10.1: user may GET, not POST; admin may POST from 127.0.0.1 but nothing from another
//! source address; missing or wrong credentials get 401 and never reach Orthanc; one audit
//! record per request, without query strings.

mod support;

use support::policy::{sample_policy, Site, ADMIN_PW, USER_PW};

fn auth(user: &str, pw: &str) -> String {
    format!("{user}:{pw}")
}

#[test]
fn orthanc_book_sample_policy() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let user = auth("user", USER_PW);
    let admin = auth("admin", ADMIN_PW);
    let find = site.url("/tools/find");
    let body = r#"{"Level":"Patient","Query":{}}"#;

    assert_eq!(site.status(&["-u", &user, &site.url("/system")]), 200);
    assert_eq!(site.status(&["-u", &user, "-d", body, &find]), 403);
    assert_eq!(
        site.status(&["-u", &user, "-X", "DELETE", &site.url("/patients/x")]),
        403
    );
    assert_eq!(site.status(&["-u", &admin, "-d", body, &find]), 200);
    // Same admin, another source address: no rule matches.
    let other = ["--interface", "127.0.0.2"];
    assert_eq!(
        site.status(&[&other[..], &["-u", &admin, &site.url("/system")]].concat()),
        403
    );
    assert_eq!(
        site.status(&[&other[..], &["-u", &admin, "-d", body, &find]].concat()),
        403
    );
    // The user rule is not tied to a source.
    assert_eq!(
        site.status(&[&other[..], &["-u", &user, &site.url("/system")]].concat()),
        200
    );

    let seen = site.orthanc_requests();
    assert_eq!(
        seen.iter()
            .filter(|r| r.starts_with("POST /tools/find"))
            .count(),
        1,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|r| r.starts_with("DELETE")), "{seen:?}");
    // Two through the gateway, one from the harness waiting for Orthanc to start.
    assert_eq!(
        seen.iter().filter(|r| r.starts_with("GET /system")).count(),
        3,
        "{seen:?}"
    );
}

#[test]
fn missing_or_wrong_credentials_get_401_and_never_reach_orthanc() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let ca = site.ca.path.display().to_string();
    let (status, head, err) = support::gateway::curl(&[
        "--cacert",
        &ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &site.url("/system"),
    ]);
    assert!(status.success(), "{err}");
    assert!(
        head.starts_with("HTTP/2 401") || head.starts_with("HTTP/1.1 401"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"pacsgate\""),
        "{head}"
    );
    for creds in ["user:wrong", "nobody:whatever", "admin:", ":"] {
        assert_eq!(
            site.status(&["-u", creds, &site.url("/system")]),
            401,
            "{creds}"
        );
    }
    assert_eq!(
        site.status(&["-H", "Authorization: Bearer abc", &site.url("/system")]),
        401
    );
    // Only the harness's readiness check reached Orthanc.
    assert_eq!(site.orthanc_requests(), ["GET /system"]);
    // Right credentials still work afterwards (fewer failures than the lockout threshold).
    assert_eq!(
        site.status(&["-u", &auth("user", USER_PW), &site.url("/system")]),
        200
    );
}

#[test]
fn every_request_is_audited_without_secrets_or_query_strings() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let user = auth("user", USER_PW);
    assert_eq!(
        site.status(&["-u", &user, &site.url("/patients?token=s3cr3t-q")]),
        200
    );
    assert_eq!(
        site.status(&["-u", &user, "-d", "{}", &site.url("/tools/find")]),
        403
    );
    assert_eq!(
        site.status(&["-u", "user:wrong-pw-xyz", &site.url("/system")]),
        401
    );
    let records = site.audit();
    assert_eq!(records.len(), 3, "{records:?}");
    let ok = &records[0];
    assert_eq!(ok["kind"], "http.request");
    assert_eq!(ok["user"], "user");
    assert_eq!(ok["auth"], "password");
    assert_eq!(ok["client"], "127.0.0.1");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/patients");
    assert_eq!(ok["rule"], "user-read");
    assert_eq!(ok["status"], 200);
    assert!(ok["bytes_out"].as_u64().unwrap_or(0) > 0, "{ok}");
    assert!(ok["duration_ms"].as_f64().is_some(), "{ok}");
    assert_eq!(records[1]["status"], 403);
    // Refused before the body was read: nothing went in.
    assert_eq!(records[1]["bytes_in"], 0);
    assert!(
        records[1]["denied"]
            .as_str()
            .is_some_and(|d| d.contains("no rule")),
        "{}",
        records[1]
    );
    assert_eq!(records[2]["status"], 401);
    let text = std::fs::read_to_string(site.dir().join("audit.jsonl")).unwrap();
    for secret in ["s3cr3t-q", "token", "wrong-pw-xyz", USER_PW] {
        assert!(!text.contains(secret), "{secret} in the audit: {text}");
    }
}
