//! The HTTP oracle's harness (tests/http_oracle.rs): Debian's Orthanc 1.10.1 with a Lua
//! `IncomingHttpRequestFilter` that records the method and URI Orthanc is about to
//! dispatch (after CivetWeb's decoding and dot handling, before the REST router) and admits
//! only GETs, a gateway in front of it, and the readings both sides are compared on.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::gateway::{tls_section, Gateway};
use super::orthanc::Orthanc;
use super::pki::Ca;
use super::policy::{hash, ADMIN_PW};
use super::process::free_port;
use super::rawhttp::{send_plain, H2Client, Reply, TlsSender};

const FILTER: &str = r#"
local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
end
function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  local f = io.open(ORACLE_LOG, 'a')
  f:write(hex(method) .. ' ' .. hex(uri) .. '\n')
  f:close()
  if headers['x-oracle-setup'] == 'yes' then return true end
  return method == 'GET'
end
"#;

/// What Orthanc reported for one request: method and URI as it dispatches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub method: String,
    pub uri: Vec<u8>,
}

pub struct Oracle {
    pub orthanc: Orthanc,
    pub log: PathBuf,
    offset: u64,
    pub gateway_port: u16,
    pub tls: TlsSender,
    pub h2: H2Client,
    pub auth: String,
    /// Bodies of the read-only routes, asked directly with their canonical spelling.
    pub reference: Vec<(String, Reply)>,
}

impl Oracle {
    /// Lines Orthanc's filter wrote since the last call.
    pub fn routed(&mut self) -> Vec<Routed> {
        let mut f = std::fs::File::open(&self.log).expect("oracle log");
        let mut text = String::new();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(self.offset)).expect("seek");
        f.read_to_string(&mut text).expect("read oracle log");
        self.offset += text.len() as u64;
        text.lines()
            .filter_map(|l| {
                let (m, u) = l.split_once(' ')?;
                Some(Routed {
                    method: String::from_utf8(unhex(m)).ok()?,
                    uri: unhex(u),
                })
            })
            .collect()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Orthanc's `Toolbox::SplitUriComponents` ignores one trailing slash.
pub fn route_of(uri: &[u8]) -> &[u8] {
    uri.strip_suffix(b"/").unwrap_or(uri)
}

/// The deny set in Orthanc's own (case-sensitive) route terms: nothing forwarded may land
/// here, whatever the gateway's code believes.
pub fn is_dangerous(uri: &[u8]) -> bool {
    let text = String::from_utf8_lossy(route_of(uri)).to_string();
    let segs: Vec<&str> = text.split('/').skip(1).collect();
    let first = segs.first().copied().unwrap_or("");
    matches!(
        first,
        "webdav" | "peers" | "transfers" | "modalities" | "queries"
    ) || matches!(
        segs.as_slice(),
        [
            "tools",
            "execute-script" | "dicom-echo" | "reset" | "shutdown" | "metrics"
        ] | ["tools", "default-encoding" | "accepted-transfer-syntaxes"]
            | ["tools", "unknown-sop-class-accepted"]
            | ["instances" | "series" | "studies" | "patients", _, "export"]
            | ["dicom-web", "servers", ..]
    ) || (segs.len() == 2 && first == "tools" && segs[1].starts_with("log-level"))
}

/// What the gateway's own canonicalizer makes of a target (hyper's URI parse first).
pub fn gateway_canonical(target: &[u8]) -> Option<String> {
    let uri = http::Uri::try_from(target).ok()?;
    pacsgate::http::canonical::canonicalize(uri.path())
        .ok()
        .map(|c| c.as_str().to_string())
}

pub fn start(dir: &Path) -> (Oracle, Gateway, Vec<(&'static str, String)>) {
    let log = dir.join("routed.log");
    std::fs::write(&log, "").expect("oracle log");
    let script = dir.join("filter.lua");
    std::fs::write(
        &script,
        format!("ORACLE_LOG = {:?}\n{FILTER}", log.display().to_string()),
    )
    .expect("filter");
    let orthanc = Orthanc::start(
        dir,
        serde_json::json!({
            "LuaScripts": [script],
            "OrthancPeers": {"x": ["http://127.0.0.1:9/"]},
        }),
    );
    let (pid, iid) = upload(orthanc.http_port);
    let ca = Ca::new(dir, "Oracle CA");
    let server = ca.server(dir, "server");
    let port = free_port();
    let toml = format!(
        "{}[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n[users.admin]\npassword_hash = \"{}\"\n[[http.rules]]\nname = \"admin\"\nusers = [\"admin\"]\npaths = [\"/**\"]\n",
        tls_section(&server, ""),
        orthanc.http_port,
        hash(ADMIN_PW)
    );
    let gateway = Gateway::start(dir, &toml);
    let routes: Vec<(&'static str, String)> = vec![
        ("GET", "/system".into()),
        ("GET", "/tools/now".into()),
        ("GET", "/instances".into()),
        ("GET", format!("/patients/{pid}")),
        ("GET", format!("/instances/{iid}/tags")),
        ("GET", "/app/explorer.html".into()),
        ("POST", "/tools/find".into()),
        ("POST", "/tools/execute-script".into()),
        ("POST", format!("/instances/{iid}/export")),
        ("GET", "/peers/x".into()),
        ("POST", "/peers/x/store-straight".into()),
        ("PUT", "/tools/log-level".into()),
        ("GET", "/webdav/".into()),
    ];
    let reference = routes
        .iter()
        .filter(|(m, _)| *m == "GET")
        .filter_map(|(_, p)| {
            Some((
                p.clone(),
                send_plain(orthanc.http_port, "GET", p.as_bytes(), "")?,
            ))
        })
        .collect();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PW}"));
    let mut oracle = Oracle {
        tls: TlsSender::new(port, &ca.path, &[b"http/1.1"]),
        h2: H2Client::connect(port, &ca.path),
        orthanc,
        log,
        offset: 0,
        gateway_port: port,
        auth,
        reference,
    };
    // Start from here: set-up requests are not part of any check.
    oracle.routed();
    (oracle, gateway, routes)
}

/// Store a sample instance straight into Orthanc: (patient id, instance id).
fn upload(port: u16) -> (String, String) {
    let file = super::pydicom_file("CT_small.dcm");
    let (ok, out, err) = super::gateway::curl(&[
        "-H",
        "X-Oracle-Setup: yes",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://127.0.0.1:{port}/instances"),
    ]);
    assert!(ok.success(), "upload: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("upload answer");
    let id = |k: &str| v[k].as_str().expect("id in upload answer").to_string();
    (id("ParentPatient"), id("ID"))
}
