//! The load-balanced topology of tests/proxy_protocol.rs: Debian's Orthanc, two pacsgate
//! replicas trusting PROXY headers from 127.0.0.1 only, and Debian's HAProxy in TCP mode
//! in front; clients connect from other loopback addresses (127.0.0.2, 127.0.0.3) so the
//! client is never the LB. Also: TCP connections from a chosen source address, and a
//! spoofing client that sends a PROXY header and then speaks TLS.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::gateway::{curl, tls_section, Gateway};
use super::haproxy::Haproxy;
use super::orthanc::Orthanc;
use super::pki::Ca;
use super::policy::{hash, ADMIN_PW};
use super::process::{free_port, run, wait_until};

pub const REAL: &str = "127.0.0.2";
pub const OTHER: &str = "127.0.0.3";

pub struct Replica {
    pub https: u16,
    pub dicom: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub gateway: Gateway,
}

/// Orthanc, two replicas trusting PROXY headers from 127.0.0.1 only, and HAProxy with
/// three frontends: `v2` (round robin over both, send-proxy-v2, v2 LOCAL health checks),
/// `v1` (replica 1, send-proxy), `dicom` (both DICOM listeners, send-proxy-v2).
pub struct Topology {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub orthanc: Orthanc,
    pub replicas: Vec<Replica>,
    pub v2: u16,
    pub v1: u16,
    pub dicom: u16,
    pub lb: Haproxy,
}

pub fn topology(http_extra: &str) -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("xff.lua");
    // Orthanc prints the X-Forwarded-For it receives: the PACS is the witness.
    std::fs::write(
        &lua,
        "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n  \
         print('XFF=' .. tostring(headers['x-forwarded-for']) .. ' ' .. uri)\n  return true\nend\n",
    )
    .unwrap();
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({ "LuaScripts": [lua] }));
    let ca = Ca::new(dir.path(), "LB test CA");
    let server = ca.server(dir.path(), "localhost");
    let replicas: Vec<Replica> = (1..=2)
        .map(|n| {
            let rdir = dir.path().join(format!("replica{n}"));
            std::fs::create_dir_all(&rdir).unwrap();
            let (https, dicom, admin) = (free_port(), free_port(), free_port());
            let toml = format!(
                r#"{tls}[audit]
path = {audit:?}
[admin]
listen = "127.0.0.1:{admin}"
[http]
listen = "127.0.0.1:{https}"
upstream = "http://127.0.0.1:{oh}"
proxy_protocol = ["127.0.0.1/32"]
{http_extra}
[users.admin]
password_hash = "{pw}"
[[http.rules]]
name = "admin-from-real"
users = ["admin"]
sources = ["{REAL}/32"]
methods = ["GET"]
paths = ["/**"]
[dicom]
listen = "127.0.0.1:{dicom}"
upstream = "127.0.0.1:{od}"
proxy_protocol = ["127.0.0.1/32"]
called_aet = "ORTHANC"
check_modality_host = true
[dicom.modalities.ct]
aet = "CT1"
hosts = ["{REAL}"]
allow = ["echo"]
"#,
                tls = tls_section(&server, ""),
                audit = rdir.join("audit.jsonl").display().to_string(),
                oh = orthanc.http_port,
                od = orthanc.dicom_port,
                pw = hash(ADMIN_PW),
            );
            let gateway = Gateway::start(&rdir, &toml);
            Replica {
                https,
                dicom,
                admin,
                dir: rdir,
                gateway,
            }
        })
        .collect();
    let (v2, v1, dicom) = (free_port(), free_port(), free_port());
    let (a, b) = (&replicas[0], &replicas[1]);
    let sections = format!(
        "frontend v2\n    bind 127.0.0.1:{v2}\n    default_backend https_v2\n\
         backend https_v2\n    balance roundrobin\n\
         \x20   server gw1 127.0.0.1:{} send-proxy-v2 check check-send-proxy inter 200ms\n\
         \x20   server gw2 127.0.0.1:{} send-proxy-v2 check check-send-proxy inter 200ms\n\
         frontend v1\n    bind 127.0.0.1:{v1}\n    default_backend https_v1\n\
         backend https_v1\n    server gw1 127.0.0.1:{} send-proxy\n\
         frontend dicom\n    bind 127.0.0.1:{dicom}\n    default_backend dicom_v2\n\
         backend dicom_v2\n    balance roundrobin\n\
         \x20   server d1 127.0.0.1:{} send-proxy-v2\n\
         \x20   server d2 127.0.0.1:{} send-proxy-v2\n",
        a.https, b.https, a.https, a.dicom, b.dicom
    );
    let lb = Haproxy::start(dir.path(), &sections, &[v2, v1, dicom]);
    Topology {
        dir,
        ca,
        orthanc,
        replicas,
        v2,
        v1,
        dicom,
        lb,
    }
}

impl Topology {
    /// GET `path` as admin through `port` from source address `from`, `n` times, each on
    /// its own connection (so round robin spreads them): the status codes.
    pub fn get(&self, port: u16, from: &str, path: &str, n: usize) -> Vec<u16> {
        self.get_as(&format!("admin:{ADMIN_PW}"), (port, from), path, n)
    }

    /// [`Topology::get`] with other credentials (`user:password`).
    pub fn get_as(&self, creds: &str, (port, from): (u16, &str), path: &str, n: usize) -> Vec<u16> {
        let ca = self.ca.path.display().to_string();
        let url = format!("https://localhost:{port}{path}");
        let mut rc = String::new();
        for i in 0..n {
            if i > 0 {
                rc.push_str("next\n");
            }
            rc.push_str(&format!(
                "url = \"{url}\"\ncacert = \"{ca}\"\nuser = \"{creds}\"\ninterface = \"{from}\"\n\
                 ipv4\nheader = \"Connection: close\"\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\n"
            ));
        }
        let file = self
            .dir
            .path()
            .join(format!("get-{from}-{n}-{}.curlrc", creds.len()));
        std::fs::write(&file, rc).unwrap();
        let (_, out, err) = curl(&["--config", file.to_str().unwrap()]);
        let codes: Vec<u16> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(codes.len(), n, "curl: {err}");
        codes
    }

    pub fn audit(&self, replica: usize) -> Vec<serde_json::Value> {
        let path = self.replicas[replica].dir.join("audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// HTTP audit records of both replicas, once there are `n` (the writer is async).
    pub fn http_records(&self, n: usize) -> Vec<serde_json::Value> {
        let all = || -> Vec<serde_json::Value> {
            (0..2)
                .flat_map(|r| self.audit(r))
                .filter(|r| r.get("client").is_some())
                .collect()
        };
        wait_until("audit records", Duration::from_secs(10), || {
            all().len() >= n
        });
        all()
    }

    /// `pacsgate_proxy_protocol_total{listener, result}` of a replica.
    pub fn proxy_metric(&self, replica: usize, listener: &str, result: &str) -> u64 {
        let (_, body) = super::http_get(self.replicas[replica].admin, "/metrics").unwrap();
        let needle = format!(
            "pacsgate_proxy_protocol_total{{listener=\"{listener}\",result=\"{result}\"}} "
        );
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }
}

/// A blocking TCP connection to 127.0.0.1:`port` from source address `from` (std cannot
/// bind before connecting; tokio's `TcpSocket` can).
pub fn connect_from(from: &str, port: u16) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect")
    });
    let std = stream.into_std().unwrap();
    std.set_nonblocking(false).unwrap();
    std
}

/// From `from`, send `header` (a Python bytes literal) to `port`, then try TLS and an
/// authenticated GET: `REFUSED <why>` or what came back.
pub fn spoof(t: &Topology, from: &str, port: u16, header: &str) -> String {
    let script = format!(
        r#"
import base64, socket, ssl
s = socket.socket()
s.bind(("{from}", 0))
s.settimeout(10)
s.connect(("127.0.0.1", {port}))
s.sendall({header})
ctx = ssl.create_default_context(cafile="{ca}")
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")
    auth = base64.b64encode(b"admin:{pw}").decode()
    t.sendall(("GET /system HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic " + auth + "\r\nConnection: close\r\n\r\n").encode())
    print("ANSWERED", t.recv(100))
except (OSError, ssl.SSLError) as e:
    print("REFUSED", type(e).__name__, e)
"#,
        ca = t.ca.path.display(),
        pw = ADMIN_PW,
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    run(cmd, Duration::from_secs(30)).1
}
