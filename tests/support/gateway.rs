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

/// Both DICOM directions of one gateway: the TLS listener on `inbound` in front of a PACS,
/// and one outbound tunnel listening on `outbound` (plain) towards a TLS remote. `ca`
/// issued the listener's certificate ("localhost").
pub struct Edge {
    pub inbound: u16,
    pub outbound: u16,
    pub ca: super::pki::Ca,
    pub gateway: Gateway,
}

impl Edge {
    /// `pacs`: the listener's upstream port; `remote`: the tunnel's remote port and the CA
    /// file that issued its certificate (the edge's own CA if `None`); `dicom` and `tunnel`:
    /// extra lines for `[dicom]` and for the `[[dicom.outbound]]` table.
    pub fn start(
        dir: &Path,
        pacs: u16,
        (remote, remote_ca): (u16, Option<&Path>),
        (dicom, tunnel): (&str, &str),
    ) -> Edge {
        let ca = super::pki::Ca::new(dir, "Edge CA");
        let server = ca.server(dir, "localhost");
        let (inbound, outbound) = (super::process::free_port(), super::process::free_port());
        let remote_ca = remote_ca.unwrap_or(&ca.path).display().to_string();
        let extra = format!(
            "{dicom}\n[[dicom.outbound]]\nlisten = \"127.0.0.1:{outbound}\"\n\
             remote = \"127.0.0.1:{remote}\"\nserver_name = \"localhost\"\nca = {remote_ca:?}\n{tunnel}\n"
        );
        let gateway = Gateway::start(dir, &dicom_only(&server, "", inbound, pacs, &extra));
        Edge {
            inbound,
            outbound,
            ca,
            gateway,
        }
    }

    /// A TLS client of the listener, handshake done.
    pub fn tls_client(&self) -> super::raw::RawClient {
        let mut client = super::raw::RawClient::connect(self.inbound, &self.ca.path, None);
        client.handshake().expect("handshake");
        client
    }

    /// A plain client of the tunnel (30 s read timeout).
    pub fn tunnel_client(&self) -> std::net::TcpStream {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.outbound)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        tcp
    }
}

/// The next whole PDU from a plain stream; panics on EOF or a reset.
pub fn read_pdu(tcp: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut header = [0u8; 6];
    tcp.read_exact(&mut header)
        .expect("a PDU, not a close or reset");
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    let mut pdu = header.to_vec();
    pdu.resize(6 + len, 0);
    tcp.read_exact(&mut pdu[6..]).expect("the whole PDU");
    pdu
}
