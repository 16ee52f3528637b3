//! The one static registry of lock-free counters every listener records into.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use super::counters::{Counters, Histogram};

/// Listener names used as the `listener` label.
pub const HTTPS: &str = "https";
pub const DICOM: &str = "dicom";
pub const OUTBOUND: &str = "outbound";

/// Why an audit record was lost: the `reason` of `pacsgate_audit_records_lost_total`.
pub const AUDIT_QUEUE_FULL: &str = "queue_full";
pub const AUDIT_SHUTDOWN: &str = "shutdown";
pub const AUDIT_UNSERIALISABLE: &str = "unserialisable";
pub const AUDIT_LOST_REASONS: [&str; 3] = [AUDIT_QUEUE_FULL, AUDIT_SHUTDOWN, AUDIT_UNSERIALISABLE];

/// The process's metrics; recorded whether or not `[admin]` is configured (the cost is
/// one relaxed atomic add per event).
pub static METRICS: Metrics = Metrics::new();

pub struct Metrics {
    /// HTTP responses by status code (ours and the PACS's).
    pub http_requests: Counters<u16, 48>,
    /// HTTP requests refused by the gateway, by reason.
    pub http_refusals: Counters<&'static str, 16>,
    pub http_duration: Histogram,
    /// (listener, result, version, alpn).
    pub tls_handshakes: Counters<(&'static str, &'static str, &'static str, &'static str), 32>,
    /// Open connections by listener (a gauge).
    pub open_connections: Counters<&'static str, 4>,
    /// Connections closed at accept by the per-address budgets, by listener.
    pub budget_refusals: Counters<&'static str, 4>,
    /// (listener, result): PROXY protocol headers read from load balancers (`proxy`,
    /// `local`) and connections closed by the check (`missing`, `malformed`, `timeout`,
    /// `closed`, `untrusted`: a header from a peer not in `proxy_protocol`).
    pub proxy_protocol: Counters<(&'static str, &'static str), 16>,
    /// (listener, result, reason).
    pub associations: Counters<(&'static str, &'static str, &'static str), 32>,
    /// DIMSE requests seen, by command.
    pub dimse_commands: Counters<&'static str, 16>,
    /// DIMSE requests refused, by command.
    pub dimse_refusals: Counters<&'static str, 16>,
    /// (listener, direction): bytes relayed; `in` = from the client.
    pub bytes: Counters<(&'static str, &'static str), 8>,
    /// (listener, limit) for requests and associations refused by a rate limit.
    pub rate_limited: Counters<(&'static str, &'static str), 16>,
    /// HTTP requests refused because the client's key is locked out after failed logins.
    pub lockouts: Counters<&'static str, 2>,
    /// (listener, kind): the PACS could not be reached or failed mid-request.
    pub upstream_errors: Counters<(&'static str, &'static str), 24>,
    /// (what, result): `tls` or `config`, `ok` or `failed`.
    pub reloads: Counters<(&'static str, &'static str), 4>,
    /// Audit records written to the file or the log.
    pub audit_written: AtomicU64,
    /// Audit records lost, by reason (`AUDIT_LOST_REASONS`).
    pub audit_lost: Counters<&'static str, 4>,
    /// Audit records waiting in memory for the writer (a gauge).
    pub audit_queued: AtomicU64,
    /// Failed writes to the audit file (each retried until it succeeds).
    pub audit_write_errors: AtomicU64,
    /// 1 while `[cluster]` decisions are taken without Redis (a gauge).
    pub cluster_degraded: AtomicU64,
    /// Failed calls to the shared limit store, by reason (`error`, `timeout`).
    pub cluster_failures: Counters<&'static str, 2>,
    /// Serving certificates: (path, not-after in unix seconds); replaced on each load.
    certificates: Mutex<Vec<(String, i64)>>,
}

impl Metrics {
    const fn new() -> Self {
        Self {
            http_requests: Counters::new(),
            http_refusals: Counters::new(),
            http_duration: Histogram::new(),
            tls_handshakes: Counters::new(),
            open_connections: Counters::new(),
            budget_refusals: Counters::new(),
            proxy_protocol: Counters::new(),
            associations: Counters::new(),
            dimse_commands: Counters::new(),
            dimse_refusals: Counters::new(),
            bytes: Counters::new(),
            rate_limited: Counters::new(),
            lockouts: Counters::new(),
            upstream_errors: Counters::new(),
            reloads: Counters::new(),
            audit_written: AtomicU64::new(0),
            audit_lost: Counters::new(),
            audit_queued: AtomicU64::new(0),
            audit_write_errors: AtomicU64::new(0),
            cluster_degraded: AtomicU64::new(0),
            cluster_failures: Counters::new(),
            certificates: Mutex::new(Vec::new()),
        }
    }

    /// One finished HTTP request (called once, when its audit record is written).
    pub fn http_request(&self, status: u16, elapsed: Duration, bytes_in: u64, bytes_out: u64) {
        self.http_requests.inc(status);
        self.http_duration.observe(elapsed);
        self.bytes.add((HTTPS, "in"), bytes_in);
        self.bytes.add((HTTPS, "out"), bytes_out);
    }

    /// A finished TLS handshake: `Ok((version, alpn))` or the failure kind.
    pub fn tls_handshake(
        &self,
        listener: &'static str,
        outcome: Result<(&'static str, &'static str), &'static str>,
    ) {
        let key = match outcome {
            Ok((version, alpn)) => (listener, "ok", version, alpn),
            Err(kind) => (listener, kind, "", ""),
        };
        self.tls_handshakes.inc(key);
    }

    /// Replace the not-after gauges with the certificates now served.
    pub fn set_certificates(&self, certs: Vec<(String, i64)>) {
        let mut guard = crate::sync::lock(&self.certificates);
        *guard = certs;
    }

    pub fn certificates(&self) -> Vec<(String, i64)> {
        crate::sync::lock(&self.certificates).clone()
    }
}

/// An open connection on `listener`, counted until dropped.
pub struct OpenConnection(&'static str);

impl OpenConnection {
    pub fn new(listener: &'static str) -> Self {
        METRICS.open_connections.inc(listener);
        Self(listener)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        METRICS.open_connections.sub(self.0, 1);
    }
}
