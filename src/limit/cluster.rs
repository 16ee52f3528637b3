//! `[cluster]`: rates and lockouts shared by replicas through Redis. Each decision is one
//! Lua script (atomic on the server) with Redis's own `TIME` as the clock, so replica
//! clocks do not matter; keys carry `PX` TTLs so idle ones delete themselves. The
//! arithmetic is the in-process limiter's (`gcra.rs`, `lockout.rs`), in microseconds.
//!
//! Scripts go over one multiplexed connection per process (`redis::aio::ConnectionManager`,
//! which reconnects on its own); the batched lock checks over up to two connections of
//! their own (`flags`, for latency). Every call is bounded by `cluster.timeout`; a call
//! that fails or times out puts the process in degraded mode (`health`): for `PROBE` after
//! that, decisions do not wait on Redis at all, then the next call probes it again. What degraded means is
//! the caller's policy (rates: the local limiter; lockouts: fail closed).
//!
//! Keys: `PREFIX:KIND:HASH`, HASH the first 128 bits of SHA-256(prefix, kind, id) in hex:
//! an attacker-chosen user name of any length becomes 32 characters, and the raw names are
//! not stored in Redis. A lockout record's lock flag is `PREFIX:locked:HASH` (same HASH).
//! Lockout checks are batched reads of those flags, not scripts (`batch`).

mod batch;
mod flags;
mod health;
mod password;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

/// A script's source and SHA-1: sent as `EVALSHA`, or `EVAL` once when Redis does not
/// have it (`NOSCRIPT`, e.g. after a restart). Not `redis::Script`'s own invocation, which
/// debug-asserts on the hash Redis returns: a Redis answering garbage must not panic us.
struct Lua {
    source: String,
    sha1: String,
}
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use self::batch::{Answer, Slot, Waiter, MAX_IN_FLIGHT};
use self::flags::FlagConns;
use self::health::Health;
pub use self::health::Unavailable;
use crate::config::{ClusterConfig, ConfigError, LockoutPolicy, Rate};

const SERVER_CLOCK: &str =
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";
const GCRA: &str = include_str!("cluster/gcra.lua");
const LOCKOUT_FAIL: &str = include_str!("cluster/lockout_fail.lua");
/// Longest the start waits for Redis (see [`Cluster::warm_up`]).
const WARM_UP: Duration = Duration::from_secs(2);

pub struct Cluster {
    config: ClusterConfig,
    client: redis::Client,
    /// Created on first use: the connection manager needs the runtime, which is started
    /// after the configuration is prepared.
    conn: OnceLock<Option<ConnectionManager>>,
    gcra: Lua,
    lockout_fail: Lua,
    health: Health,
    batches: Arc<batch::Batches>,
    /// The batch senders' own connections (`flags`).
    flag_conns: FlagConns,
    /// Itself, for the task that sends batches of lockout checks.
    me: Weak<Cluster>,
}

impl Cluster {
    /// Reads the password file (0600, like every secret) and prepares the client; no
    /// connection yet, so a Redis that is down at start only means degraded mode.
    pub fn new(config: &ClusterConfig) -> Result<Arc<Self>, ConfigError> {
        let mut redis = redis::RedisConnectionInfo::default()
            .set_db(config.db)
            // No CLIENT SETINFO round trips on connect: fewer answers to get wrong.
            .set_skip_set_lib_name();
        let password = config
            .password_file
            .as_deref()
            .map(password::read)
            .transpose()?;
        if let Some(p) = &password {
            redis = redis.set_password(p.clone());
        }
        let info =
            redis::IntoConnectionInfo::into_connection_info((config.host.as_str(), config.port))
                .map_err(|e| {
                    ConfigError::new("cluster.redis", e.to_string(), "write redis://HOST:PORT")
                })?
                .set_redis_settings(redis)
                // Small requests and answers: without TCP_NODELAY, Nagle plus delayed ACK
                // holds pipelined decisions back by up to 40 ms.
                .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(|e| {
            ConfigError::new("cluster.redis", e.to_string(), "write redis://HOST:PORT")
        })?;
        Ok(Arc::new_cyclic(|me| Self {
            config: config.clone(),
            client,
            conn: OnceLock::new(),
            gcra: script(GCRA),
            lockout_fail: script(LOCKOUT_FAIL),
            health: Health::default(),
            batches: Arc::default(),
            flag_conns: FlagConns::new(config, password, MAX_IN_FLIGHT),
            me: me.clone(),
        }))
    }

    /// One line for `pacsgate check` and the start-up log (no password, ever).
    pub fn describe(config: &ClusterConfig) -> String {
        format!(
            "cluster: limits and lockouts shared through {} (prefix {:?}, timeout {:?}, password {}); \
             Redis unavailable: rates fall back to this replica's own limiter, password logins are refused (429)",
            config.redis,
            config.key_prefix,
            config.timeout,
            if config.password_file.is_some() { "from file" } else { "none" },
        )
    }

    /// Connect and load the scripts before the listeners serve, bounded by `WARM_UP`
    /// rather than `cluster.timeout`: connecting, authenticating and loading two scripts
    /// take several round trips, more than one decision may wait. A failure only logs and
    /// counts: decisions then start in degraded mode and probe Redis as usual.
    pub async fn warm_up(&self) {
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let load = async {
            for lua in [&self.gcra, &self.lockout_fail] {
                let mut cmd = redis::cmd("SCRIPT");
                cmd.arg("LOAD").arg(&lua.source);
                let sha1: String = cmd
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if sha1 != lua.sha1 {
                    return Err("SCRIPT LOAD answered another hash".to_string());
                }
            }
            // The lock checks' own connection (`flags`), so the first login does not wait.
            self.flag_conns.warm_up().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(WARM_UP, load).await {
            Ok(Ok(())) => tracing::info!("shared limits: Redis reachable, scripts loaded"),
            Ok(Err(e)) => {
                self.health.failed("error", &e);
            }
            Err(_) => {
                self.health.failed("timeout", "no answer while connecting");
            }
        }
    }

    /// True while decisions are taken without Redis.
    pub fn degraded(&self) -> bool {
        self.health.degraded()
    }

    /// The Redis key of `id` (a client network, a user name, ...) for `kind`.
    pub fn key(&self, kind: &str, id: &[u8]) -> String {
        format!("{}:{kind}:{}", self.config.key_prefix, self.hash(kind, id))
    }

    /// The lock flag of the lockout record `key(kind, id)` (see `cluster/lockout_fail.lua`).
    pub fn lock_key(&self, kind: &str, id: &[u8]) -> String {
        format!("{}:locked:{}", self.config.key_prefix, self.hash(kind, id))
    }

    fn hash(&self, kind: &str, id: &[u8]) -> String {
        let mut h = Sha256::new();
        for part in [self.config.key_prefix.as_bytes(), kind.as_bytes(), id] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        // On the hot path (two keys per password login): no allocation per digit.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for b in &digest[..16] {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        hex
    }

    /// Up to `lease` requests against the shared bucket `kind`/`id`: `Ok(Ok(n))` admitted
    /// `n` (1 ..= lease), `Ok(Err(wait))` refused.
    pub async fn rate(
        &self,
        kind: &str,
        id: &[u8],
        rate: &Rate,
        lease: u32,
    ) -> Result<Result<u32, Duration>, Unavailable> {
        let keys = [self.key(kind, id)];
        let args = [
            micros(rate.interval()),
            u64::from(rate.burst.get()),
            u64::from(lease.max(1)),
        ];
        let reply: Vec<i64> = self.run(&self.gcra, &keys, &args).await?;
        match reply.as_slice() {
            [0, wait] => Ok(Err(Duration::from_micros((*wait).max(1) as u64))),
            [n, _] if (1..=i64::from(lease.max(1))).contains(n) => Ok(Ok(*n as u32)),
            _ => Err(self
                .health
                .failed("error", "the rate script answered an unexpected shape")),
        }
    }

    /// Count one failed login on each of `keys` under its policy; the longest lock started.
    pub async fn fail(
        &self,
        keys: &[(&str, &[u8], &LockoutPolicy)],
    ) -> Result<Option<Duration>, Unavailable> {
        let args: Vec<u64> = keys
            .iter()
            .flat_map(|(_, _, p)| {
                [
                    u64::from(p.failures),
                    micros(p.window),
                    micros(p.max_lockout),
                ]
            })
            .collect();
        let keys: Vec<String> = keys
            .iter()
            .flat_map(|(k, id, _)| [self.key(k, id), self.lock_key(k, id)])
            .collect();
        let wait: i64 = self.run(&self.lockout_fail, &keys, &args).await?;
        Ok((wait > 0).then(|| Duration::from_micros(wait as u64)))
    }

    /// A correct password clears the user's record and lock flag (as `Lockouts::succeed`).
    pub async fn succeed(&self, kind: &str, id: &[u8]) -> Result<(), Unavailable> {
        let keys = [self.key(kind, id), self.lock_key(kind, id)];
        let mut conn = self.connection()?;
        let mut del = redis::cmd("DEL");
        del.arg(&keys);
        self.bounded(del.query_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// `EVALSHA`, and `EVAL` (which caches the script again) on `NOSCRIPT`; both inside
    /// one `cluster.timeout`.
    async fn run<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[u64],
    ) -> Result<T, Unavailable> {
        let mut conn = self.connection()?;
        let call = async {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&lua.sha1).arg(keys.len()).arg(keys).arg(args);
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(&lua.source).arg(keys.len()).arg(keys).arg(args);
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        };
        self.bounded(call).await
    }

    /// Any call to Redis: skipped while degraded, bounded by `cluster.timeout`, its
    /// outcome recorded in `health`. No lock is held here: the manager is cloned (an
    /// `Arc`) and the call owns it.
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Unavailable> {
        if !self.health.should_try() {
            return Err(Unavailable);
        }
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(v)) => {
                self.health.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => Err(self.health.failed("error", &e.to_string())),
            Err(_) => Err(self
                .health
                .failed("timeout", "no answer within cluster.timeout")),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        let conn = self.conn.get_or_init(|| {
            let config = ConnectionManagerConfig::new()
                // Connecting happens in the background (calls stay bounded by
                // cluster.timeout); a Redis across a network may need more than that.
                .set_connection_timeout(Some(WARM_UP.max(self.config.timeout)))
                .set_response_timeout(Some(self.config.timeout))
                // Reconnect quickly and give up quickly: each call is bounded anyway and
                // the next call after a failure triggers a new attempt.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(|e| tracing::error!(error = %e, "cannot set up the Redis connection"))
                .ok()
        });
        conn.clone().ok_or(Unavailable)
    }
}

fn script(body: &str) -> Lua {
    let source = format!("{SERVER_CLOCK}{body}");
    let sha1 = Script::new(&source).get_hash().to_string();
    Lua { source, sha1 }
}

/// Lockout checks, batched (`batch`): the cluster side of the queue.
impl Cluster {
    /// The longest lock on any of `keys` (`(kind, id)`), `None` when none is locked.
    pub async fn locked(&self, keys: &[(&str, &[u8])]) -> Answer {
        if !self.health.should_try() {
            return Err(Unavailable);
        }
        let keys = keys.iter().map(|(k, id)| self.lock_key(k, id)).collect();
        let (tx, rx) = oneshot::channel();
        if let Some(slot) = self.batches.push(Waiter { keys, tx }) {
            // No `me` (shutting down): the slot is dropped, which fails the queue closed.
            let me = self.me.upgrade().ok_or(Unavailable)?;
            tokio::spawn(async move { me.send_batches(slot).await });
        }
        // The sender bounds its round trip by cluster.timeout and answers or drops every
        // waiter it took, so no timer of our own: a dropped answer fails closed.
        rx.await.unwrap_or(Err(Unavailable))
    }

    /// Run one sender (`batch`): collect, send, answer; again while checks wait.
    async fn send_batches(&self, mut slot: Slot) {
        loop {
            // Let the tasks that are ready now (requests already read, whose checks are on
            // their way) queue theirs first: larger batches, no added wait when idle.
            // (Waiting longer for the batch to grow was measured: fewer round trips, but
            // the added wait cost more throughput than they saved.) Whatever joins is
            // still sent after it arrived.
            tokio::task::yield_now().await;
            let batch = slot.take();
            if batch.is_empty() {
                return;
            }
            let keys: Vec<&str> = batch
                .iter()
                .flat_map(|w| w.keys.iter().map(String::as_str))
                .collect();
            let reply = self.read_locks(&keys).await;
            let mut offset = 0;
            for w in batch {
                let n = w.keys.len();
                let answer = match &reply {
                    Ok(waits) => waits
                        .get(offset..offset + n)
                        .map(|w| w.iter().flatten().max().copied())
                        // Cannot happen (the length is checked); never an open door.
                        .ok_or(Unavailable),
                    Err(e) => Err(*e),
                };
                offset += n;
                // A caller that gave up (cancelled request) does not matter.
                let _ = w.tx.send(answer);
            }
            if !slot.again() {
                return;
            }
        }
    }

    /// One round trip: Redis's clock and every flag; per key the time left on its lock.
    /// Bounded by `cluster.timeout`, connecting included; a connection that failed or
    /// timed out (its answer may still come) is dropped, never reused.
    async fn read_locks(&self, keys: &[&str]) -> Result<Vec<Option<Duration>>, Unavailable> {
        let (now, until) = self.bounded(self.flag_conns.read(keys)).await?;
        Ok(until
            .into_iter()
            .map(|u| batch::remaining(now, u))
            .collect())
    }
}

pub use self::batch::remaining as lock_remaining;

/// The scripts with the clock taken from the last argument instead of `TIME`, so tests
/// can compare Redis's decisions with the in-process limiter's over the same time line
/// (the lockout check is [`lock_remaining`] over the lock flag's value).
#[doc(hidden)]
pub fn script_with_clock_argument(which: &str) -> Option<Script> {
    let body = match which {
        "gcra" => GCRA,
        "lockout_fail" => LOCKOUT_FAIL,
        _ => return None,
    };
    Some(Script::new(&format!(
        "local now = tonumber(ARGV[#ARGV])\n{body}"
    )))
}

/// Whole microseconds, rounded up: an interval of 333 333.3 us is 333 334 us in Redis, at
/// most 1 us stricter per request than the in-process limiter.
pub fn micros(d: Duration) -> u64 {
    let us = d.as_nanos().div_ceil(1000);
    u64::try_from(us).unwrap_or(u64::MAX)
}
