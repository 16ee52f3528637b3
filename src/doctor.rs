//! `pacsgate doctor [--config C] [--orthanc-config orthanc.json]`: reads pacsgate's and
//! Orthanc's configuration, probes the running system, and prints one line per check,
//! `PASS|WARN|FAIL <check>: <detail> -> <fix>` (DESIGN.md contract); any FAIL exits 1.
//!
//! FAIL: the PACS or its data is exposed now (a port reachable from the network, open
//! mode on a public listener, an expired certificate, a key others can read, a storage
//! plugin that is configured but not loaded). WARN: hardening that is missing.

mod finding;
mod gateway;
mod orthanc;
mod orthanc_json;
mod probe;

use std::path::{Path, PathBuf};

use crate::config::Config;

pub use self::finding::{Finding, Level};
pub use self::orthanc_json::OrthancConfig;

/// Debian's Orthanc package keeps its configuration here (several merged JSON files).
pub const DEBIAN_ORTHANC_CONFIG: &str = "/etc/orthanc";

/// Run every check. `orthanc_config`: the file or directory to read; `None` reads
/// Debian's /etc/orthanc when it exists.
pub fn run(config_path: &Path, orthanc_config: Option<&Path>) -> Vec<Finding> {
    let mut out = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => {
            out.push(Finding::pass(
                "pacsgate config",
                format!("{} is valid", config_path.display()),
            ));
            Some(c)
        }
        Err(e) => {
            out.push(Finding::fail(
                "pacsgate config",
                e.to_string(),
                "fix the key named (pacsgate check shows the same error)",
            ));
            None
        }
    };
    if let Some(c) = &config {
        out.extend(gateway::checks(c));
    }
    let orthanc_path: Option<PathBuf> = orthanc_config.map(Path::to_path_buf).or_else(|| {
        Path::new(DEBIAN_ORTHANC_CONFIG)
            .exists()
            .then(|| DEBIAN_ORTHANC_CONFIG.into())
    });
    let orthanc = match orthanc_path {
        None => {
            out.push(Finding::warn(
                "orthanc config",
                "not read (no --orthanc-config and no /etc/orthanc)",
                "pass --orthanc-config with Orthanc's JSON file or directory",
            ));
            None
        }
        Some(p) => match OrthancConfig::load(&p) {
            Ok(o) => {
                out.push(Finding::pass(
                    "orthanc config",
                    format!("read {}", p.display()),
                ));
                Some(o)
            }
            Err(e) => {
                out.push(Finding::fail(
                    "orthanc config",
                    e,
                    "pass the file or directory Orthanc is started with",
                ));
                None
            }
        },
    };
    out.extend(orthanc::checks(orthanc.as_ref(), config.as_ref()));
    out
}

/// Exit status: 1 if any check failed.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Fail)
}
