//! `pacsgate-storage keygen | encrypt | decrypt | verify | migrate | rekey`: operator tools
//! over the `pacsgate-storage` crate, the same code the Orthanc plugin runs. A binary of its
//! own (and `pacsgate storage ARGS` executes it) so the internet-facing gateway does not
//! link the object-store and key-service HTTP clients these commands need (issue 11).
//!
//! Keys and location come either from Orthanc's JSON configuration (`--orthanc-config`,
//! the plugin's `PacsgateStorage` section) or from `--key ID:PATH` (first = current) and
//! `--root DIR`. Output files are written atomically (temp, fsync, rename).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use pacsgate_storage::backend::fs::FsBackend;
use pacsgate_storage::backend::Backend;
use pacsgate_storage::config::{strip_json_comments, Location, StorageConfig};
use pacsgate_storage::keys::location::KeyLocation;
use pacsgate_storage::keys::{KeyRing, MasterKeyProvider};
use pacsgate_storage::Store;

mod cli;
mod keygen;
mod objects;

use self::cli::{Cli, Command, KeyArgs, KmsArgs, StorageCommand, Target};
use self::keygen::{keygen, keygen_aws_kms, keygen_pkcs11, keygen_vault};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Storage(cmd) => run(cmd),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pacsgate-storage", &mut out);
            write_stdout(&out)
        }
        Command::Man { out_dir } => match clap_mangen::generate_to(Cli::command(), &out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pacsgate-storage: man: {}: {e}", out_dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Stdout may be a closed pipe (`... | head`): stop quietly rather than panic.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacsgate-storage: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run one storage command; errors are printed, exit 1 (64 for usage mistakes).
fn run(cmd: StorageCommand) -> ExitCode {
    match execute(cmd) {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            eprintln!("pacsgate-storage: {msg}");
            ExitCode::from(64)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("pacsgate-storage: {msg}");
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
        StorageCommand::Keygen {
            out,
            pkcs11,
            aws_kms,
            vault_transit,
            kms,
        } => match (out, pkcs11, aws_kms, vault_transit) {
            (Some(out), None, false, None) => keygen(&out),
            (None, Some(uri), false, None) => keygen_pkcs11(&uri),
            (None, None, true, None) => keygen_aws_kms(&kms),
            (None, None, false, Some(name)) => keygen_vault(&name, &kms),
            _ => Err(Failure::Usage(
                "keygen needs one of --out FILE, --pkcs11 URI, --aws-kms, --vault-transit NAME"
                    .into(),
            )),
        },
        StorageCommand::Encrypt {
            keys,
            content_type,
            input,
            output,
        } => {
            let (keys, _) = load(&keys)?;
            encrypt(keys, content_type, &input, &output)
        }
        StorageCommand::Decrypt {
            keys,
            name,
            input,
            output,
        } => {
            let (keys, _) = load(&keys)?;
            decrypt(keys, name.as_deref(), &input, &output)
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

/// The key ring and, with `--orthanc-config`, the rest of the configuration.
fn load(args: &KeyArgs) -> Result<(KeyRing, Option<StorageConfig>), Failure> {
    let mut config = None;
    let mut remotes = args.kms.remotes();
    let mut entries: Vec<(u32, KeyLocation)> = Vec::new();
    if let Some(path) = &args.orthanc_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let json = serde_json::from_str(&strip_json_comments(&text))
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        let c = StorageConfig::from_orthanc(&json).map_err(|e| Failure::Usage(e.to_string()))?;
        entries.push(c.master_key.clone());
        entries.extend(c.previous_keys.iter().cloned());
        remotes.kms = remotes.kms.or_else(|| c.remotes.kms.clone());
        remotes.vault = remotes.vault.or_else(|| c.remotes.vault.clone());
        config = Some(c);
    }
    for spec in &args.keys {
        let (id, location) = spec
            .split_once(':')
            .and_then(|(id, l)| Some((id.parse::<u32>().ok()?, l)))
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--key {spec:?}: expected ID:LOCATION, e.g. 1:/etc/orthanc/1.key or 2:aws-kms:alias/pacs"
                ))
            })?;
        let location = KeyLocation::parse(location)
            .map_err(|e| Failure::Usage(format!("--key {spec:?}: {e}")))?;
        entries.push((id, location));
    }
    let mut keys = entries
        .iter()
        .map(|(id, location)| location.open(*id, &remotes).map(|p| (*id, p)));
    let current: (u32, Box<dyn MasterKeyProvider>) = keys.next().ok_or_else(|| {
        Failure::Usage("no master key: give --orthanc-config or --key ID:LOCATION".into())
    })??;
    let previous = keys.collect::<Result<Vec<_>, _>>()?;
    Ok((KeyRing::from_providers(current, previous), config))
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

fn encrypt(
    keys: KeyRing,
    content_type: u32,
    input: &Path,
    output: &Path,
) -> Result<ExitCode, Failure> {
    let mut file = std::fs::File::open(input)
        .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?
        .len();
    let (store, name) = file_store(keys, output)?;
    store.put_reader(&name, content_type, len, &mut file)?;
    Ok(ExitCode::SUCCESS)
}

fn decrypt(
    keys: KeyRing,
    bound_to: Option<&str>,
    input: &Path,
    output: &Path,
) -> Result<ExitCode, Failure> {
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
    // A renamed loose file is opened under the name it was encrypted as (--name).
    store.decrypt_named(&name, bound_to.unwrap_or(&name), None, &mut pending)?;
    pending.commit()?;
    Ok(ExitCode::SUCCESS)
}
