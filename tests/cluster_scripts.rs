//! The Lua scripts that decide shared limits in Redis against the in-process limiter, on
//! a real redis-server: over generated time lines, the same rate/burst strings admit the
//! same requests with the same Retry-After (`limit::Gcra`), and the same failed-login
//! sequences lock for the same durations with the same back-off (`limit::Lockouts`), read
//! back as the gateway's batched check reads them (the lock flag's value, `GET`). The
//! scripts run with the clock taken from an argument (the production prelude reads
//! `TIME`); the bodies are the production ones.

mod support;

use std::time::{Duration, Instant};

use pacsgate::config::{LockoutPolicy, Rate};
use pacsgate::limit::cluster::{lock_remaining, micros, script_with_clock_argument};
use pacsgate::limit::{Gcra, Lockouts};
use support::redis::Redis;
use support::rng::Rng;

/// A plausible server clock (microseconds since 1970), so magnitudes are realistic.
const BASE_US: u64 = 1_764_000_000_000_000;

fn connection(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("connect to redis-server")
}

/// Emission intervals of at least 200 ms: keys carry a real-time PX TTL of at least one
/// interval, longer than any pause between two calls of this test.
const RATES: [&str; 10] = [
    "1/s",
    "1/s burst 3",
    "2/s burst 5",
    "4/s burst 1",
    "5/s burst 2",
    "3/min burst 2",
    "12/min burst 4",
    "60/min burst 10",
    "1/h burst 3",
    "100/h burst 7",
];

#[test]
fn redis_gcra_admits_the_same_sequences_as_the_local_limiter() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), None);
    let mut con = connection(&redis);
    let script = script_with_clock_argument("gcra").unwrap();
    let mut rng = Rng::new(0x6c1a);
    let (mut admitted, mut refused) = (0, 0);
    for (case, text) in RATES.iter().cycle().take(40).enumerate() {
        let rate = Rate::parse(text).unwrap();
        let interval = micros(rate.interval());
        let local = Gcra::new(&rate, 16);
        let t0 = Instant::now();
        let key = format!("test:gcra:{case}");
        let mut offset: u64 = 0;
        for step in 0..150 {
            // Steps at exactly 0, a fraction of, one and several intervals: the
            // boundaries (ahead + T == tau) are where two readings would differ.
            offset += match rng.below(6) {
                0 => 0,
                1 => interval,
                2 => interval * (1 + rng.below(4) as u64),
                3 => rng.next() % interval,
                4 => 1,
                _ => interval / 2,
            };
            let expected = local.check(&(), t0 + Duration::from_micros(offset));
            let reply: Vec<i64> = script
                .key(&key)
                .arg(interval)
                .arg(rate.burst.get())
                .arg(1)
                .arg(BASE_US + offset)
                .invoke(&mut con)
                .unwrap();
            let got = match reply.as_slice() {
                [1, 0] => Ok(()),
                [0, wait] => Err(Duration::from_micros(*wait as u64)),
                other => panic!("unexpected reply {other:?}"),
            };
            assert_eq!(
                got, expected,
                "rate {text:?}, step {step}, offset {offset} us"
            );
            if got.is_ok() {
                admitted += 1;
            } else {
                refused += 1;
            }
        }
    }
    // The generated lines exercise both answers, not just one.
    assert!(admitted > 500 && refused > 500, "{admitted} / {refused}");
}

#[test]
fn redis_lockouts_follow_the_local_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), None);
    let mut con = connection(&redis);
    let fail = script_with_clock_argument("lockout_fail").unwrap();
    let policies = [
        LockoutPolicy {
            failures: 3,
            window: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
        },
        LockoutPolicy {
            failures: 1,
            window: Duration::from_secs(10),
            max_lockout: Duration::from_secs(3600),
        },
        LockoutPolicy {
            failures: 5,
            window: Duration::from_secs(60),
            max_lockout: Duration::from_secs(60),
        },
    ];
    let mut rng = Rng::new(0x10c4);
    let mut locks = 0;
    for case in 0..30 {
        let policy = policies[case % policies.len()];
        let window = micros(policy.window);
        let local = Lockouts::new(16);
        let t0 = Instant::now();
        let key = format!("test:lock:{case}");
        let flag = format!("test:locked:{case}");
        let mut offset = 0u64;
        for step in 0..120 {
            offset += match rng.below(5) {
                0 => 0,
                1 => rng.next() % 1_000_000,
                2 => window / 2 + rng.below(3) as u64,
                3 => window + rng.below(2) as u64,
                _ => window * (1 + rng.below(24) as u64),
            };
            let now = t0 + Duration::from_micros(offset);
            let at = BASE_US + offset;
            let expected = local.check(&(), now);
            let until: Option<u64> = redis::cmd("GET").arg(&flag).query(&mut con).unwrap();
            let got = lock_remaining(at, until).map_or(Ok(()), Err);
            assert_eq!(got, expected, "case {case} step {step}: check");
            // The caller only counts failures while not locked (the check comes first).
            if expected.is_ok() {
                let expected = local.fail(&(), &policy, now);
                let wait: i64 = fail
                    .key(&key)
                    .key(&flag)
                    .arg(policy.failures)
                    .arg(window)
                    .arg(micros(policy.max_lockout))
                    .arg(at)
                    .invoke(&mut con)
                    .unwrap();
                let got = (wait > 0).then(|| Duration::from_micros(wait as u64));
                assert_eq!(got, expected, "case {case} step {step}: fail");
                locks += usize::from(got.is_some());
            }
        }
    }
    assert!(locks > 100, "{locks}");
}

#[test]
fn a_lease_takes_what_the_bucket_holds_and_charges_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), None);
    let mut con = connection(&redis);
    let script = script_with_clock_argument("gcra").unwrap();
    let mut take = |want: u32, offset: u64| -> Vec<i64> {
        script
            .key("test:lease")
            .arg(1_000_000)
            .arg(10)
            .arg(want)
            .arg(BASE_US + offset)
            .invoke(&mut con)
            .unwrap()
    };
    // Burst 10 at one instant: leases of 4 get 4, 4, then the 2 left, then nothing.
    assert_eq!(take(4, 0), [4, 0]);
    assert_eq!(take(4, 0), [4, 0]);
    assert_eq!(take(4, 0), [2, 0]);
    assert_eq!(take(4, 0), [0, 1_000_000]);
    // One interval later exactly one more, whatever the lease asked for.
    assert_eq!(take(4, 1_000_000), [1, 0]);
    assert_eq!(take(1, 1_000_000), [0, 1_000_000]);
}
