//! `cluster.redis_password_file`: read once at start, checked like every secret file.

use std::path::Path;

use crate::config::ConfigError;

/// The Redis password: first line of a regular file that only its owner can read.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    const KEY: &str = "cluster.redis_password_file";
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError::new(
            KEY,
            format!("cannot read {}: {e}", path.display()),
            "point it at a file holding the Redis password (mode 0600)",
        )
    })?;
    if !meta.is_file() || meta.mode() & 0o077 != 0 {
        return Err(ConfigError::new(
            KEY,
            format!(
                "{} is not a regular file readable only by its owner (mode {:o})",
                path.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(KEY, format!("cannot read {}: {e}", path.display()), ""))?;
    let password = text.lines().next().unwrap_or("").trim_end().to_string();
    if password.is_empty() {
        return Err(ConfigError::new(
            KEY,
            format!("{} is empty", path.display()),
            "write the Redis password (requirepass) on its first line",
        ));
    }
    Ok(password)
}
