//! `[cluster]` when Redis fails, with real processes: redis-server killed mid-test, fakes
//! that answer garbage or nothing. The documented policy (README, "Shared limits"):
//! password logins fail closed (429, the locked-out answer, right password or not),
//! certificate logins are unaffected, rates fall back to each replica's own limiter (whose
//! state is that replica's own traffic); `pacsgate_cluster_degraded` is 1 and failed calls
//! are counted; no request waits longer than `cluster.timeout` per decision. When Redis is
//! back, shared limits resume. Bad `[cluster]` configuration exits 64 before binding.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{Cluster, PREFIX};
use support::gateway::run_expecting_exit;
use support::policy::{ADMIN_PW, USER_PW};
use support::process::wait_until;
use support::redis::FakeRedis;

#[test]
fn redis_outage_fails_logins_closed_keeps_local_rates_and_recovers() {
    let mut c = Cluster::start(2, "[http.rate_limits]\nper_ip = \"1/h burst 30\"\n", "");
    let admin = format!("admin:{ADMIN_PW}");
    let user = format!("user:{USER_PW}");
    // Requests each replica has seen: its local per-IP bucket counts every one of them.
    let mut seen = [0usize; 2];
    let mut get = |c: &Cluster, i: usize, creds: Option<&str>| {
        seen[i] += 1;
        c.status(i, creds, "/system")
    };
    assert_eq!(get(&c, 0, Some(&admin)), 200);
    assert_eq!(get(&c, 1, Some(&admin)), 200);
    assert_eq!(c.replicas[0].metric("pacsgate_cluster_degraded"), 0.0);

    c.redis().stop();
    // Fail closed: the right password is refused like a locked account, on both.
    assert_eq!(get(&c, 0, Some(&admin)), 429);
    assert_eq!(get(&c, 1, Some(&admin)), 429);
    assert_eq!(get(&c, 1, Some(&user)), 429);
    // Certificate logins involve no lockout and pass.
    seen[0] += 1;
    assert_eq!(c.status_with_certificate(0, "/system"), 200);
    let r0 = &c.replicas[0];
    assert_eq!(r0.metric("pacsgate_cluster_degraded"), 1.0);
    let failures = r0.metrics();
    assert!(
        failures.contains("pacsgate_cluster_redis_failures_total{reason=\"error\"}")
            && !failures.contains("pacsgate_cluster_redis_failures_total{reason=\"error\"} 0\n"),
        "{failures}"
    );
    assert!(r0.gateway.log().contains("shared limits degraded"));

    // Rates: each replica's own limiter, from its own count (per replica, not shared).
    for (i, already) in seen.into_iter().enumerate() {
        let mut admitted = 0;
        while c.status(i, None, "/system") == 401 {
            admitted += 1;
            assert!(admitted <= 30, "replica {i} is not rate limiting");
        }
        assert_eq!(admitted, 30 - already, "replica {i}");
    }

    c.redis().restart();
    for i in 0..2 {
        wait_until("shared limits to resume", Duration::from_secs(30), || {
            c.status(i, Some(&admin), "/system") == 200
        });
        assert_eq!(c.replicas[i].metric("pacsgate_cluster_degraded"), 0.0);
    }
    assert!(c.replicas[0].gateway.log().contains("Redis answers again"));
    // Shared lockouts again: five failures in total across both replicas.
    let codes: Vec<u16> = (0..10)
        .map(|i| c.status(i % 2, Some(&format!("user:wrong-{i}")), "/system"))
        .collect();
    assert_eq!(codes, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
}

#[test]
fn garbage_or_silent_redis_counts_as_unavailable_and_never_hangs_a_request() {
    let mut c = Cluster::without_redis();
    let fakes: [Option<&'static [u8]>; 5] = [
        Some(b"+OK\r\n"),
        Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        Some(b"$2147483647\r\n"),
        Some(b"*2\r\n:1\r\n"),
        None,
    ];
    let admin = format!("admin:{ADMIN_PW}");
    for reply in fakes {
        let fake = FakeRedis::start(reply);
        let url = format!("redis://127.0.0.1:{}", fake.port);
        c.add_replica(
            &url,
            "[http.rate_limits]\nper_ip = \"100/s\"\n",
            "",
            "timeout = \"100ms\"",
        );
        let i = c.replicas.len() - 1;
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(c.status(i, Some(&admin), "/system"), 429, "{reply:?}");
            assert_eq!(c.status(i, None, "/system"), 401, "{reply:?}");
            assert_eq!(c.status_with_certificate(i, "/system"), 200, "{reply:?}");
            // Three requests, at most two Redis decisions each, each bounded by 100 ms
            // (curl and TLS take the rest).
            let took = started.elapsed();
            assert!(took < Duration::from_secs(3), "{reply:?}: {took:?}");
        }
        let r = &c.replicas[i];
        assert_eq!(r.metric("pacsgate_cluster_degraded"), 1.0, "{reply:?}");
        let log = r.gateway.log();
        assert!(log.contains("shared limits degraded"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn bad_cluster_configuration_exits_64_naming_the_key() {
    let c = Cluster::without_redis();
    let dir = c.dir.path();
    let ports = (1, 2, 3);
    let good = c.config("redis://127.0.0.1:6379", ports, "", "", "");
    let (code, out) = run_expecting_exit(dir, &good, "check");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cluster: limits and lockouts shared through redis://127.0.0.1:6379"),
        "{out}"
    );
    assert!(out.contains("password logins are refused"), "{out}");
    assert!(!out.contains("redis-Secret"), "{out}");

    let with_secret = good.replace(
        "redis://127.0.0.1:6379",
        "redis://:hunter2-secret@127.0.0.1:6379",
    );
    for sub in ["check", "run"] {
        let (code, out) = run_expecting_exit(dir, &with_secret, sub);
        assert_eq!(code, Some(64), "{sub}: {out}");
        assert!(
            out.contains("cluster.redis") && out.contains("redis_password_file"),
            "{out}"
        );
        assert!(!out.contains("hunter2"), "the password was echoed: {out}");
    }

    // `config()` writes the password file 0600; loosen it afterwards.
    let toml = c.config("redis://127.0.0.1:6379", ports, "", "", "");
    let loose = dir.join("redis.password");
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for sub in ["check", "run"] {
        let (code, out) = run_expecting_exit(dir, &toml, sub);
        assert_eq!(code, Some(64), "{sub}: {out}");
        assert!(
            out.contains("cluster.redis_password_file") && out.contains("chmod 600"),
            "{out}"
        );
    }

    for (extra, key) in [
        ("timeout = \"30s\"", "cluster.timeout"),
        ("key_prefix = \"has space\"", "cluster.key_prefix"),
        ("unknown_key = 1", "unknown_key"),
    ] {
        let toml = c
            .config("redis://127.0.0.1:6379", ports, "", "", "")
            .replace(&format!("key_prefix = \"{PREFIX}\""), extra);
        let (code, out) = run_expecting_exit(dir, &toml, "check");
        assert_eq!(code, Some(64), "{extra}: {out}");
        assert!(out.contains(key), "{extra}: {out}");
    }
}
