//! The validated settings types of the gateway (what `validate` produces from the TOML).
//! Every runtime module takes its settings from here; nothing here depends on them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::dicom_policy::DicomPolicy;
use super::http_policy::PolicyConfig;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub tls: TlsConfig,
    pub http: Option<HttpConfig>,
    pub dicom: Option<DicomConfig>,
    pub outbound: Vec<OutboundConfig>,
    pub log: LogConfig,
    pub shutdown_grace: Duration,
    /// Runtime worker threads; 0 = one per CPU this process may use.
    pub worker_threads: usize,
    /// Started as root: the account to switch to once the ports are bound.
    pub run_as: Option<RunAs>,
    /// `[audit]`: where records go and what happens when they cannot be written.
    pub audit: AuditConfig,
    /// `[admin]`: metrics and health probes; `None` when not configured.
    pub admin: Option<AdminConfig>,
    /// `[cluster]`: rates and lockouts shared through Redis; `None`: in-process only.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: where the shared limit state lives. The URL carries no credentials (they
/// would show in `ps`, logs and `pacsgate check`); the password comes from a 0600 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]`, credentials refused.
    pub redis: String,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub password_file: Option<PathBuf>,
    /// Per decision: a slower (or absent) Redis means the degraded policy applies.
    pub timeout: Duration,
    /// Namespace of every key, so several deployments can share one Redis.
    pub key_prefix: String,
}

/// `[audit]`: records are queued in memory (bounded) and written by one writer thread.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Audit records go to this JSON-lines file; to the log when unset.
    pub path: Option<PathBuf>,
    /// At most this many records wait in memory; beyond it `on_full` applies.
    pub queue: usize,
    /// The writer gathers records for at most this long before one write(2).
    pub flush: Duration,
    pub on_full: AuditOnFull,
}

/// What happens while a record cannot be queued (the queue is full) or written (the
/// disk is full or failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOnFull {
    /// Keep serving; every record that cannot be queued is counted as lost.
    Drop,
    /// Refuse new requests (503) and associations (A-ASSOCIATE-RJ transient) until records
    /// can be written again.
    Refuse,
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`. Loopback unless
/// `admin.allow_remote` (it is unauthenticated and reveals traffic patterns).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The primary certificate chain and key (ECDSA P-256 when generated).
    pub primary: KeyPairPaths,
    /// An optional second pair, chosen for clients that cannot use the primary (RSA when
    /// generated, for dcmtk 3.6.7 under TLS 1.2).
    pub rsa: Option<KeyPairPaths>,
    pub hostnames: Vec<String>,
    pub client_ca: Option<PathBuf>,
    pub client_crl: Vec<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub watch: bool,
    /// Warn (log, `check`, `doctor`) when a serving certificate expires within this.
    pub expiry_warning: Duration,
    /// Certificates for `tls.cert`/`tls.key` from an ACME CA.
    pub acme: Option<AcmeConfig>,
}

/// `[tls.acme]`: issue and renew the primary certificate with ACME (RFC 8555), answering
/// HTTP-01 challenges (RFC 8555 §8.3) on `http01_listen`.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub directory: String,
    pub contact: Vec<String>,
    pub domains: Vec<String>,
    /// PEM roots for the directory's TLS (a private CA, pebble); system roots otherwise.
    pub ca: Option<PathBuf>,
    pub renew_before: Duration,
    pub http01_listen: SocketAddr,
    /// The ACME account's key and URL (JSON, 0600).
    pub account: PathBuf,
    pub check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Config keys naming the two files, for error messages (`tls.cert`, `tls.rsa_key`).
    pub cert_key: &'static str,
    pub key_key: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub upstream: HttpUpstream,
    pub client_auth: ClientAuth,
    pub max_connections: usize,
    pub budget: ConnectionBudget,
    /// Load balancers whose PROXY header names the client (`server::proxied`); empty: off.
    pub proxy_protocol: Vec<ipnet::IpNet>,
    pub max_header_bytes: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Time the PACS may take to send its response head once it is its turn (the request
    /// body handed over); then 504.
    pub upstream_timeout: Duration,
    /// Longest gap between response body bytes while the client waits for them; then the
    /// connection is cut (a long download is fine as long as bytes keep coming).
    pub upstream_body_timeout: Duration,
    pub idle_timeout: Duration,
    /// Users, rules, limits: what `http::policy` enforces (reloadable).
    pub policy: PolicyConfig,
}

/// Per-address limits of a listener, counted from accept (`server::budget`): connections
/// not yet authenticated (`max_pending_per_ip`, each closed after `pending_timeout`) and
/// all connections (`max_connections_per_ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub max_pending_per_ip: usize,
    pub max_connections_per_ip: usize,
    pub pending_timeout: Duration,
}

/// `http://host:port` of the PACS's REST API; only plain HTTP (TLS ends here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUpstream {
    /// `host:port`, as used in the upstream request URI and Host header.
    pub authority: String,
}

#[derive(Debug, Clone)]
pub struct DicomConfig {
    pub listen: SocketAddr,
    pub upstream: String,
    pub client_auth: ClientAuth,
    pub max_associations: usize,
    pub budget: ConnectionBudget,
    /// Load balancers whose PROXY header names the client (`server::proxied`); empty: off.
    pub proxy_protocol: Vec<ipnet::IpNet>,
    pub max_pdu_length: u32,
    pub handshake_timeout: Duration,
    pub artim_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub policy: DicomPolicy,
}

/// One `[[dicom.outbound]]` tunnel: plain DICOM in on `listen`, DICOM TLS out to `remote`.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// `dicom.outbound[N]`, for logs and errors.
    pub name: String,
    pub listen: SocketAddr,
    pub remote: String,
    pub server_name: String,
    pub ca: PathBuf,
    pub client_identity: Option<KeyPairPaths>,
    pub min_version: TlsVersion,
    /// `dicom.handshake_timeout` and `dicom.artim_timeout`: the same phases as inbound.
    pub handshake_timeout: Duration,
    pub artim_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_pdu_length: u32,
    /// Called AE titles the local PACS may reach (empty: any).
    pub remote_aets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}
