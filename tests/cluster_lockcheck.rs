//! The shared lockout check on the hot path of HTTP Basic, with two real replicas, a real
//! redis-server (`INFO commandstats` as the oracle of what the gateways sent) and a real
//! Orthanc: concurrent checks share one `TIME` + `MGET` round trip instead of one script
//! call each, and batching opens no window: a lock written through replica B is seen by
//! every request sent to replica A after B answered, right password or not (issue 9: a
//! locked account is no oracle).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use support::cluster::Cluster;
use support::policy::ADMIN_PW;
use support::rawhttp::{h2_connect, H2Sender};

async fn get(mut sender: H2Sender, port: u16, creds: String) -> u16 {
    use http_body_util::BodyExt;
    let auth = base64::engine::general_purpose::STANDARD.encode(creds);
    let req = http::Request::get(format!("https://localhost:{port}/system"))
        .header("authorization", format!("Basic {auth}"))
        .body(http_body_util::Empty::new())
        .expect("request");
    sender.ready().await.expect("stream");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// `calls` of `cmdstat_NAME` in `INFO commandstats` (0 when never called).
fn calls(info: &str, name: &str) -> u64 {
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn concurrent_password_checks_share_redis_round_trips() {
    const N: usize = 64;
    let mut c = Cluster::start(1, "", "");
    let admin = format!("admin:{ADMIN_PW}");
    // The password is verified (argon2id) once, then cached: what is left per request is
    // the shared lockout check.
    assert_eq!(c.status(0, Some(&admin), "/system"), 200);
    let port = c.replicas[0].https;
    let ca = c.ca.path.clone();
    let rt = runtime();
    let sender = rt.block_on(h2_connect(port, &ca));
    c.redis().cli(&["CONFIG", "RESETSTAT"]);
    let codes: Vec<u16> = rt.block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|_| tokio::spawn(get(sender.clone(), port, admin.clone())))
            .collect();
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.expect("task"));
        }
        codes
    });
    assert_eq!(codes, vec![200; N]);
    let info = c.redis().cli(&["INFO", "commandstats"]);
    let (mget, time) = (calls(&info, "mget"), calls(&info, "time"));
    // No script per check any more, and one TIME per MGET (same pipeline).
    assert_eq!(calls(&info, "evalsha") + calls(&info, "eval"), 0, "{info}");
    assert_eq!(mget, time, "{info}");
    assert!(mget >= 1, "{info}");
    assert!(
        mget as usize <= N / 4,
        "{N} concurrent checks took {mget} MGETs:\n{info}"
    );
    eprintln!("{N} concurrent checks: {mget} round trips");
}

#[test]
fn a_lock_written_through_one_replica_is_seen_by_the_next_request_on_the_other() {
    let c = Cluster::start(2, "", "");
    let admin = format!("admin:{ADMIN_PW}");
    assert_eq!(c.status(0, Some(&admin), "/system"), 200);
    let (port, ca) = (c.replicas[0].https, c.ca.path.clone());
    let rt = runtime();
    let sender = rt.block_on(h2_connect(port, &ca));
    // Replica A under a steady load of right passwords (cached: 200 until locked), from
    // 16 concurrent streams, each request stamped with when it was sent.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..16)
        .map(|_| {
            let (sender, admin, stop) = (sender.clone(), admin.clone(), stop.clone());
            rt.spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    seen.push((sent, get(sender.clone(), port, admin.clone()).await));
                }
                seen
            })
        })
        .collect();
    // Replica B: wrong passwords until the fifth failure locks the name (default policy:
    // 5 per minute). The lock is written before B answers that failure.
    let mut locked_at = None;
    for i in 0..5 {
        assert_eq!(
            c.status(1, Some(&format!("admin:guess-{i}")), "/system"),
            401
        );
        locked_at = Some(Instant::now());
    }
    let locked_at = locked_at.expect("five failures");
    // Keep A busy a while longer, then look at every answer.
    let until = locked_at + Duration::from_millis(500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<(Instant, u16)> = rt.block_on(async {
        let mut all = Vec::new();
        for t in load {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let before = seen
        .iter()
        .filter(|(t, s)| *t < locked_at && *s == 200)
        .count();
    let after: Vec<u16> = seen
        .iter()
        .filter(|(t, _)| *t >= locked_at)
        .map(|(_, s)| *s)
        .collect();
    assert!(before > 0, "A answered no right password before the lock");
    assert!(
        after.len() >= 16,
        "too few requests after the lock: {}",
        after.len()
    );
    assert!(
        after.iter().all(|s| *s == 429),
        "right passwords answered after the lock: {:?}",
        after.iter().filter(|s| **s != 429).count()
    );
    // And the lock holds on both replicas for a fresh connection too.
    for i in 0..2 {
        assert_eq!(c.status(i, Some(&admin), "/system"), 429, "replica {i}");
    }
}

/// The lock check reads over connections of its own (`src/limit/cluster/flags.rs`, RESP
/// written by hand): they must authenticate and select the configured database like the
/// redis crate's connection that writes the locks. With `redis://.../3`, a lock written
/// by the failure script into database 3 must stop the right password, and a check that
/// read database 0 would answer 200.
#[test]
fn the_lock_check_reads_the_configured_database_with_the_password() {
    let mut c = Cluster::without_redis();
    let redis = support::redis::Redis::start(c.dir.path(), Some(support::cluster::REDIS_PASSWORD));
    let url = format!("{}/3", redis.url());
    c.redis = Some(redis);
    c.add_replica(&url, "", "", "");
    let admin = format!("admin:{ADMIN_PW}");
    assert_eq!(c.status(0, Some(&admin), "/system"), 200);
    for i in 0..5 {
        assert_eq!(
            c.status(0, Some(&format!("admin:guess-{i}")), "/system"),
            401
        );
    }
    assert_eq!(
        c.status(0, Some(&admin), "/system"),
        429,
        "the right password while the name is locked"
    );
    let in_db = |db: &str| c.redis.as_ref().expect("redis").cli(&["-n", db, "DBSIZE"]);
    assert_ne!(in_db("3"), "0", "the lock records are in database 3");
    assert_eq!(in_db("0"), "0", "nothing in database 0");
    // Every decision came from Redis: the replica never degraded.
    assert_eq!(c.replicas[0].metric("pacsgate_cluster_degraded"), 0.0);
}
