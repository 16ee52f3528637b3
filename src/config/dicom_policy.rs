//! `[dicom]` association policy and `[dicom.modalities.NAME]`, validated. The keys mirror
//! Orthanc's so a `DicomModalities` configuration translates one to one:
//!
//! | pacsgate | Orthanc |
//! |---|---|
//! | `called_aet` | `DicomAet` with `DicomCheckCalledAet: true` |
//! | `always_allow_echo` / `_store` / `_find` / `_find_worklist` / `_move` / `_get` | `DicomAlwaysAllowEcho` / ... |
//! | `check_modality_host` | `DicomCheckModalityHost` |
//! | `strict_aet_comparison` | `StrictAetComparison` |
//! | `modalities.NAME.aet`, `.hosts` | `DicomModalities.NAME.AET`, `.Host` |
//! | `modalities.NAME.allow` | `AllowEcho`, `AllowStore`, `AllowFind`, `AllowFindWorklist`, `AllowMove`, `AllowGet`, `AllowStorageCommitment` |

use ipnet::IpNet;

use super::certificate::CertificateMatch;
use super::error::ConfigError;
use super::raw::{RawDicom, RawModality};
use super::values::{certificate, cidr, positive, rate, Rate};

/// The DICOM services a peer may request (bit set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Services(u8);

impl Services {
    pub const ECHO: Self = Self(1);
    pub const STORE: Self = Self(2);
    pub const FIND: Self = Self(4);
    pub const FIND_WORKLIST: Self = Self(8);
    pub const MOVE: Self = Self(16);
    pub const GET: Self = Self(32);
    pub const STORAGE_COMMITMENT: Self = Self(64);
    pub const NAMES: [(&'static str, Self); 7] = [
        ("echo", Self::ECHO),
        ("store", Self::STORE),
        ("find", Self::FIND),
        ("find_worklist", Self::FIND_WORKLIST),
        ("move", Self::MOVE),
        ("get", Self::GET),
        ("storage_commitment", Self::STORAGE_COMMITMENT),
    ];

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn all() -> Self {
        Self(127)
    }
}

#[derive(Debug, Clone)]
pub struct Modality {
    /// The table name (`ct1` of `[dicom.modalities.ct1]`), for logs and audit.
    pub name: String,
    pub aet: String,
    pub hosts: Vec<IpNet>,
    pub certificate: Option<CertificateMatch>,
    pub allow: Services,
    /// `None`: any destination (the PACS decides); `Some`: only these AE titles.
    pub move_destinations: Option<Vec<String>>,
    pub max_associations: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct DicomPolicy {
    pub called_aet: Option<String>,
    pub always_allow: Services,
    pub check_modality_host: bool,
    pub strict_aet_comparison: bool,
    /// Empty: no per-modality command policy (pass-through; the PACS's own rules apply).
    pub modalities: Vec<Modality>,
    pub max_associations_per_ip: Option<usize>,
    pub max_associations_per_modality: Option<usize>,
    pub association_rate_per_ip: Option<Rate>,
}

pub(super) fn policy(raw: &RawDicom) -> Result<DicomPolicy, ConfigError> {
    let mut always = Services::default();
    for (on, s) in [
        (raw.always_allow_echo, Services::ECHO),
        (raw.always_allow_store, Services::STORE),
        (raw.always_allow_find, Services::FIND),
        (raw.always_allow_find_worklist, Services::FIND_WORKLIST),
        (raw.always_allow_move, Services::MOVE),
        (raw.always_allow_get, Services::GET),
    ] {
        if on {
            always = always.union(s);
        }
    }
    let called_aet = raw
        .called_aet
        .as_deref()
        .map(|v| ae_title("dicom.called_aet", v))
        .transpose()?;
    let modalities = raw
        .modalities
        .iter()
        .map(|(name, m)| modality(name, m, raw.check_modality_host))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DicomPolicy {
        called_aet,
        always_allow: always,
        check_modality_host: raw.check_modality_host,
        strict_aet_comparison: raw.strict_aet_comparison,
        modalities,
        max_associations_per_ip: optional_limit(
            "dicom.max_associations_per_ip",
            raw.max_associations_per_ip,
        )?,
        max_associations_per_modality: optional_limit(
            "dicom.max_associations_per_modality",
            raw.max_associations_per_modality,
        )?,
        association_rate_per_ip: raw
            .association_rate_per_ip
            .as_deref()
            .map(|v| rate("dicom.association_rate_per_ip", v))
            .transpose()?,
    })
}

fn modality(name: &str, raw: &RawModality, check_host: bool) -> Result<Modality, ConfigError> {
    let key = |k: &str| format!("dicom.modalities.{name}.{k}");
    let aet = ae_title(&key("aet"), &raw.aet)?;
    let hosts = raw
        .hosts
        .iter()
        .map(|h| cidr(&key("hosts"), h))
        .collect::<Result<Vec<_>, _>>()?;
    if check_host && hosts.is_empty() {
        return Err(ConfigError::new(
            key("hosts"),
            "is empty but dicom.check_modality_host is true",
            "list the modality's IP addresses or CIDRs, e.g. [\"192.168.0.10\"]",
        ));
    }
    let certificate = raw
        .certificate
        .as_deref()
        .map(|c| certificate(&key("certificate"), c))
        .transpose()?;
    let allow_list = raw.allow.as_ref().ok_or_else(|| {
        ConfigError::new(
            key("allow"),
            "is missing",
            "list what the modality may do, e.g. allow = [\"echo\", \"store\"] (echo, store, find, find_worklist, move, get, storage_commitment)",
        )
    })?;
    let mut allow = Services::default();
    for service in allow_list {
        let (_, s) = Services::NAMES
            .iter()
            .find(|(n, _)| n == service)
            .ok_or_else(|| {
                ConfigError::new(
                    key("allow"),
                    format!("unknown service {service:?}"),
                    "use echo, store, find, find_worklist, move, get or storage_commitment",
                )
            })?;
        allow = allow.union(*s);
    }
    let move_destinations = raw
        .move_destinations
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|d| ae_title(&key("move_destinations"), d))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let max_associations = optional_limit(&key("max_associations"), raw.max_associations)?;
    Ok(Modality {
        name: name.to_string(),
        aet,
        hosts,
        certificate,
        allow,
        move_destinations,
        max_associations,
    })
}

/// An optional limit: absent means none, present means at least 1.
fn optional_limit(key: &str, value: Option<usize>) -> Result<Option<usize>, ConfigError> {
    value.map(|v| positive(key, v)).transpose()
}

/// PS3.5 §6.2 (AE VR): 1-16 characters of the default repertoire, no backslash or control
/// characters; leading/trailing spaces are not significant.
pub(super) fn ae_title(key: &str, value: &str) -> Result<String, ConfigError> {
    // The wire grammar (crate::dicom::ae), after the spaces a config value may carry.
    crate::dicom::ae::title(value.trim_matches(' ').as_bytes())
        .map(str::to_string)
        .map_err(|e| {
            ConfigError::new(
                key,
                format!("{value:?} is not a valid AE title ({e})"),
                "use 1 to 16 printable ASCII characters without backslash",
            )
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(dicom: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("[http]\nenabled = false\n[dicom]\n{dicom}"),
            Path::new("."),
        )
    }

    fn error_key(dicom: &str) -> String {
        let e = parse(dicom).unwrap_err();
        assert!(!e.fix.is_empty(), "{e}");
        e.key
    }

    #[test]
    fn orthanc_defaults_and_a_full_modality() {
        let c = parse("").unwrap().dicom.unwrap().policy;
        assert_eq!(c.always_allow, Services::ECHO.union(Services::STORE));
        assert!(c.modalities.is_empty() && c.called_aet.is_none());
        let fp = "sha256:".to_string() + &"AB:".repeat(31) + "AB";
        let c = parse(&format!(
            "called_aet = \" ORTHANC \"\nassociation_rate_per_ip = \"60/min\"\n[dicom.modalities.ct1]\naet = \"CT1\"\nhosts = [\"10.0.0.1\", \"10.1.0.0/16\"]\ncertificate = \"{fp}\"\nallow = [\"echo\", \"find_worklist\"]\nmove_destinations = [\"WS1\"]\n"
        ))
        .unwrap()
        .dicom
        .unwrap()
        .policy;
        assert_eq!(c.called_aet.as_deref(), Some("ORTHANC"));
        assert_eq!(c.association_rate_per_ip.unwrap().count.get(), 60);
        let m = &c.modalities[0];
        assert_eq!((m.name.as_str(), m.aet.as_str()), ("ct1", "CT1"));
        assert!(m.allow.contains(Services::FIND_WORKLIST) && !m.allow.contains(Services::FIND));
        assert!(matches!(
            m.certificate,
            Some(CertificateMatch::Fingerprint(_))
        ));
        assert_eq!(m.hosts.len(), 2);
    }

    #[test]
    fn errors_name_the_key() {
        let m = "[dicom.modalities.ct1]\naet = \"CT1\"\n";
        assert_eq!(error_key(m), "dicom.modalities.ct1.allow");
        assert_eq!(
            error_key(&format!("{m}allow = [\"delete\"]")),
            "dicom.modalities.ct1.allow"
        );
        assert_eq!(
            error_key(&format!("{m}allow = []\ncertificate = \"sha256:12\"")),
            "dicom.modalities.ct1.certificate"
        );
        assert_eq!(
            error_key(&format!("{m}allow = []\nhosts = [\"ct.example.org\"]")),
            "dicom.modalities.ct1.hosts"
        );
        assert_eq!(
            error_key(&format!("check_modality_host = true\n{m}allow = []")),
            "dicom.modalities.ct1.hosts"
        );
        assert_eq!(
            error_key("called_aet = \"MUCH_TOO_LONG_FOR_AN_AE\""),
            "dicom.called_aet"
        );
        // The wire grammar (dicom::ae): no NUL, tab or backslash, even at the ends.
        for bad in ["ORT\\u0000HANC", "\\tORTHANC", "OR\\\\THANC"] {
            assert_eq!(
                error_key(&format!("called_aet = \"{bad}\"")),
                "dicom.called_aet"
            );
        }
        assert_eq!(
            error_key("association_rate_per_ip = \"10 per second\""),
            "dicom.association_rate_per_ip"
        );
        assert_eq!(
            error_key("max_associations_per_ip = 0"),
            "dicom.max_associations_per_ip"
        );
        assert_eq!(
            error_key(&format!("{m}allow = []\ncolour = \"red\"")),
            "dicom.modalities.ct1.colour"
        );
    }
}
