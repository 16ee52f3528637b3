//! Command-line surface (the contract in DESIGN.md: `run`, `check`, `cert`, `hash-password`,
//! `storage`). Parsing only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pacsgate",
    version,
    about = "Security edge for a localhost PACS",
    after_long_help = OPERATIONS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `run`, accepted without the subcommand name (`pacsgate --config x`).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Shown by `--help` and in the man page (clap_mangen renders it as its own section).
const OPERATIONS: &str = "\
Signals: SIGHUP re-reads the configuration and the certificates and reopens audit.path;
SIGTERM or SIGINT stop accepting and drain for server.shutdown_grace.

Exit status: 0 done; 1 a storage command failed or found objects it could not process;
64 configuration or usage error (one line naming the key and the fix, before any port is
bound); 69 a port could not be bound or the runtime failed.

Files (Debian package): /etc/pacsgate/config.toml, /var/lib/pacsgate/certs (generated
certificates, admin.password), /var/log/pacsgate/audit.jsonl, pacsgate.service (systemd,
Type=notify).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run(RunArgs),
    /// Validate the configuration and print the effective listeners; exit 64 on error.
    Check(RunArgs),
    /// Check pacsgate's and Orthanc's configuration and the running system; one line per
    /// check (PASS, WARN, FAIL with the fix); exit 1 on any FAIL.
    Doctor(DoctorArgs),
    /// Certificate tools.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Read a password (from the terminal without echo, or stdin) and print its argon2id
    /// hash for `[users.NAME] password_hash`.
    HashPassword,
    /// Encrypted storage tools (keygen, encrypt, decrypt, verify, migrate, rekey): runs the
    /// separate pacsgate-storage program with the same arguments (`pacsgate storage --help`,
    /// pacsgate-storage(1)).
    #[command(disable_help_flag = true)]
    Storage {
        /// Passed to pacsgate-storage unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// GET an admin listener URL (`--url http://127.0.0.1:9090/readyz`); exit 0 on 2xx, 1
    /// otherwise. For container health checks in images without a shell or curl.
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write one page per command into --out-dir.
    Man {
        /// Directory for pacsgate.1 and one page per subcommand (pacsgate-cert.1, ...).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Path of the TOML configuration.
    #[arg(long, short = 'c', default_value = "config.toml", global = true)]
    pub config: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Orthanc's configuration: a JSON file (comments allowed) or a directory of them
    /// (default: /etc/orthanc when it exists).
    #[arg(long)]
    pub orthanc_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Plain-HTTP URL of an admin endpoint, e.g. http://127.0.0.1:9090/healthz.
    #[arg(long)]
    pub url: String,
    /// Give up after this long (connect, request and answer together).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Show subject, SANs, issuer, validity and SHA-256 fingerprint of each certificate.
    Inspect {
        /// A PEM file with one or more certificates.
        file: PathBuf,
    },
    /// Generate a self-signed certificate and key (the key is written 0600). Existing files
    /// are kept unless --force; missing directories are not created.
    SelfSigned {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Replace existing files (the fingerprint changes: peers must re-pin it).
        #[arg(long)]
        force: bool,
        /// DNS names or IP addresses (localhost and 127.0.0.1 are always added).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Key algorithm.
        #[arg(long, value_enum, default_value = "ecdsa")]
        algorithm: KeyAlgorithm,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgorithm {
    Ecdsa,
    Rsa,
}
