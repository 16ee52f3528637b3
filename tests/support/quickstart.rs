//! `deploy/quickstart.sh` itself, on free ports in a temp state directory, with the test
//! build's binary and storage plugin (no release build). The script runs in its own
//! process group; dropping the handle sends SIGTERM to the group (the script's traps stop
//! pacsgate, then Orthanc), and SIGKILL if it has not exited within 30 s.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::gateway::{binary, http_status};
use super::process::{free_port, Proc};
use super::storage::plugin_so;

pub struct Quickstart {
    pub state: tempfile::TempDir,
    pub proc: Proc,
    pub https_port: u16,
    pub orthanc_http_port: u16,
    /// `admin:<password>` as the quickstart printed it.
    pub admin: String,
    pub cert: PathBuf,
}

impl Quickstart {
    pub fn start() -> Quickstart {
        let state = tempfile::tempdir().expect("tempdir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/quickstart.sh");
        let (https, dicom, ohttp, odicom) = (free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .env("PACSGATE_STATE", state.path())
            .env("PACSGATE_BIN", binary())
            .env("PACSGATE_PLUGIN", plugin_so())
            .env("QUICKSTART_HTTPS_PORT", https.to_string())
            .env("QUICKSTART_DICOM_PORT", dicom.to_string())
            .env("QUICKSTART_ORTHANC_HTTP_PORT", ohttp.to_string())
            .env("QUICKSTART_ORTHANC_DICOM_PORT", odicom.to_string())
            .process_group(0);
        let log = state.path().join("quickstart.log");
        let proc = Proc::spawn("quickstart.sh", cmd, &log);
        let mut q = Quickstart {
            cert: state.path().join("certs/server.crt"),
            state,
            proc,
            https_port: https,
            orthanc_http_port: ohttp,
            admin: String::new(),
        };
        q.proc
            .wait_for_output("==> pacsgate is ready", Duration::from_secs(180));
        let out = q.proc.output();
        let after = out.split("==> pacsgate is ready").nth(1).unwrap_or("");
        q.admin = after
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("admin:"))
            .unwrap_or_else(|| panic!("no admin credentials printed:\n{out}"))
            .to_string();
        q
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }

    /// curl through the gateway (the quickstart's CA-less self-signed certificate pinned).
    pub fn status(&self, args: &[&str], path: &str) -> String {
        let cert = self.cert.display().to_string();
        let url = self.url(path);
        let mut all = vec!["--cacert", cert.as_str()];
        all.extend_from_slice(args);
        all.push(&url);
        http_status(&all).1
    }

    /// `pacsgate:<password>`: Orthanc's own account, which only the gateway holds.
    pub fn orthanc_credentials(&self) -> String {
        std::fs::read_to_string(self.state.path().join("orthanc.credentials"))
            .expect("orthanc.credentials")
            .trim()
            .to_string()
    }

    /// The gateway's and the script's output so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let group = format!("-{}", self.proc.pid());
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (Orthanc if the script was killed hard).
        kill("-KILL");
    }
}
