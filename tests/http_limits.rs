//! Throttling in front of Debian's Orthanc: a 1000-password brute force is cut off by the
//! failed-login lockout before it costs more than a handful of hashes, request rate limits
//! answer 429 with Retry-After at the configured rate, and cross-site state changes are
//! refused while same-origin ones (Orthanc Explorer through the gateway) pass.

mod support;

use std::time::{Duration, Instant};

use support::gateway::{curl, http_status};
use support::policy::{sample_policy, Site, ADMIN_PW, USER_PW};

/// One curl process, one keep-alive connection, one request per `(user, path)`; returns
/// the status codes.
fn burst(site: &Site, requests: &[(String, &str)]) -> Vec<u16> {
    burst_with(site, requests, &[])
}

fn burst_with(site: &Site, requests: &[(String, &str)], curl_args: &[&str]) -> Vec<u16> {
    let ca = site.ca.path.display().to_string();
    let mut config = String::new();
    for (i, (creds, path)) in requests.iter().enumerate() {
        if i > 0 {
            // `next` resets every option, so each request repeats them.
            config.push_str("next\n");
        }
        config.push_str(&format!(
            "url = \"{}\"\ncacert = \"{ca}\"\nuser = \"{creds}\"\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\n",
            site.url(path)
        ));
    }
    let file = site.dir().join("burst.curlrc");
    std::fs::write(&file, config).unwrap();
    let mut args = curl_args.to_vec();
    args.extend(["--config", file.to_str().unwrap()]);
    let (_, out, err) = curl(&args);
    let codes: Vec<u16> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(codes.len(), requests.len(), "curl: {err}");
    codes
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

#[test]
fn brute_force_of_1000_passwords_is_cut_off() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let guesses: Vec<(String, &str)> = (0..1000)
        .map(|i| (format!("admin:guess-{i:04}"), "/system"))
        .collect();
    let started = Instant::now();
    let codes = burst(&site, &guesses);
    let elapsed = started.elapsed();
    // Default: 5 failures per minute per user name, then a lockout.
    assert_eq!(count(&codes, 401), 5, "{codes:?}");
    assert_eq!(count(&codes, 429), 995);
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // Even the right password waits now: the name is locked, with a Retry-After.
    let ca = site.ca.path.display().to_string();
    let admin = format!("admin:{ADMIN_PW}");
    let (_, head, _) = curl(&[
        "--cacert",
        &ca,
        "-u",
        &admin,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &site.url("/system"),
    ]);
    assert!(head.contains(" 429"), "{head}");
    let retry: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "{head}");
    // Another user is not locked out; nothing of the attack reached Orthanc.
    assert_eq!(
        site.status(&["-u", &format!("user:{USER_PW}"), &site.url("/system")]),
        200
    );
    let seen = site.orthanc_requests();
    assert_eq!(
        seen.len(),
        2,
        "harness check and the user's request only: {seen:?}"
    );
}

#[test]
fn a_locked_account_gives_the_same_answer_to_the_right_password() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let admin = format!("admin:{ADMIN_PW}");
    // The real user is active: their password is verified and remembered.
    assert_eq!(site.status(&["-u", &admin, &site.url("/system")]), 200);
    // An attacker locks the name, then keeps guessing with the right password among
    // the wrong ones: every attempt must get the same 429, or the lockout is an oracle.
    let mut guesses: Vec<(String, &str)> = (0..20)
        .map(|i| (format!("admin:guess-{i:04}"), "/system"))
        .collect();
    guesses.insert(12, (admin.clone(), "/system"));
    let codes = burst(&site, &guesses);
    assert_eq!(codes[..5], [401; 5], "{codes:?}");
    assert_eq!(codes[5..], [429; 16], "{codes:?}");
    // The same from another address: the user name's lockout holds everywhere.
    let (_, out, err) = http_status(&[
        "--cacert",
        &site.ca.path.display().to_string(),
        "--interface",
        "127.0.0.2",
        "-u",
        &admin,
        &site.url("/system"),
    ]);
    assert_eq!(out, "429", "{err}");
}

#[test]
fn lockouts_do_not_tell_real_user_names_from_unknown_ones() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    // Failures for five names nobody has; then one attempt for each candidate name.
    // Had unknown names shared one lockout, it would be locked now while real names
    // still got 401: a user-name oracle.
    let mut attempts: Vec<(String, &str)> = (0..5)
        .map(|i| (format!("ghost{i}:pw"), "/system"))
        .collect();
    for name in ["admin", "nobody", "user", "root"] {
        attempts.push((format!("{name}:wrong"), "/system"));
    }
    let codes = burst(&site, &attempts);
    assert_eq!(codes, [401; 9], "{codes:?}");
}

#[test]
fn a_parallel_brute_force_hashes_little_more_than_the_limit() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let guesses: Vec<(String, &str)> = (0..300)
        .map(|i| (format!("admin:guess-{i:04}"), "/system"))
        .collect();
    let codes = burst_with(&site, &guesses, &["--parallel", "--parallel-max", "30"]);
    // Attempts already hashing when the lockout starts still finish: one per hashing slot.
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failed = count(&codes, 401);
    assert!(
        (5..=5 + slots).contains(&failed),
        "{failed} hashed: {codes:?}"
    );
    assert_eq!(failed + count(&codes, 429), 300);
}

#[test]
fn guessing_user_names_from_one_address_is_cut_off_too() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let guesses: Vec<(String, &str)> = (0..200)
        .map(|i| (format!("name{i}:pw{i}"), "/system"))
        .collect();
    let codes = burst(&site, &guesses);
    assert!(count(&codes, 401) <= 20, "{codes:?}");
    assert_eq!(count(&codes, 401) + count(&codes, 429), 200);
}

#[test]
fn request_rates_are_limited_per_user_and_per_route() {
    let limits = r#"
[http.rate_limits]
per_user = "2/s burst 10"
[[http.rate_limits.routes]]
paths = ["/tools/find"]
methods = ["POST"]
rate = "1/min burst 2"
"#;
    let site = Site::start(
        serde_json::json!({}),
        "",
        &format!("{}{limits}", sample_policy()),
    );
    let user = format!("user:{USER_PW}");
    let requests: Vec<(String, &str)> = (0..30).map(|_| (user.clone(), "/system")).collect();
    let started = Instant::now();
    let codes = burst(&site, &requests);
    // The burst of 10 plus at most what 2/s refills while the burst runs.
    let refill = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    let ok = count(&codes, 200);
    assert!(ok >= 10 && ok <= 10 + refill, "{ok} passed: {codes:?}");
    assert_eq!(ok + count(&codes, 429), 30);
    assert_eq!(codes[..10], [200; 10]);

    let admin = format!("admin:{ADMIN_PW}");
    let body = r#"{"Level":"Study","Query":{}}"#;
    let find = site.url("/tools/find");
    assert_eq!(site.status(&["-u", &admin, "-d", body, &find]), 200);
    assert_eq!(site.status(&["-u", &admin, "-d", body, &find]), 200);
    assert_eq!(site.status(&["-u", &admin, "-d", body, &find]), 429);
    // Other routes are not affected by the /tools/find budget.
    assert_eq!(site.status(&["-u", &admin, &site.url("/statistics")]), 200);
}

#[test]
fn cross_site_state_changes_are_refused_same_origin_allowed() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let admin = format!("admin:{ADMIN_PW}");
    let body = r#"{"Level":"Study","Query":{}}"#;
    let find = site.url("/tools/find");
    let same = format!("Origin: https://localhost:{}", site.port);
    let post = |headers: &[&str]| {
        let mut args = vec!["-u", admin.as_str(), "-d", body];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.push(&find);
        site.status(&args)
    };
    assert_eq!(post(&["Origin: https://evil.example"]), 403);
    assert_eq!(post(&["Origin: null"]), 403);
    assert_eq!(post(&["Sec-Fetch-Site: cross-site"]), 403);
    assert_eq!(post(&[&same, "Sec-Fetch-Site: same-origin"]), 200);
    assert_eq!(post(&[]), 200, "non-browser clients send no Origin");
    // Orthanc Explorer loads through the gateway, with the hardening headers.
    let ca = site.ca.path.display().to_string();
    let user = format!("user:{USER_PW}");
    let (_, head, _) = curl(&[
        "--cacert",
        &ca,
        "-u",
        &user,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &site.url("/app/explorer.html"),
    ]);
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("x-frame-options: sameorigin"), "{head}");
    let seen = site.orthanc_requests();
    assert_eq!(
        seen.iter()
            .filter(|r| r.starts_with("POST /tools/find"))
            .count(),
        2,
        "{seen:?}"
    );
}
