//! DICOM peers for tests: dcmtk's storescp as an SCP, dcmtk and pynetdicom SCUs. dcmtk is
//! always called by its absolute path: pynetdicom installs console scripts of the same
//! names that would shadow it on PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::pki::{Ca, Leaf};
use super::process::{free_port, run, wait_for_port, Proc};

pub const ECHOSCU: &str = "/usr/bin/echoscu";
pub const STORESCU: &str = "/usr/bin/storescu";
pub const FINDSCU: &str = "/usr/bin/findscu";
pub const STORESCP: &str = "/usr/bin/storescp";

/// dcmtk's storescp on a free loopback port; with `tls`, it requires a client certificate
/// issued by `ca`.
pub struct StoreScp {
    pub port: u16,
    pub out: PathBuf,
    pub proc: Proc,
}

impl StoreScp {
    pub fn start(dir: &Path, aet: &str, tls: Option<(&Leaf, &Path)>) -> StoreScp {
        Self::start_logging(dir, aet, tls, "-v")
    }

    /// As [`StoreScp::start`] with dcmtk's log level flag: `-d` logs each A-ASSOCIATE-RQ's
    /// AE titles and each DIMSE command as dcmtk parsed it (the oracle's reading).
    pub fn start_logging(
        dir: &Path,
        aet: &str,
        tls: Option<(&Leaf, &Path)>,
        level: &str,
    ) -> StoreScp {
        let port = free_port();
        let out = dir.join(format!("storescp-{port}"));
        std::fs::create_dir_all(&out).expect("storescp dir");
        let mut cmd = Command::new(STORESCP);
        cmd.env("LD_PRELOAD", super::bind_lo())
            .args([level, "--aetitle", aet, "-od"])
            .arg(&out);
        if let Some((leaf, ca)) = tls {
            cmd.arg("+tls")
                .arg(&leaf.key)
                .arg(&leaf.cert)
                .args(["-pw", "+cf"])
                .arg(ca)
                .arg("--require-peer-cert");
        }
        cmd.arg(port.to_string());
        let proc = Proc::spawn("storescp", cmd, &dir.join(format!("storescp-{port}.log")));
        wait_for_port(port, Duration::from_secs(20));
        StoreScp { port, out, proc }
    }

    /// Files received so far.
    pub fn received(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.out)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

/// A remote site for outbound tunnels: its CA, a storescp "REMOTE" serving `remote` and
/// requiring client certificates from that CA, and our client certificate "PACSGATE".
pub struct RemoteSite {
    pub ca: Ca,
    pub server: Leaf,
    pub ours: Leaf,
    pub scp: StoreScp,
}

impl RemoteSite {
    pub fn start(dir: &Path) -> RemoteSite {
        let ca = Ca::new(dir, "Remote site CA");
        let server = ca.server(dir, "remote");
        let ours = ca.client(dir, "PACSGATE");
        let scp = StoreScp::start(dir, "REMOTE", Some((&server, &ca.path)));
        RemoteSite {
            ca,
            server,
            ours,
            scp,
        }
    }
}

/// TLS options for a dcmtk client: trust `ca`, present `client` (or none: anonymous).
pub fn dcmtk_tls(ca: &Path, client: Option<&Leaf>) -> Vec<String> {
    let mut args = Vec::new();
    match client {
        Some(leaf) => {
            args.push("+tls".into());
            args.push(leaf.key.display().to_string());
            args.push(leaf.cert.display().to_string());
            args.push("-pw".into());
        }
        None => args.push("+tla".into()),
    }
    args.push("+cf".into());
    args.push(ca.display().to_string());
    args
}

/// Calling and called AE titles plus the TLS options of [`dcmtk_tls`].
pub fn dcmtk_args(calling: &str, called: &str, ca: &Path, client: Option<&Leaf>) -> Vec<String> {
    let mut args = vec![
        "-aet".to_string(),
        calling.into(),
        "-aec".into(),
        called.into(),
    ];
    args.extend(dcmtk_tls(ca, client));
    args
}

/// Run a dcmtk tool with `-v` against 127.0.0.1:`port`.
pub fn dcmtk(tool: &str, port: u16, args: &[String], files: &[PathBuf]) -> (ExitStatus, String) {
    let mut cmd = Command::new(tool);
    cmd.arg("-v")
        .args(args)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files);
    run(cmd, Duration::from_secs(60))
}

/// Run tests/support/pynd_scu.py; `args` go before the operation.
pub fn pynetdicom(port: u16, args: &[String], op: &str, files: &[PathBuf]) -> (ExitStatus, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/pynd_scu.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(args)
        .arg(op)
        .args(files);
    run(cmd, Duration::from_secs(60))
}
