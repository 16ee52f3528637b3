//! The one error type of configuration loading: always names the key and the fix, prints on
//! one line, and maps to exit code 64 (EX_USAGE) in `main`.

use std::fmt;

/// A configuration problem: `key` is the dotted TOML path (`tls.client_ca`), `problem` what is
/// wrong with it, `fix` what the operator should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line: newlines inside the underlying messages (TOML parser, IO) are flattened.
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(f, "{}: {}", self.key, flat(&self.problem))?;
        if !self.fix.is_empty() {
            write!(f, "; {}", flat(&self.fix))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A runtime module's own error that is, at start-up, a configuration problem: it names
/// the key to change and the fix. Runtime modules keep their typed errors (with sources)
/// and implement this; the `From` below is the one place they become a `ConfigError`, the
/// one-line message that exits 64 before any port is bound. The floor defines the trait,
/// so it imports nothing from the modules above it.
pub trait Misconfiguration: std::error::Error {
    fn key(&self) -> String;
    fn fix(&self) -> String;
}

impl<E: Misconfiguration> From<E> for ConfigError {
    fn from(e: E) -> Self {
        ConfigError::new(e.key(), e.to_string(), e.fix())
    }
}
