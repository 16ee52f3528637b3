//! The command line of `pacsgate-storage` (DESIGN.md's `pacsgate storage
//! keygen|encrypt|decrypt|verify|migrate|rekey`; `pacsgate storage ARGS` runs this binary).
//! Parsing only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pacsgate_storage::keys::location::{KmsSettings, Remotes, VaultSettings};

#[derive(Debug, Parser)]
#[command(
    name = "pacsgate-storage",
    version,
    about = "Encrypted storage tools for Orthanc (keys, files, storage directories); \
             pacsgate storage ARGS runs this program",
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_STATUS: &str = "\
Exit status: 0 done; 1 the command failed or found objects it could not process; 64 usage
error (missing key, location or option); 2 unparsable command line.";

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Storage(StorageCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write pacsgate-storage.1 and one page per command into DIR (it must exist).
    #[command(hide = true)]
    Man { out_dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Create a new master key: a key file (base64 of 32 random bytes, mode 0600), a
    /// non-extractable AES-256 key in a PKCS#11 token, or an AWS KMS key.
    Keygen {
        /// Key file to write; an existing file is never overwritten.
        #[arg(long, conflicts_with_all = ["pkcs11", "aws_kms"])]
        out: Option<PathBuf>,
        /// pkcs11:token=...;object=LABEL?module-path=...&pin-source=file:... (RFC 7512);
        /// refuses an existing label.
        #[arg(long, conflicts_with = "aws_kms")]
        pkcs11: Option<String>,
        /// Create a symmetric key in AWS KMS (CreateKey) and print its ARN.
        #[arg(long, conflicts_with = "vault_transit")]
        aws_kms: bool,
        /// Create a transit key NAME (aes256-gcm96, not exportable) in Vault / OpenBao.
        #[arg(long)]
        vault_transit: Option<String>,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Encrypt one file into the pacsgate format (v3, bound to the output's file name).
    Encrypt {
        #[command(flatten)]
        keys: KeyArgs,
        /// Content type to bind (Orthanc's attachment type; default 0: none).
        #[arg(long, default_value_t = 0)]
        content_type: u32,
        input: PathBuf,
        output: PathBuf,
    },
    /// Decrypt one file (pacsgate format or A1).
    Decrypt {
        #[command(flatten)]
        keys: KeyArgs,
        /// The name the object is bound to (its uuid; default: the input's file name).
        #[arg(long)]
        name: Option<String>,
        input: PathBuf,
        output: PathBuf,
    },
    /// Check every object of a storage location; list the unreadable ones (exit 1 if any).
    Verify(Target),
    /// Encrypt a plain Orthanc storage directory (or A1 objects) in place. Resumable:
    /// objects already in the new format are skipped.
    Migrate {
        #[command(flatten)]
        target: Target,
        /// Only report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrap every object's data key under the current master key (segments unchanged;
    /// v2 objects are re-encrypted as v3). Moves objects between providers, e.g. from a key
    /// file to KMS or an HSM.
    Rekey(Target),
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Orthanc's JSON configuration with a PacsgateStorage section (keys and location).
    #[arg(long)]
    pub orthanc_config: Option<PathBuf>,
    /// A master key as ID:LOCATION (a key file, pkcs11:... or aws-kms:...); the first one
    /// is current, later ones only decrypt.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub kms: KmsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct KmsArgs {
    /// AWS region of aws-kms: keys (else the configuration's Kms.Region).
    #[arg(long)]
    pub kms_region: Option<String>,
    /// KMS endpoint URL (default https://kms.REGION.amazonaws.com).
    #[arg(long)]
    pub kms_endpoint: Option<String>,
    /// Vault / OpenBao address of vault-transit: keys (else the configuration's
    /// Vault.Address); the token comes from VAULT_TOKEN.
    #[arg(long)]
    pub vault_address: Option<String>,
    /// Transit mount path.
    #[arg(long, default_value = "transit")]
    pub vault_mount: String,
}

impl KmsArgs {
    pub fn remotes(&self) -> Remotes {
        Remotes {
            kms: self.settings(),
            vault: self.vault_address.as_ref().map(|address| VaultSettings {
                address: address.clone(),
                mount: self.vault_mount.clone(),
            }),
        }
    }

    pub fn settings(&self) -> Option<KmsSettings> {
        self.kms_region.as_ref().map(|region| KmsSettings {
            endpoint: self.kms_endpoint.clone(),
            region: region.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct Target {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Storage directory (Orthanc's xx/yy/uuid layout); overrides the configuration's.
    #[arg(long)]
    pub root: Option<PathBuf>,
}
