//! Orthanc endpoints refused before any rule, whoever asks: they run code or write files on
//! the PACS host, make Orthanc send requests on the caller's behalf (a confused deputy: a
//! peer whose URL is Orthanc's own loopback API turns `store-straight` into
//! `execute-script`), or change the running server's configuration. One stolen admin
//! password must not be enough to take the machine. An operator can open one only by naming
//! its id in `http.allow_dangerous`. The README section "HTTPS access policy" lists them
//! with the reasons; the route list was read from Orthanc 1.10.1's REST API registrations.

use super::glob::Glob;

/// One entry of the built-in deny set. Any method: Orthanc routes a trailing
/// `X-HTTP-Method-Override`/`_method` to other methods, and no safe use needs them.
#[derive(Debug)]
pub struct Dangerous {
    pub id: &'static str,
    pub paths: &'static [&'static str],
    pub reason: &'static str,
}

pub const DANGEROUS: &[Dangerous] = &[
    Dangerous {
        id: "execute-script",
        paths: &["/tools/execute-script"],
        reason: "runs arbitrary Lua (and through it shell commands) as the Orthanc user",
    },
    Dangerous {
        id: "export",
        paths: &[
            "/instances/*/export",
            "/series/*/export",
            "/studies/*/export",
            "/patients/*/export",
        ],
        reason: "writes a DICOM file to any path the request names, on the PACS host",
    },
    Dangerous {
        id: "webdav",
        paths: &["/webdav/**"],
        reason: "read/write access to the whole archive that bypasses per-route rules",
    },
    Dangerous {
        id: "peers",
        paths: &["/peers/**", "/transfers/**"],
        reason: "makes Orthanc send HTTP requests to any URL a peer names, its own API included",
    },
    Dangerous {
        id: "modalities",
        paths: &["/modalities/**", "/queries/**", "/tools/dicom-echo"],
        reason: "makes Orthanc open DICOM associations to any host and port, and C-MOVE to any AE",
    },
    Dangerous {
        id: "dicom-web-servers",
        paths: &["/dicom-web/servers/**"],
        reason: "makes Orthanc send DICOMweb requests to any URL a server entry names",
    },
    Dangerous {
        id: "server-admin",
        paths: &[
            "/tools/reset",
            "/tools/shutdown",
            "/tools/log-level*",
            "/tools/metrics",
            "/tools/default-encoding",
            "/tools/accepted-transfer-syntaxes",
            "/tools/unknown-sop-class-accepted",
        ],
        reason: "restarts or stops Orthanc or changes its running configuration",
    },
];

/// The deny set minus the ids the operator opened, compiled.
#[derive(Debug, Clone)]
pub struct DenySet(Vec<(&'static str, Glob)>);

impl DenySet {
    /// `opened`: ids from `http.allow_dangerous`, already checked by `is_known`.
    pub fn new(opened: &[String]) -> Self {
        let mut globs = Vec::new();
        for d in DANGEROUS
            .iter()
            .filter(|d| !opened.iter().any(|o| o == d.id))
        {
            for p in d.paths {
                // The patterns above are literals checked by the unit test below.
                if let Ok(g) = Glob::parse(p) {
                    globs.push((d.id, g));
                }
            }
        }
        Self(globs)
    }

    pub fn is_known(id: &str) -> bool {
        DANGEROUS.iter().any(|d| d.id == id)
    }

    /// The id of the entry `segments` falls under, if any.
    pub fn refuses(&self, segments: &[&str]) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(_, g)| g.matches(segments))
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::canonical::canonicalize;

    fn refused(set: &DenySet, path: &str) -> Option<&'static str> {
        let p = canonicalize(path).unwrap();
        let segs: Vec<&str> = p.segments().collect();
        set.refuses(&segs)
    }

    #[test]
    fn every_pattern_parses() {
        for d in DANGEROUS {
            for p in d.paths {
                assert!(Glob::parse(p).is_ok(), "{p}");
            }
        }
    }

    #[test]
    fn dangerous_endpoints_are_refused_unless_opened() {
        let all = DenySet::new(&[]);
        assert_eq!(
            refused(&all, "/tools/execute-script"),
            Some("execute-script")
        );
        assert_eq!(
            refused(&all, "/Tools/Execute-Script/"),
            Some("execute-script")
        );
        assert_eq!(refused(&all, "/instances/abc/export"), Some("export"));
        assert_eq!(refused(&all, "/webdav"), Some("webdav"));
        assert_eq!(refused(&all, "/webdav/a/b"), Some("webdav"));
        assert_eq!(refused(&all, "/peers/x/store-straight"), Some("peers"));
        assert_eq!(refused(&all, "/peers"), Some("peers"));
        assert_eq!(refused(&all, "/modalities/x"), Some("modalities"));
        assert_eq!(refused(&all, "/queries/1/retrieve"), Some("modalities"));
        assert_eq!(refused(&all, "/tools/dicom-echo"), Some("modalities"));
        assert_eq!(
            refused(&all, "/dicom-web/servers/x/stow"),
            Some("dicom-web-servers")
        );
        assert_eq!(refused(&all, "/dicom-web/studies"), None);
        assert_eq!(refused(&all, "/tools/log-level"), Some("server-admin"));
        assert_eq!(refused(&all, "/tools/log-level-http"), Some("server-admin"));
        assert_eq!(refused(&all, "/tools/reset"), Some("server-admin"));
        assert_eq!(refused(&all, "/tools/now"), None);
        assert_eq!(refused(&all, "/instances/abc/file"), None);
        assert_eq!(refused(&all, "/tools/find"), None);
        let opened = DenySet::new(&["webdav".into()]);
        assert_eq!(refused(&opened, "/webdav/a"), None);
        assert_eq!(
            refused(&opened, "/tools/execute-script"),
            Some("execute-script")
        );
    }
}
