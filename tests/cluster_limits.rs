//! Two pacsgate replicas sharing limits through one real redis-server (password from a
//! 0600 file) in front of one real Orthanc. The attacker alternates between replicas:
//! a brute force is cut off after the configured total, not per replica; the per-IP,
//! per-user and DICOM association rates are one budget across replicas. What lands in
//! Redis is bounded: hashed keys of fixed length whatever the user name, each with a TTL.

mod support;

use support::cluster::{Cluster, PREFIX};
use support::dicom::{dcmtk, dcmtk_tls, ECHOSCU};
use support::policy::{ADMIN_PW, USER_PW};

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

#[test]
fn brute_force_alternating_between_replicas_is_locked_after_the_configured_total() {
    let c = Cluster::start(2, "", "");
    // Default: 5 failures per minute per user name. Twenty guesses, alternating.
    let codes: Vec<u16> = (0..20)
        .map(|i| c.status(i % 2, Some(&format!("admin:guess-{i}")), "/system"))
        .collect();
    assert_eq!(count(&codes, 401), 5, "{codes:?}");
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert_eq!(count(&codes, 429), 15, "{codes:?}");
    // The right password gets the same answer on both replicas: no lockout oracle.
    let admin = format!("admin:{ADMIN_PW}");
    for i in 0..2 {
        assert_eq!(c.status(i, Some(&admin), "/system"), 429, "replica {i}");
    }
    // Another user is not locked, and a certificate login never is.
    assert_eq!(
        c.status(1, Some(&format!("user:{USER_PW}")), "/system"),
        200
    );
    assert_eq!(c.status_with_certificate(0, "/system"), 200);
}

#[test]
fn huge_and_many_user_names_leave_bounded_keys_that_expire() {
    let mut c = Cluster::start(1, "", "");
    // Names near the longest the gateway parses (1024 base64 characters of
    // credentials), each distinct: attacker-chosen, so they must not size the keys.
    for i in 0..30 {
        let name = format!("{i:04}{}", "n".repeat(700));
        let code = c.status(0, Some(&format!("{name}:x")), "/system");
        assert!(code == 401 || code == 429, "{code}");
    }
    let redis = c.redis();
    let keys = redis.keys(PREFIX);
    assert!(!keys.is_empty());
    // PREFIX:KIND:32 hex digits; nothing of the name itself.
    for k in &keys {
        assert!(k.len() <= PREFIX.len() + 1 + 9 + 1 + 32, "{k}");
        assert!(!k.contains("nnnn"), "{k}");
        let ttl: i64 = redis.cli(&["PTTL", k]).parse().unwrap();
        assert!(
            ttl > 0,
            "{k} has no TTL ({ttl}): memory would grow without bound"
        );
    }
    // One key per distinct name at most, plus the client network's lockout and rates.
    assert!(keys.len() <= 30 + 4, "{}", keys.len());
}

#[test]
fn per_ip_rate_is_one_budget_across_replicas() {
    let c = Cluster::start(2, "[http.rate_limits]\nper_ip = \"1/h burst 6\"\n", "");
    let codes: Vec<u16> = (0..14).map(|i| c.status(i % 2, None, "/system")).collect();
    // Anonymous: 401 while the budget lasts, then 429 from both.
    assert_eq!(&codes[..6], &[401; 6], "{codes:?}");
    assert_eq!(&codes[6..], &[429; 8], "{codes:?}");
}

#[test]
fn per_user_rate_is_one_budget_across_replicas() {
    let c = Cluster::start(2, "[http.rate_limits]\nper_user = \"1/h burst 4\"\n", "");
    let user = format!("user:{USER_PW}");
    let codes: Vec<u16> = (0..10)
        .map(|i| c.status(i % 2, Some(&user), "/system"))
        .collect();
    assert_eq!(&codes[..4], &[200; 4], "{codes:?}");
    assert_eq!(&codes[4..], &[429; 6], "{codes:?}");
    // Per user: the admin still has its own budget.
    assert_eq!(
        c.status(0, Some(&format!("admin:{ADMIN_PW}")), "/system"),
        200
    );
}

#[test]
fn dicom_association_rate_is_one_budget_across_replicas() {
    let c = Cluster::start(2, "", "association_rate_per_ip = \"1/h burst 3\"\n");
    let mut args = vec!["-aec".to_string(), "ORTHANC".into()];
    args.extend(dcmtk_tls(&c.ca.path, None));
    let outcomes: Vec<bool> = (0..8)
        .map(|i| {
            let (status, out) = dcmtk(ECHOSCU, c.replicas[i % 2].dicom, &args, &[]);
            assert!(
                status.success() || out.contains("Rejected Transient"),
                "{out}"
            );
            status.success()
        })
        .collect();
    assert_eq!(
        outcomes,
        [true, true, true, false, false, false, false, false]
    );
}

#[test]
fn leased_requests_never_exceed_the_shared_budget() {
    // Burst 64: each replica leases 4 requests per Redis call (`limit::shared`).
    let c = Cluster::start(2, "[http.rate_limits]\nper_ip = \"1/h burst 64\"\n", "");
    let codes: Vec<u16> = (0..90).map(|i| c.status(i % 2, None, "/system")).collect();
    let admitted = count(&codes, 401);
    assert_eq!(admitted + count(&codes, 429), 90, "{codes:?}");
    // At most the budget; at most one unused lease (3 requests) per replica lost.
    assert!(
        (64 - 2 * 3..=64).contains(&admitted),
        "{admitted}: {codes:?}"
    );
}
