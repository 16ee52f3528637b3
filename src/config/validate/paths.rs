//! Paths in the configuration: resolved against the file's directory, checked readable.

use std::path::{Path, PathBuf};

use super::super::error::ConfigError;

pub(super) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        ConfigError::new(
            key,
            format!("cannot read {}: {e}", path.display()),
            "point it at an existing PEM file readable by pacsgate",
        )
    })
}

pub(super) fn pair_error(missing: &str, present: &str) -> ConfigError {
    ConfigError::new(
        missing,
        format!("is missing while {present} is set"),
        format!("set both {missing} and {present}, or neither"),
    )
}
