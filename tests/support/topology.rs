//! deploy/topology.sh driven by a test: the two-node topology (PostgreSQL, SeaweedFS,
//! Redis, two Orthanc nodes with the PostgreSQL index and the encrypting plugin on S3, two
//! pacsgate replicas, HAProxy) on free ports, with the debug builds under test; stopped by
//! `down` on drop. Clients, raw S3 reads and pg_dump for the at-rest checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, port_open, run};
use super::storage::status_and_body;

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/topology.sh");

pub struct Topology {
    pub dir: PathBuf,
    /// DIR/topology.env as the script recorded it (LB_ADDR, HTTPS_PORT, GW_A_ADDR, ...).
    pub env: HashMap<String, String>,
}

/// A free port p whose p + 10000 is free too (SeaweedFS puts gRPC there).
pub fn grpc_pair_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55000 && !port_open(p + 10000) {
            return p;
        }
    }
}

impl Topology {
    /// `deploy/topology.sh up DIR` with free ports and `extra` environment
    /// (`TOPOLOGY_CLUSTER=1`, ...); panics with the script's output if it fails.
    pub fn up(dir: &Path, extra: &[(&str, &str)]) -> Topology {
        let mut env: Vec<(String, String)> = [
            "HTTPS_PORT",
            "DICOM_PORT",
            "GW_HTTPS_PORT",
            "GW_DICOM_PORT",
            "GW_ADMIN_PORT",
            "ORTHANC_A_HTTP",
            "ORTHANC_A_DICOM",
            "ORTHANC_B_HTTP",
            "ORTHANC_B_DICOM",
            "PG_PORT",
            "REDIS_PORT",
        ]
        .iter()
        .map(|k| (format!("TOPOLOGY_{k}"), free_port().to_string()))
        .collect();
        for k in ["S3_PORT", "WEED_MASTER", "WEED_VOLUME", "WEED_FILER"] {
            env.push((format!("TOPOLOGY_{k}"), grpc_pair_port().to_string()));
        }
        let mut topology = Topology {
            dir: dir.to_path_buf(),
            env: HashMap::new(),
        };
        let out = topology.script("up", &env, extra);
        let recorded = std::fs::read_to_string(dir.join("topology.env")).unwrap_or_default();
        topology.env = recorded
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(out.contains("topology up in"), "{out}");
        topology
    }

    /// Run the script (`up` restarts whatever is not running; `down`; `status`).
    pub fn script(&self, cmd: &str, env: &[(String, String)], extra: &[(&str, &str)]) -> String {
        let mut c = Command::new("bash");
        c.arg(SCRIPT)
            .arg(cmd)
            .arg(&self.dir)
            .env("PACSGATE_BIN", super::gateway::binary())
            .env("PACSGATE_PLUGIN", super::storage::plugin_so())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied());
        let (status, out) = run(c, Duration::from_secs(300));
        assert!(status.success(), "topology.sh {cmd}: {out}");
        out
    }

    /// `down`, then check that it left nothing running: `status` says stopped for every
    /// component and none of the pids it had recorded still runs.
    pub fn down_and_check(&self) {
        let names = [
            "postgres",
            "s3",
            "redis",
            "orthanc-a",
            "orthanc-b",
            "gateway-a",
            "gateway-b",
            "haproxy",
        ];
        let pids: Vec<u32> = names.iter().map(|n| self.pid(n)).collect();
        self.script("down", &[], &[]);
        let status = self.script("status", &[], &[]);
        for name in names {
            assert!(status.contains(&format!("{name} stopped")), "{status}");
        }
        for pid in pids {
            // A zombie (state Z, waiting for init to reap it) runs nothing.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            assert!(
                matches!(state, None | Some("Z") | Some("X")),
                "pid {pid} still running after down: {stat}"
            );
        }
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in topology.env"))
    }

    pub fn port(&self, key: &str) -> u16 {
        self.get(key).parse().expect("port")
    }

    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("secrets").join(name))
            .expect("secret file")
            .trim()
            .to_string()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("secrets/tls.crt")
    }

    /// The recorded pid of a component (`gateway-a`, `orthanc-b`, `redis`, ...).
    pub fn pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.dir.join("run").join(format!("{name}.pid")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid recorded for {name}"))
    }

    /// SIGKILL a component by its recorded pid.
    pub fn kill9(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-KILL", &self.pid(name).to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {name}");
    }

    /// `(addr, https port, dicom port)` of the balancer (`"lb"`) or a replica (`"a"`, `"b"`).
    pub fn front(&self, which: &str) -> (String, u16, u16) {
        match which {
            "lb" => (
                self.get("LB_ADDR").into(),
                self.port("HTTPS_PORT"),
                self.port("DICOM_PORT"),
            ),
            "a" | "b" => (
                self.get(&format!("GW_{}_ADDR", which.to_uppercase()))
                    .into(),
                self.port("GW_HTTPS_PORT"),
                self.port("GW_DICOM_PORT"),
            ),
            other => panic!("unknown front {other}"),
        }
    }

    /// curl as `admin` against a front; `args` are extra curl arguments (method, data, URL
    /// path last). Returns (HTTP code, body). The certificate names `localhost`.
    pub fn https(&self, which: &str, args: &[&str], path: &str) -> (u16, Vec<u8>) {
        let (addr, port, _) = self.front(which);
        let ca = self.ca();
        let user = format!("admin:{}", self.secret("admin.password"));
        let resolve = format!("localhost:{port}:{addr}");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "120",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args(["--resolve", &resolve, "-u", &user])
            .args(args)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("curl");
        status_and_body(out.stdout)
    }

    /// pynetdicom C-STORE of `files` on one association through a front: (success, output).
    pub fn store(&self, which: &str, files: &[PathBuf]) -> (bool, String) {
        let (addr, _, port) = self.front(which);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/pynd_scu.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(&addr)
            .arg(port.to_string())
            .arg("--ca")
            .arg(self.ca())
            .arg("store")
            .args(files);
        let (status, out) = run(cmd, Duration::from_secs(120));
        (status.success(), out)
    }

    /// Raw S3 request with the topology's credentials: (HTTP code, body).
    pub fn s3(&self, path: &str) -> (u16, Vec<u8>) {
        let user = format!("orthanc:{}", self.secret("s3.secret"));
        let out = Command::new("curl")
            .args(["-s", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user])
            .arg(format!(
                "http://{}:{}{path}",
                self.get("S3_ADDR"),
                self.get("S3_PORT")
            ))
            .output()
            .expect("curl");
        status_and_body(out.stdout)
    }

    /// Every object in the bucket, read raw: (key, bytes). One listing page holds 1000
    /// keys; the tests store far fewer (a truncated listing fails the test).
    pub fn s3_objects(&self) -> Vec<(String, Vec<u8>)> {
        let (code, body) = self.s3("/orthanc?list-type=2");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(!text.contains("<IsTruncated>true"), "listing truncated");
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .map(|key| {
                let (code, raw) = self.s3(&format!("/orthanc/{key}"));
                assert_eq!(code, 200, "GET {key}");
                (key, raw)
            })
            .collect()
    }

    /// pg_dump of the shared index database (as the superuser of the throwaway cluster).
    pub fn pg_dump(&self) -> Vec<u8> {
        let out = Command::new("/usr/lib/postgresql/15/bin/pg_dump")
            .args(["-h", self.get("PG_ADDR"), "-p", self.get("PG_PORT")])
            .args(["-U", "postgres", "orthanc"])
            .env("PGPASSWORD", self.secret("pg-super.password"))
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Orthanc node `a` or `b` directly, with the gateways' account: (code, body).
    pub fn orthanc(&self, node: &str, path: &str) -> (u16, Vec<u8>) {
        let port = self.get(&format!("ORTHANC_{}_HTTP", node.to_uppercase()));
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "60",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-K",
            ])
            .arg(self.dir.join("secrets/orthanc.curlrc"))
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        status_and_body(out.stdout)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Never leave daemons behind, even when the test failed (or `up` half-succeeded).
        if self.dir.join("topology.env").exists() {
            let mut c = Command::new("bash");
            c.arg(SCRIPT).arg("down").arg(&self.dir);
            let (status, out) = run(c, Duration::from_secs(120));
            if !status.success() {
                eprintln!("topology.sh down: {out}");
            }
        }
    }
}
