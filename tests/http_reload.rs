//! SIGHUP swaps users, rules and limits at once; a new configuration with an error is
//! refused with the reason logged, and the old policy keeps serving.

mod support;

use std::time::Duration;

use support::policy::{sample_policy, Site, ADMIN_PW, USER_PW};

#[test]
fn sighup_swaps_the_policy_and_a_bad_one_is_refused() {
    let mut site = Site::start(serde_json::json!({}), "", &sample_policy());
    let user = format!("user:{USER_PW}");
    let admin = format!("admin:{ADMIN_PW}");
    let system = site.url("/system");
    assert_eq!(site.status(&["-u", &user, &system]), 200);

    let path = site.gateway.config.clone();
    let original = std::fs::read_to_string(&path).unwrap();
    let admin_only = original.replace("users = [\"user\"]", "users = [\"admin\"]");
    assert_ne!(admin_only, original);
    std::fs::write(&path, &admin_only).unwrap();
    site.gateway.proc.signal("HUP");
    site.gateway
        .proc
        .wait_for_output("configuration reloaded", Duration::from_secs(30));
    assert_eq!(site.status(&["-u", &user, &system]), 403);
    assert_eq!(site.status(&["-u", &admin, &system]), 200);

    let broken = format!("{admin_only}\n[[http.rules]]\nusers = [\"ghost\"]\npaths = [\"/**\"]\n");
    std::fs::write(&path, broken).unwrap();
    site.gateway.proc.signal("HUP");
    site.gateway
        .proc
        .wait_for_output("configuration reload failed", Duration::from_secs(30));
    let log = site.gateway.log();
    assert!(log.contains("ghost"), "the reason names the problem: {log}");
    assert_eq!(site.status(&["-u", &user, &system]), 403);
    assert_eq!(site.status(&["-u", &admin, &system]), 200);
}
