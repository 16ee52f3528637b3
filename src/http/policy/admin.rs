//! The generated `admin` account: secure by default when no `[users]` are configured and
//! `http.authentication` is "required" (the default).
//!
//! On first start a random password (144 bits from the CSPRNG, base64url) is written as
//! `admin:<password>` to `admin.password` beside `tls.cert` (or `http.admin_password_file`),
//! 0600, and printed once on stderr, never through the log or audit streams. Later starts
//! read the file and say where it is. Only an argon2id hash of the password is kept in
//! memory; the plaintext buffers are zeroized.
//!
//! Abuse cases handled here: a symlink or FIFO planted at the path (opened with
//! O_NOFOLLOW | O_NONBLOCK, must be a regular file), a file readable by others, owned by
//! another account or in a directory others can write (refused, like a leaked key; the
//! last as OpenSSH's StrictModes does), concurrent first starts (the file appears
//! complete or not at all: temp file + link(2), which fails if the name exists, so exactly
//! one process generates and prints), an empty or edited-to-garbage file (exit 64 naming
//! the file and the fix).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use zeroize::Zeroizing;

use super::identity::{hash_password, random_bytes};
use crate::config::User;

mod error;
pub use error::AdminFileError;
use error::MIN_PASSWORD;

pub use crate::config::{GENERATED_ADMIN_FILE as FILE_NAME, GENERATED_ADMIN_USER as USER};
/// 18 bytes = 144 bits of entropy, exactly 24 base64url characters (no padding, no ':').
const GENERATED_BYTES: usize = 18;
const MAX_PASSWORD: usize = 256;
const MAX_FILE: u64 = 4096;

/// The generated account as loaded at start: its file and the hashed user.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub user: User,
}

/// What the announcement's curl example needs.
pub struct Hint<'a> {
    pub cert: &'a Path,
    pub listen: SocketAddr,
}

/// Create the file if it does not exist (printing the new password once), then load it.
pub fn start(path: &Path, hint: &Hint<'_>) -> Result<Loaded, AdminFileError> {
    let created = create(path)?;
    let loaded = load(path)?;
    match created {
        Some(password) => announce(path, &password, hint),
        None => tracing::info!(
            path = %path.display(),
            "HTTPS account \"admin\": its password is in this file (generated earlier)"
        ),
    }
    Ok(loaded)
}

/// Read and hash the password file.
pub fn load(path: &Path) -> Result<Loaded, AdminFileError> {
    let password = read(path)?;
    let salt = random_bytes::<16>().ok_or(AdminFileError::NoRandomness)?;
    let hash = hash_password(&password, &salt).map_err(AdminFileError::Hash)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        user: User {
            name: USER.to_string(),
            password_hash: Some(hash),
            certificate: None,
        },
    })
}

/// The generated user for a (re)built policy: only the one loaded at start.
pub fn matching(loaded: Option<&Loaded>, path: &Path) -> Result<User, AdminFileError> {
    match loaded {
        Some(l) if l.path == path => Ok(l.user.clone()),
        _ => Err(AdminFileError::StartOnly {
            path: path.to_path_buf(),
        }),
    }
}

/// For `pacsgate check`: validate an existing file without writing anything.
pub fn inspect(path: &Path) -> Result<String, AdminFileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(format!(
            "admin password file {}: does not exist yet; generated and printed once on first start",
            path.display()
        )),
        _ => {
            read(path)?;
            Ok(format!(
                "admin password file {}: present, mode 0600; reused on start",
                path.display()
            ))
        }
    }
}

/// Write a new password file unless one exists. `Some(password)` only for the process
/// whose file was linked into place.
fn create(path: &Path) -> Result<Option<Zeroizing<String>>, AdminFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, "cannot inspect", e)),
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, "cannot create the directory", e))?;
    // Before writing: a password that load() would refuse must not be generated either.
    check_directory(path)?;
    let password = generate()?;
    let nonce = random_bytes::<8>().ok_or(AdminFileError::NoRandomness)?;
    let tmp = dir.join(format!(
        ".{FILE_NAME}.{}.{}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let written = write_new(&tmp, &password);
    // link(2) fails with EEXIST if the name exists (even as a dangling symlink): of two
    // concurrent first starts exactly one wins, and the file appears only when complete.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // Make the new name durable before the password is shown to anyone.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Some(password))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_error(path, "cannot write", e)),
    }
}

fn write_new(tmp: &Path, password: &str) -> std::io::Result<()> {
    // create_new = O_EXCL: never follows a symlink planted at the temp name.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    let line = Zeroizing::new(format!("{USER}:{password}\n"));
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

fn generate() -> Result<Zeroizing<String>, AdminFileError> {
    let bytes =
        Zeroizing::new(random_bytes::<GENERATED_BYTES>().ok_or(AdminFileError::NoRandomness)?);
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
    ))
}

/// Open without following symlinks and without blocking on a FIFO; the file must be
/// regular, private (no group/other bits), ours or root's, small, and hold `admin:<pw>`.
fn read(path: &Path) -> Result<Zeroizing<String>, AdminFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => refused(path, "is a symbolic link"),
            _ => io_error(path, "cannot read", e),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| io_error(path, "cannot inspect", e))?;
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(AdminFileError::Shared {
            path: path.to_path_buf(),
            mode: meta.mode() & 0o777,
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(AdminFileError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            euid,
        });
    }
    check_directory(path)?;
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| io_error(path, "cannot read", e))?;
    if raw.len() as u64 > MAX_FILE {
        return Err(corrupt(path, "is larger than 4 KiB"));
    }
    parse(&raw).map_err(|problem| corrupt(path, problem))
}

/// Others who can write the directory can swap the file for one whose password they
/// know (unless the sticky bit stops them, as in /tmp): refuse, like OpenSSH's StrictModes.
fn check_directory(path: &Path) -> Result<(), AdminFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| io_error(dir, "cannot inspect", e))?;
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(AdminFileError::WritableDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// The first line must be `admin:<password>`, the password 16-256 printable ASCII
/// characters (no spaces or controls: what was generated, or a strong hand-written one).
fn parse(raw: &[u8]) -> Result<Zeroizing<String>, &'static str> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("is empty");
    }
    let Some(password) = line.strip_prefix(format!("{USER}:").as_bytes()) else {
        return Err("does not start with admin: on its first line");
    };
    if !password.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err("holds a password with characters other than printable ASCII");
    }
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        return Err("holds a password shorter than 16 or longer than 256 characters");
    }
    // All bytes are ASCII (checked above), so this conversion cannot fail.
    Ok(Zeroizing::new(
        String::from_utf8_lossy(password).into_owned(),
    ))
}

fn refused(path: &Path, problem: &'static str) -> AdminFileError {
    let path = path.to_path_buf();
    AdminFileError::Planted { path, problem }
}

fn corrupt(path: &Path, problem: &'static str) -> AdminFileError {
    let path = path.to_path_buf();
    AdminFileError::Corrupt { path, problem }
}

fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> AdminFileError {
    let path = path.to_path_buf();
    AdminFileError::Io { path, what, source }
}

/// Print the new password once, framed, on stderr: not through `tracing`, so it never
/// reaches JSON logs, log shippers or the audit file.
fn announce(path: &Path, password: &str, hint: &Hint<'_>) {
    let port = match hint.listen.port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let rule = "=".repeat(78);
    let text = Zeroizing::new(format!(
        "{rule}\n\
         pacsgate: no [users] are configured, so an HTTPS account was generated.\n\
         The password is shown only this once; it is kept in {file} (mode 0600).\n\
         \n    user:     {USER}\n    password: {password}\n\n\
         Try: curl --cacert {cert} -u '{USER}:{password}' https://localhost{port}/patients\n\
         Add [users] and [[http.rules]] to config.toml to replace this account.\n\
         {rule}\n",
        file = path.display(),
        cert = hint.cert.display(),
    ));
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests;
