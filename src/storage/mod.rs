//! `pacsgate storage keygen | encrypt | decrypt | verify | migrate | rekey`: operator tools
//! over the `pacsgate-storage` crate, the same code the Orthanc plugin runs.
//!
//! Keys and location come either from Orthanc's JSON configuration (`--orthanc-config`,
//! the plugin's `PacsgateStorage` section) or from `--key ID:PATH` (first = current) and
//! `--root DIR`. Output files are written atomically (temp, fsync, rename).

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use pacsgate_storage::backend::fs::FsBackend;
use pacsgate_storage::backend::Backend;
use pacsgate_storage::config::{strip_json_comments, Location, StorageConfig};
use pacsgate_storage::keys::{generate_key_text, KeyRing, MasterKey};
use pacsgate_storage::Store;

mod objects;

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Write a new master key file (base64 of 32 random bytes, mode 0600).
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Encrypt one file into the pacsgate format.
    Encrypt {
        #[command(flatten)]
        keys: KeyArgs,
        input: PathBuf,
        output: PathBuf,
    },
    /// Decrypt one file (pacsgate format or A1).
    Decrypt {
        #[command(flatten)]
        keys: KeyArgs,
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
    /// Rewrap every object's data key under the current master key (segments unchanged).
    Rekey(Target),
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Orthanc's JSON configuration with a PacsgateStorage section (keys and location).
    #[arg(long)]
    pub orthanc_config: Option<PathBuf>,
    /// A master key as ID:PATH; the first one is current, later ones only decrypt.
    #[arg(long = "key")]
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Target {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Storage directory (Orthanc's xx/yy/uuid layout); overrides the configuration's.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// Run one storage command; errors are printed, exit 1 (64 for usage mistakes).
pub fn run(cmd: StorageCommand) -> ExitCode {
    match execute(cmd) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("pacsgate storage: {msg}");
            ExitCode::from(64)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("pacsgate storage: {msg}");
            ExitCode::FAILURE
        }
    }
}

pub enum Failure {
    Usage(String),
    Failed(String),
}

impl From<pacsgate_storage::Error> for Failure {
    fn from(e: pacsgate_storage::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn execute(cmd: StorageCommand) -> Result<ExitCode, Failure> {
    match cmd {
        StorageCommand::Keygen { out } => keygen(&out),
        StorageCommand::Encrypt {
            keys,
            input,
            output,
        } => {
            let (keys, _) = load(&keys)?;
            encrypt(keys, &input, &output)
        }
        StorageCommand::Decrypt {
            keys,
            input,
            output,
        } => {
            let (keys, _) = load(&keys)?;
            decrypt(keys, &input, &output)
        }
        StorageCommand::Verify(target) => objects::verify(&open(&target)?),
        StorageCommand::Migrate { target, dry_run } => {
            let store = open(&target)?;
            let root = fs_root(&target)?;
            objects::migrate(&store, &root, dry_run, progress())
        }
        StorageCommand::Rekey(target) => objects::rekey(&open(&target)?, progress()),
    }
}

fn progress() -> bool {
    std::io::stderr().is_terminal()
}

fn keygen(out: &Path) -> Result<ExitCode, Failure> {
    let text = generate_key_text()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| key_file_error(out, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Failed(format!("{}: {e}", out.display())))?;
    println!(
        "wrote a new master key to {} (mode 0600); configure it as [ID, {:?}]",
        out.display(),
        out.display().to_string()
    );
    Ok(ExitCode::SUCCESS)
}

/// The key directory is not created here: its owner and mode decide who can read the keys,
/// so the operator creates it (README: `install -d -m 0700 -o orthanc ...`).
fn key_file_error(out: &Path, e: std::io::Error) -> Failure {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    match (e.kind(), dir) {
        (std::io::ErrorKind::NotFound, Some(dir)) if !dir.is_dir() => Failure::Usage(format!(
            "--out {}: directory {} does not exist; create it first, e.g. install -d -m 0700 -o orthanc {}",
            out.display(),
            dir.display(),
            dir.display()
        )),
        (std::io::ErrorKind::AlreadyExists, _) => Failure::Usage(format!(
            "--out {}: exists; a key file is never overwritten (choose a new name or id)",
            out.display()
        )),
        _ => Failure::Failed(format!("{}: {e}", out.display())),
    }
}

/// The key ring and, with `--orthanc-config`, the rest of the configuration.
fn load(args: &KeyArgs) -> Result<(KeyRing, Option<StorageConfig>), Failure> {
    let mut config = None;
    let mut entries: Vec<(u32, PathBuf)> = Vec::new();
    if let Some(path) = &args.orthanc_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let json = serde_json::from_str(&strip_json_comments(&text))
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let c = StorageConfig::from_orthanc(&json).map_err(|e| Failure::Usage(e.to_string()))?;
        entries.push(c.master_key.clone());
        entries.extend(c.previous_keys.iter().cloned());
        config = Some(c);
    }
    for spec in &args.keys {
        let (id, path) = spec
            .split_once(':')
            .and_then(|(id, p)| Some((id.parse::<u32>().ok()?, PathBuf::from(p))))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--key {spec:?}: expected ID:PATH, e.g. 1:/etc/orthanc/1.key"
                ))
            })?;
        entries.push((id, path));
    }
    let mut keys = entries.iter().map(|(id, path)| MasterKey::load(*id, path));
    let current = keys.next().ok_or_else(|| {
        Failure::Usage("no master key: give --orthanc-config or --key ID:PATH".into())
    })??;
    let previous = keys.collect::<Result<Vec<_>, _>>()?;
    Ok((KeyRing::new(current, previous), config))
}

fn open(target: &Target) -> Result<Store, Failure> {
    let (keys, config) = load(&target.keys)?;
    let backend: Box<dyn Backend> = match (&target.root, &config) {
        (Some(root), _) => Box::new(FsBackend::new(root)),
        (None, Some(c)) => c.location.backend()?,
        (None, None) => {
            return Err(Failure::Usage(
                "no location: give --root DIR or --orthanc-config".into(),
            ))
        }
    };
    let limit = config.map_or(1 << 30, |c| c.max_input);
    Ok(Store::new(Arc::new(keys), backend, limit))
}

fn fs_root(target: &Target) -> Result<PathBuf, Failure> {
    if let Some(root) = &target.root {
        return Ok(root.clone());
    }
    let (_, config) = load(&target.keys)?;
    match config.map(|c| c.location) {
        Some(Location::Filesystem(root)) => Ok(root),
        _ => Err(Failure::Usage(
            "migrate works on a filesystem location (--root DIR)".into(),
        )),
    }
}

/// A store over the directory of `path`, and the file name in it.
fn file_store(keys: KeyRing, path: &Path) -> Result<(Store, String), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{}: not a file name", path.display())))?;
    Ok((
        Store::new(Arc::new(keys), Box::new(FsBackend::new(dir)), 1 << 30),
        name,
    ))
}

fn encrypt(keys: KeyRing, input: &Path, output: &Path) -> Result<ExitCode, Failure> {
    let mut file = std::fs::File::open(input)
        .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?
        .len();
    let (store, name) = file_store(keys, output)?;
    store.put_reader(&name, len, &mut file)?;
    Ok(ExitCode::SUCCESS)
}

fn decrypt(keys: KeyRing, input: &Path, output: &Path) -> Result<ExitCode, Failure> {
    let (store, name) = file_store(keys, input)?;
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{}: not a file name", output.display())))?;
    let out_backend = FsBackend::new(out_dir);
    let mut pending = out_backend.create(&out_name, 0)?;
    store.decrypt_to(&name, &mut pending)?;
    pending.commit()?;
    Ok(ExitCode::SUCCESS)
}
