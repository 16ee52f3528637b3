//! Configuration, the floor of the crate: TOML (`raw`) -> validated settings types
//! (`settings`, `http_policy`, `dicom_policy`, `certificate`, `glob`, `deny_set`) through
//! `validate`. Every problem is a [`ConfigError`] naming the key and the fix; nothing here
//! binds a port, and nothing here imports a runtime module (the one exception is the DICOM
//! AE-title grammar, `dicom::ae`, a leaf both sides share).
//!
//! Relative paths are resolved against the directory of the configuration file, so a
//! service manager can start pacsgate from any working directory.
//!
//! This file only names the parts: its children import each other directly, never through
//! it, so the import graph between files has no circles (tests/import_graph.rs).

mod certificate;
mod deny_set;
mod dicom_policy;
mod error;
mod glob;
mod http_policy;
mod policy;
mod raw;
mod settings;
mod validate;
mod values;

pub use certificate::{CertificateMatch, Fingerprint};
pub use deny_set::{Dangerous, DenySet, DANGEROUS};
pub use dicom_policy::{DicomPolicy, Modality, Services};
pub use error::{ConfigError, Misconfiguration};
pub use glob::Glob;
pub use http_policy::{
    check_phc, Action, Authentication, LimitsConfig, LockoutPolicy, PolicyConfig, RouteLimit, Rule,
    User, UserMatch, GENERATED_ADMIN_FILE, GENERATED_ADMIN_USER,
};
pub use settings::*;
pub use values::Rate;
