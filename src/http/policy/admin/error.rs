//! Why the generated account's password file cannot be used, with the IO error kept as
//! the source. Every case is about `http.admin_password_file`; the fix says what the
//! operator does (and when the password must be treated as leaked). At start-up
//! `config::ConfigError` takes it through `config::Misconfiguration`: exit 64.

use std::io;
use std::path::PathBuf;

use crate::config::Misconfiguration;

/// The key every case is about.
pub(super) const KEY: &str = "http.admin_password_file";
/// A password an operator writes into the file by hand must still resist guessing (the
/// parent's parser enforces it; the fix states it).
pub(super) const MIN_PASSWORD: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AdminFileError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// A symlink, FIFO, device or directory where the file should be.
    #[error("{} {problem}", path.display())]
    Planted {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("{} is accessible by group or others (mode {mode:o})", path.display())]
    Shared { path: PathBuf, mode: u32 },
    #[error("{} is owned by uid {owner}, not by uid {euid} or root", path.display())]
    Owner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("{} is in {}, which group or others can write (mode {mode:o})", path.display(), dir.display())]
    WritableDirectory {
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
    #[error("{} {problem}", path.display())]
    Corrupt {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("no system randomness")]
    NoRandomness,
    #[error("the generated account ({}) is created and read at start only", path.display())]
    StartOnly { path: PathBuf },
}

impl Misconfiguration for AdminFileError {
    fn key(&self) -> String {
        match self {
            AdminFileError::NoRandomness => "users".into(),
            _ => KEY.into(),
        }
    }

    fn fix(&self) -> String {
        match self {
            AdminFileError::Io { .. } => {
                "make the directory writable by pacsgate, or set http.admin_password_file".into()
            }
            AdminFileError::Planted { .. } => "replace it with a regular file (mode 0600), or delete it to generate a new password".into(),
            AdminFileError::Shared { path, .. } => format!(
                "chmod 600 {} (and treat the password as leaked: delete the file to generate a new one)",
                path.display()
            ),
            AdminFileError::Owner { .. } => {
                "chown it to the account pacsgate starts as, or delete it to generate a new one"
                    .into()
            }
            AdminFileError::WritableDirectory { dir, .. } => format!(
                "chmod go-w {} (and delete the file: its password may be known)",
                dir.display()
            ),
            AdminFileError::Corrupt { .. } => format!(
                "delete it to generate a new password on the next start, or write \
                 admin:<password> ({MIN_PASSWORD}+ printable ASCII characters) on its first line"
            ),
            AdminFileError::Hash(_) => String::new(),
            AdminFileError::NoRandomness => "check /dev/urandom".into(),
            AdminFileError::StartOnly { .. } => "restart pacsgate to apply this change".into(),
        }
    }
}
