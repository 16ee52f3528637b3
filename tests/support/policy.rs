//! The HTTPS access policy in front of a real Orthanc: users with passwords hashed by
//! `pacsgate hash-password`, the Orthanc book's sample rules, and a curl helper that
//! returns status codes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::gateway::{http_status, tls_section, Gateway};
use super::orthanc::Orthanc;
use super::pki::Ca;
use super::process::free_port;

pub const ADMIN_PW: &str = "admin-Secret-1";
pub const USER_PW: &str = "user-Secret-2";

/// `pacsgate hash-password` with the password on stdin.
pub fn hash(password: &str) -> String {
    let mut child = Command::new(super::gateway::binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "hash-password failed");
    let phc = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    phc
}

/// `[users]` with admin and user, and the book's rules: admin anything from 127.0.0.1,
/// user GET only.
pub fn sample_policy() -> String {
    format!(
        r#"
[users.admin]
password_hash = "{}"
[users.user]
password_hash = "{}"

[[http.rules]]
name = "admin-local"
users = ["admin"]
sources = ["127.0.0.1/32"]
methods = ["*"]
paths = ["/**"]

[[http.rules]]
name = "user-read"
users = ["user"]
methods = ["GET"]
paths = ["/**"]
"#,
        hash(ADMIN_PW),
        hash(USER_PW)
    )
}

/// Orthanc (verbose, Lua enabled so a leak would show) behind a gateway with `policy`.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub orthanc: Orthanc,
    pub ca: Ca,
    pub port: u16,
    pub gateway: Gateway,
    /// Requests sent through [`Site::status`]: how many audit records to wait for.
    sent: std::cell::Cell<usize>,
}

impl Site {
    /// `http_extra` goes inside `[http]`; `policy` after it (users, rules, sub-tables).
    pub fn start(orthanc_extra: serde_json::Value, http_extra: &str, policy: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut extra = serde_json::json!({"ExecuteLuaEnabled": true});
        if let (Some(e), Some(o)) = (extra.as_object_mut(), orthanc_extra.as_object()) {
            e.extend(o.clone());
        }
        let orthanc = Orthanc::start_with_args(dir.path(), extra, &["--verbose"]);
        let ca = Ca::new(dir.path(), "Test CA");
        let server = ca.server(dir.path(), "server");
        let port = free_port();
        let audit = dir.path().join("audit.jsonl");
        let toml = format!(
            "{}[audit]\npath = {:?}\n[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n{http_extra}\n{policy}\n",
            tls_section(&server, ""),
            audit.display().to_string(),
            orthanc.http_port
        );
        let gateway = Gateway::start(dir.path(), &toml);
        Site {
            dir,
            orthanc,
            ca,
            port,
            gateway,
            sent: std::cell::Cell::new(0),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// curl with the CA and `args`; returns the status code (0 if curl failed).
    pub fn status(&self, args: &[&str]) -> u16 {
        let ca = self.ca.path.display().to_string();
        let mut all = vec!["--cacert", &ca];
        all.extend_from_slice(args);
        let (_, out, err) = http_status(&all);
        self.sent.set(self.sent.get() + 1);
        let code = out.trim().parse().unwrap_or(0);
        if code == 0 {
            eprintln!("curl {args:?} failed: {err}");
        }
        code
    }

    /// Orthanc's log lines for REST requests it received (`(http) METHOD /uri`).
    pub fn orthanc_requests(&self) -> Vec<String> {
        self.orthanc
            .proc
            .output()
            .lines()
            .filter_map(|l| l.split_once("(http) ").map(|(_, r)| r.to_string()))
            .filter(|r| {
                let mut words = r.splitn(2, ' ');
                let method = words.next().unwrap_or("");
                !method.is_empty()
                    && method.chars().all(|c| c.is_ascii_uppercase())
                    && words.next().is_some_and(|p| p.starts_with('/'))
            })
            .collect()
    }

    /// The audit records, once there is one per request sent through [`Site::status`]
    /// (the writer thread writes them shortly after the response; 10 s at most).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let read = || -> Vec<serde_json::Value> {
            let text =
                std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut records = read();
        while records.len() < self.sent.get() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            records = read();
        }
        records
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
