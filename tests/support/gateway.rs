//! The real pacsgate binary, started with a configuration written by the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{run, Proc};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pacsgate")
}

pub struct Gateway {
    pub proc: Proc,
    pub config: PathBuf,
}

impl Gateway {
    /// Write `toml` to `dir/pacsgate.toml`, start `pacsgate run`, wait for "pacsgate ready".
    pub fn start(dir: &Path, toml: &str) -> Gateway {
        Self::start_with_env(dir, toml, &[])
    }

    /// [`Gateway::start`] with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Gateway {
        let config = dir.join("pacsgate.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,pacsgate=debug")
            .envs(env.iter().copied());
        let log = dir.join(format!(
            "pacsgate-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut proc = Proc::spawn("pacsgate", cmd, &log);
        proc.wait_for_output("pacsgate ready", Duration::from_secs(60));
        Gateway { proc, config }
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }
}

/// Run `pacsgate check` or `run` on a config expected to be refused: (exit code, output).
pub fn run_expecting_exit(dir: &Path, toml: &str, subcommand: &str) -> (Option<i32>, String) {
    let config = dir.join("bad.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut cmd = Command::new(binary());
    cmd.arg(subcommand).arg("--config").arg(&config);
    let (status, out) = run(cmd, Duration::from_secs(30));
    (status.code(), out)
}

/// A DICOM-only gateway: `[tls]` serving `server` (plus `tls_extra` lines), HTTP off,
/// `[dicom]` listening on `port` in front of `upstream`, plus `dicom_extra` lines (which
/// may open further tables, e.g. `[dicom.modalities.ct]`).
pub fn dicom_only(
    server: &super::pki::Leaf,
    tls_extra: &str,
    port: u16,
    upstream: u16,
    dicom_extra: &str,
) -> String {
    format!(
        "{}[http]\nenabled = false\n[dicom]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{upstream}\"\n{dicom_extra}",
        tls_section(server, tls_extra)
    )
}

/// A `[tls]` section serving `server` (cert and key files) with extra lines appended.
pub fn tls_section(server: &super::pki::Leaf, extra: &str) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{extra}\n",
        server.cert.display().to_string(),
        server.key.display().to_string()
    )
}

/// curl printing only the HTTP status code; returns (exit status, code, stderr). The code
/// is "000" when no response arrived.
pub fn http_status(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    curl(&all)
}

/// curl with the given arguments; returns (exit status, stdout, stderr).
pub fn curl(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl is needed; run tests/run.sh");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
