//! The configuration file exactly as written: serde structs that refuse unknown keys. Values
//! are still strings here; `validate.rs` turns them into types that cannot be invalid.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub dicom: RawDicom,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub audit: RawAudit,
    /// The admin listener (metrics, health); off unless `listen` is set.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[cluster]`: limits and lockouts shared with other replicas through Redis.
    pub cluster: Option<RawCluster>,
    /// HTTPS users (DESIGN.md contract: `[users.NAME]`).
    #[serde(default)]
    pub users: BTreeMap<String, RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    #[serde(default)]
    pub allow_remote: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis: Option<String>,
    pub redis_password_file: Option<PathBuf>,
    /// Longest one shared decision may take before the degraded policy applies.
    pub timeout: Option<String>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub path: Option<PathBuf>,
    /// Records held in memory for the writer (default in `validate/audit.rs`).
    pub queue: Option<usize>,
    /// Longest a record waits in memory before its batch is written.
    pub flush: Option<String>,
    /// `drop` or `refuse`: what happens while records cannot be written.
    pub on_full: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub rsa_cert: Option<PathBuf>,
    pub rsa_key: Option<PathBuf>,
    pub hostnames: Vec<String>,
    pub client_ca: Option<PathBuf>,
    pub client_crl: Vec<PathBuf>,
    pub client_auth: Option<String>,
    pub min_version: String,
    pub watch: bool,
    pub expiry_warning: String,
    /// `[tls.acme]`: certificates from an ACME CA (RFC 8555), renewed before expiry.
    pub acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: String,
    #[serde(default)]
    pub contact: Vec<String>,
    pub domains: Vec<String>,
    pub ca: Option<PathBuf>,
    #[serde(default = "thirty_days")]
    pub renew_before: String,
    pub http01_listen: String,
    pub account: Option<PathBuf>,
    #[serde(default = "twelve_hours")]
    pub check_interval: String,
}

fn thirty_days() -> String {
    "30d".into()
}

fn twelve_hours() -> String {
    "12h".into()
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert: "certs/server.crt".into(),
            key: "certs/server.key".into(),
            rsa_cert: None,
            rsa_key: None,
            hostnames: vec!["localhost".into()],
            client_ca: None,
            client_crl: Vec::new(),
            client_auth: None,
            min_version: "1.2".into(),
            watch: true,
            expiry_warning: "30d".into(),
            acme: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub enabled: bool,
    pub listen: String,
    pub upstream: String,
    pub allow_remote_upstream: bool,
    pub client_auth: Option<String>,
    pub max_connections: usize,
    // Per-address connection budgets (config/validate/budget.rs).
    pub max_pending_per_ip: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub pending_timeout: String,
    /// Load balancers whose PROXY v1/v2 header is read (CIDRs); empty: off.
    pub proxy_protocol: Vec<String>,
    pub max_header_bytes: usize,
    pub handshake_timeout: String,
    pub header_timeout: String,
    pub upstream_connect_timeout: String,
    // Unset: 60s, kept below idle_timeout (config/validate/upstream.rs).
    pub upstream_timeout: Option<String>,
    pub upstream_body_timeout: Option<String>,
    pub idle_timeout: String,
    // Access policy (config/policy.rs).
    pub authentication: String,
    pub admin_password_file: Option<PathBuf>,
    pub rules: Vec<RawRule>,
    pub allow_dangerous: Vec<String>,
    pub rate_limits: RawRateLimits,
    pub csrf_protection: bool,
    pub upstream_credentials_file: Option<PathBuf>,
    pub response_headers: BTreeMap<String, String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:443".into(),
            upstream: "http://127.0.0.1:8042".into(),
            allow_remote_upstream: false,
            client_auth: None,
            max_connections: 1024,
            max_pending_per_ip: None,
            max_connections_per_ip: None,
            pending_timeout: "10s".into(),
            proxy_protocol: Vec::new(),
            max_header_bytes: 64 * 1024,
            handshake_timeout: "10s".into(),
            header_timeout: "30s".into(),
            upstream_connect_timeout: "5s".into(),
            upstream_timeout: None,
            upstream_body_timeout: None,
            idle_timeout: "120s".into(),
            authentication: "required".into(),
            admin_password_file: None,
            rules: Vec::new(),
            allow_dangerous: Vec::new(),
            rate_limits: RawRateLimits::default(),
            csrf_protection: true,
            upstream_credentials_file: None,
            response_headers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub password_hash: Option<String>,
    pub certificate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    #[serde(default = "any_user")]
    pub users: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    #[serde(default = "allow")]
    pub action: String,
}

fn any_user() -> Vec<String> {
    vec!["*".into()]
}

fn allow() -> String {
    "allow".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimits {
    pub per_ip: Option<String>,
    pub per_user: Option<String>,
    pub routes: Vec<RawRouteLimit>,
    pub auth_failures_per_ip: String,
    pub auth_failures_per_user: String,
    pub max_lockout: String,
}

impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            per_ip: None,
            per_user: None,
            routes: Vec::new(),
            auth_failures_per_ip: "20/min".into(),
            auth_failures_per_user: "5/min".into(),
            max_lockout: "15m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteLimit {
    pub paths: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub rate: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDicom {
    pub enabled: bool,
    pub listen: String,
    pub upstream: String,
    pub allow_remote_upstream: bool,
    pub client_auth: Option<String>,
    pub max_associations: usize,
    // Per-address connection budgets (config/validate/budget.rs).
    pub max_pending_per_ip: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub pending_timeout: String,
    /// Load balancers whose PROXY v1/v2 header is read (CIDRs); empty: off.
    pub proxy_protocol: Vec<String>,
    pub max_pdu_length: u32,
    pub handshake_timeout: String,
    pub artim_timeout: String,
    pub upstream_connect_timeout: String,
    pub idle_timeout: String,
    pub outbound: Vec<RawOutbound>,
    // Association policy (config/dicom_policy.rs); names and defaults follow Orthanc.
    pub called_aet: Option<String>,
    pub always_allow_echo: bool,
    pub always_allow_store: bool,
    pub always_allow_find: bool,
    pub always_allow_find_worklist: bool,
    pub always_allow_move: bool,
    pub always_allow_get: bool,
    pub check_modality_host: bool,
    pub strict_aet_comparison: bool,
    pub max_associations_per_ip: Option<usize>,
    pub max_associations_per_modality: Option<usize>,
    pub association_rate_per_ip: Option<String>,
    pub modalities: std::collections::BTreeMap<String, RawModality>,
}

impl Default for RawDicom {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:11112".into(),
            upstream: "127.0.0.1:4242".into(),
            allow_remote_upstream: false,
            client_auth: None,
            max_associations: 256,
            max_pending_per_ip: None,
            max_connections_per_ip: None,
            pending_timeout: "10s".into(),
            proxy_protocol: Vec::new(),
            max_pdu_length: 1024 * 1024,
            handshake_timeout: "10s".into(),
            artim_timeout: "30s".into(),
            upstream_connect_timeout: "5s".into(),
            idle_timeout: "300s".into(),
            outbound: Vec::new(),
            called_aet: None,
            always_allow_echo: true,
            always_allow_store: true,
            always_allow_find: false,
            always_allow_find_worklist: false,
            always_allow_move: false,
            always_allow_get: false,
            check_modality_host: false,
            strict_aet_comparison: false,
            max_associations_per_ip: None,
            max_associations_per_modality: None,
            association_rate_per_ip: None,
            modalities: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    pub listen: String,
    pub remote: String,
    pub server_name: Option<String>,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub min_version: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    /// Called AE titles the local PACS may reach through this tunnel (empty: any).
    #[serde(default)]
    pub remote_aets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub shutdown_grace: String,
    pub worker_threads: usize,
    pub user: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            shutdown_grace: "30s".into(),
            worker_threads: 0,
            user: None,
        }
    }
}

/// `[dicom.modalities.NAME]`: one known DICOM peer, like an entry of Orthanc's
/// `DicomModalities` (see `dicom_policy.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModality {
    pub aet: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub certificate: Option<String>,
    pub allow: Option<Vec<String>>,
    pub move_destinations: Option<Vec<String>>,
    pub max_associations: Option<usize>,
}
