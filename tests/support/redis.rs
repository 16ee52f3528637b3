//! Debian's redis-server started by a test on a free port (no persistence), stopped and
//! started again on the same port to test degraded mode and recovery; `redis-cli` for
//! looking at what the gateways stored; and a fake "Redis" that answers garbage.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, port_open, wait_for_port, wait_until, Proc};

pub struct Redis {
    pub port: u16,
    pub password: Option<String>,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Redis {
    /// `requirepass` when `password` is set.
    pub fn start(dir: &Path, password: Option<&str>) -> Redis {
        let mut r = Redis {
            port: free_port(),
            password: password.map(str::to_string),
            dir: dir.to_path_buf(),
            proc: None,
        };
        // A free port can be taken by another test between free_port() and redis-server's
        // bind: then this server exits and the port is open, but not ours. Try another.
        for _ in 0..5 {
            if r.up() {
                return r;
            }
            r.port = free_port();
        }
        panic!("redis-server could not bind a free port in 5 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start on `self.port` and wait until this server says it accepts connections (an
    /// open port alone could be another process's). False if it could not bind.
    fn up(&mut self) -> bool {
        let mut cmd = Command::new("/usr/bin/redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut proc = Proc::spawn("redis-server", cmd, &log);
        let mut ready = false;
        wait_until("redis-server to start", Duration::from_secs(30), || {
            ready = proc.output().contains("Ready to accept connections");
            ready || matches!(proc.child.try_wait(), Ok(Some(_)))
        });
        if !ready {
            let out = proc.output();
            assert!(
                out.contains("Address already in use"),
                "redis-server exited at start:\n{out}"
            );
            return false;
        }
        wait_for_port(self.port, Duration::from_secs(30));
        self.proc = Some(proc);
        true
    }

    /// Stop the server (SIGKILL: an outage, not a maintenance window) and wait until the
    /// port is closed.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL");
            p.wait_exit(Duration::from_secs(30));
        }
        let port = self.port;
        wait_until("redis to be down", Duration::from_secs(30), || {
            !port_open(port)
        });
    }

    /// Start again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        assert!(
            self.up(),
            "port {} was taken while redis was down",
            self.port
        );
    }

    /// `redis-cli ARGS...`: stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("/usr/bin/redis-cli");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--no-auth-warning",
        ]);
        if let Some(p) = &self.password {
            cmd.args(["-a", p]);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Every key under `prefix` (SCAN, not KEYS, as one would in production).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let pattern = format!("{prefix}:*");
        let out = self.cli(&["--scan", "--pattern", &pattern]);
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// A TCP server on a free port that answers every read with `reply` (e.g. bytes that are
/// not RESP, or a RESP value of the wrong shape); `None` = accept and never answer.
pub struct FakeRedis {
    pub port: u16,
}

impl FakeRedis {
    pub fn start(reply: Option<&'static [u8]>) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake redis");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        if let Some(r) = reply {
                            if conn.write_all(r).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeRedis { port }
    }
}
