//! The PACS is the oracle: generated spellings of Orthanc routes are sent to Debian's
//! Orthanc 1.10.1 directly and through the gateway (HTTP/1.1, and HTTP/2 where the
//! spelling is a valid `:path`), and Orthanc itself reports which URI it routes on.
//!
//! Orthanc runs a Lua `IncomingHttpRequestFilter`, which Orthanc calls with the method and
//! URI it is about to dispatch (after CivetWeb's decoding and dot handling, before the REST
//! router): it writes them to a file and admits only GETs, so nothing that changes state
//! runs. The test fails when
//! - the gateway forwards a spelling and Orthanc routes it on a URI other than the one the
//!   gateway checked (its canonical path, decoded), or other than the one Orthanc routes
//!   the same spelling on when it comes directly;
//! - anything forwarded lands on an endpoint of the built-in deny set;
//! - a forwarded read-only GET answers differently from the canonical route.
//!
//! `ORACLE_SEED` and `ORACLE_SPELLINGS` (default 10 000) repeat or widen a run; a failure
//! is printed with its mutations shrunk to the ones that matter.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};

use support::gateway::{tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::policy::{hash, ADMIN_PW};
use support::process::free_port;
use support::rawhttp::{send_plain, H2Client, Reply, TlsSender};
use support::spelling::{mutations, show, shrink, spell, Mutation, Rng};

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
struct Routed {
    method: String,
    uri: Vec<u8>,
}

struct Oracle {
    orthanc: Orthanc,
    log: PathBuf,
    offset: u64,
    gateway_port: u16,
    tls: TlsSender,
    h2: H2Client,
    auth: String,
    /// Bodies of the read-only routes, asked directly with their canonical spelling.
    reference: Vec<(String, Reply)>,
}

impl Oracle {
    /// Lines Orthanc's filter wrote since the last call.
    fn routed(&mut self) -> Vec<Routed> {
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

fn percent_decode(s: &str) -> Vec<u8> {
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
fn route_of(uri: &[u8]) -> &[u8] {
    uri.strip_suffix(b"/").unwrap_or(uri)
}

/// The deny set in Orthanc's own (case-sensitive) route terms: nothing forwarded may land
/// here, whatever the gateway's code believes.
fn is_dangerous(uri: &[u8]) -> bool {
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
fn gateway_canonical(target: &[u8]) -> Option<String> {
    let uri = http::Uri::try_from(target).ok()?;
    pacsgate::http::canonical::canonicalize(uri.path())
        .ok()
        .map(|c| c.as_str().to_string())
}

/// Check one spelling; `Err` describes the disagreement.
fn check(o: &mut Oracle, method: &str, path: &str, muts: &[Mutation]) -> Result<(), String> {
    let sp = spell(method, path, muts);
    let prefix = |auth: String| -> Vec<u8> {
        let mut t = if sp.absolute {
            auth.into_bytes()
        } else {
            Vec::new()
        };
        t.extend_from_slice(&sp.target);
        t
    };
    // A `#` fragment is not part of a request target (RFC 9112 §3.2): hyper drops it and
    // the PACS never receives it, while CivetWeb would keep it in the path. So Orthanc is
    // asked about the spelling without its fragment, which is what the gateway forwards.
    let mut direct_target = prefix(format!("http://127.0.0.1:{}", o.orthanc.http_port));
    if let Some(hash) = direct_target.iter().position(|&b| b == b'#') {
        direct_target.truncate(hash);
    }
    send_plain(o.orthanc.http_port, &sp.method, &direct_target, "");
    let direct = o.routed();
    let gw_target = prefix(format!("https://localhost:{}", o.gateway_port));
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    let h1 = o.tls.send(&sp.method, &gw_target, &auth);
    let via_h1 = o.routed();
    let basic = format!("Basic {}", o.auth);
    let h2 = if sp.absolute {
        None
    } else {
        o.h2.send(&sp.method, &sp.target, &basic)
    };
    let via_h2 = o.routed();
    if direct.len() > 1 || via_h1.len() > 1 || via_h2.len() > 1 {
        return Err(format!(
            "more than one routed request: {direct:?} {via_h1:?} {via_h2:?}"
        ));
    }
    for (leg, routed, reply) in [("HTTP/1.1", &via_h1, &h1), ("HTTP/2", &via_h2, &h2)] {
        let Some(fwd) = routed.first() else { continue };
        if is_dangerous(&fwd.uri) {
            return Err(format!(
                "{leg}: forwarded to a denied endpoint {}",
                show(&fwd.uri)
            ));
        }
        let canonical = gateway_canonical(&gw_target)
            .ok_or_else(|| format!("{leg}: forwarded although the canonicalizer refuses it"))?;
        if percent_decode(&canonical) != fwd.uri {
            return Err(format!(
                "{leg}: gateway checked {canonical} but Orthanc routed {}",
                show(&fwd.uri)
            ));
        }
        if let Some(d) = direct.first() {
            if route_of(&d.uri) != route_of(&fwd.uri) || d.method != fwd.method {
                return Err(format!(
                    "{leg}: Orthanc routes the spelling as {} {} but the gateway forwarded {} {}",
                    d.method,
                    show(&d.uri),
                    fwd.method,
                    show(&fwd.uri)
                ));
            }
        }
        // A query (`?expand`) changes the answer; compare only plain paths.
        if fwd.method == "GET" && !gw_target.contains(&b'?') {
            same_as_reference(o, &fwd.uri, reply.as_ref()).map_err(|e| format!("{leg}: {e}"))?;
        }
    }
    Ok(())
}

/// A forwarded GET of a read-only route answers like the canonical request did.
fn same_as_reference(o: &Oracle, uri: &[u8], reply: Option<&Reply>) -> Result<(), String> {
    let Some((route, expected)) = o
        .reference
        .iter()
        .find(|(r, _)| route_of(r.as_bytes()) == route_of(uri))
    else {
        return Ok(());
    };
    let got = reply.ok_or("no reply")?;
    if got.status != expected.status {
        return Err(format!(
            "{route}: status {} instead of {}",
            got.status, expected.status
        ));
    }
    // `/tools/now` changes every second; the others are stable during the run.
    if route != "/tools/now" && got.body != expected.body {
        return Err(format!(
            "{route}: body differs from the canonical request's"
        ));
    }
    Ok(())
}

fn start(dir: &Path) -> (Oracle, Gateway, Vec<(&'static str, String)>) {
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
    let auth = base64_basic(&format!("admin:{ADMIN_PW}"));
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
    let file = support::pydicom_file("CT_small.dcm");
    let (ok, out, err) = support::gateway::curl(&[
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

fn base64_basic(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn gateway_and_orthanc_agree_on_every_generated_spelling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, gateway, routes) = start(dir.path());
    let rss_before = gateway.proc.rss_kib();
    let seed: u64 = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xAC1E_2026);
    let count: usize = std::env::var("ORACLE_SPELLINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    eprintln!("oracle: seed {seed}, {count} spellings");
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    let mut orthanc_bypass_spellings = 0;
    for _ in 0..count {
        let (method, path) = rng.pick(&routes).clone();
        let muts = mutations(&mut rng);
        if let Err(e) = check(&mut o, method, &path, &muts) {
            if failures.len() < 5 {
                let min = shrink(&muts, |m| check(&mut o, method, &path, m).is_err());
                let sp = spell(method, &path, &min);
                failures.push(format!("{} {} ({min:?}): {e}", sp.method, show(&sp.target)));
            } else {
                failures.push(e);
            }
        }
        // How often Orthanc itself turns a spelling that is not literally a dangerous path
        // into one: proof that the run exercises the bypass class, not just easy cases.
        let sp = spell(method, &path, &muts);
        if !sp.absolute && sp.target.ends_with(b".") && path.contains("execute-script") {
            orthanc_bypass_spellings += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements between the gateway and Orthanc (seed {seed}); first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Hostile spellings by the thousand leave the gateway up and its memory bounded.
    let rss_after = gateway.proc.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "gateway RSS grew from {rss_before} to {rss_after} KiB"
    );
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    assert_eq!(
        o.tls.send("GET", b"/system", &auth).map(|r| r.status),
        Some(200)
    );
    assert!(
        orthanc_bypass_spellings > 0,
        "the generator never produced a dot-suffixed execute-script"
    );
}

/// The confirmed findings, each as Orthanc reads it directly (it runs the dangerous
/// route) and as the gateway answers (refused, nothing routed).
#[test]
fn dot_suffix_spellings_that_orthanc_strips_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, _gateway, _) = start(dir.path());
    for (method, target, orthanc_route) in [
        ("POST", "/tools/execute-script.", "/tools/execute-script"),
        ("POST", "/tools./execute-script", "/tools/execute-script"),
        ("POST", "/tools/.../execute-script", "/tools/execute-script"),
        ("POST", "/tools/execute-script%2E", "/tools/execute-script"),
        ("PUT", "/tools/log-level.", "/tools/log-level"),
        ("POST", "/tools/find.", "/tools/find"),
        ("GET", "/webdav./", "/webdav/"),
    ] {
        send_plain(o.orthanc.http_port, method, target.as_bytes(), "");
        let direct = o.routed();
        assert_eq!(
            direct.first().map(|r| route_of(&r.uri).to_vec()),
            Some(route_of(orthanc_route.as_bytes()).to_vec()),
            "Orthanc no longer reads {target} as {orthanc_route}: update the model"
        );
        let auth = format!("Authorization: Basic {}\r\n", o.auth);
        let reply = o.tls.send(method, target.as_bytes(), &auth);
        assert_eq!(reply.map(|r| r.status), Some(400), "{method} {target}");
        assert!(o.routed().is_empty(), "{method} {target} reached Orthanc");
    }
}

/// `GET ...?_method=DELETE` is a DELETE to Orthanc; the gateway refuses every spelling of
/// the parameter that some Orthanc version or parser could read as it.
#[test]
fn method_faking_is_refused_in_every_spelling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, _gateway, routes) = start(dir.path());
    let patient = routes
        .iter()
        .find(|(_, p)| p.starts_with("/patients/"))
        .map(|(_, p)| p.clone())
        .expect("patient route");
    send_plain(
        o.orthanc.http_port,
        "GET",
        format!("{patient}?_method=DELETE").as_bytes(),
        "",
    );
    assert_eq!(
        o.routed().first().map(|r| r.method.clone()).as_deref(),
        Some("DELETE"),
        "Orthanc no longer fakes methods from the query: update the model"
    );
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    for query in [
        "_method=DELETE",
        "_method%00=DELETE",
        "x=1;_method=DELETE",
        "_method[]=DELETE",
        "%255Fmethod=DELETE",
        "%5Fmethod=DELETE",
        "_METHOD=delete",
    ] {
        let target = format!("{patient}?{query}");
        let reply = o.tls.send("GET", target.as_bytes(), &auth);
        assert_eq!(reply.map(|r| r.status), Some(400), "{target}");
        assert!(o.routed().is_empty(), "{target} reached Orthanc");
    }
    // The patient is still there.
    let reply = o.tls.send("GET", patient.as_bytes(), &auth);
    assert_eq!(reply.map(|r| r.status), Some(200));
}
