//! Debian's HAProxy 2.6 in TCP mode, started by a test on free loopback ports: the load
//! balancer in front of pacsgate replicas (`send-proxy-v2` / `send-proxy`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{wait_for_port, Proc};

pub const HAPROXY: &str = "/usr/sbin/haproxy";

pub struct Haproxy {
    pub proc: Proc,
}

impl Haproxy {
    /// Run `haproxy -db` with `defaults` (mode tcp, timeouts) followed by `sections`
    /// (frontends and backends); waits until every port in `frontends` listens.
    pub fn start(dir: &Path, sections: &str, frontends: &[u16]) -> Haproxy {
        let config = dir.join("haproxy.cfg");
        let text = format!(
            "global\n    maxconn 512\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
             timeout client 60s\n    timeout server 60s\n\n{sections}\n"
        );
        std::fs::write(&config, text).expect("write haproxy.cfg");
        let check = Command::new(HAPROXY)
            .args(["-c", "-f"])
            .arg(&config)
            .output()
            .expect("haproxy is needed; run tests/run.sh");
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-db").arg("-f").arg(&config);
        let proc = Proc::spawn("haproxy", cmd, &dir.join("haproxy.log"));
        for port in frontends {
            wait_for_port(*port, Duration::from_secs(30));
        }
        Haproxy { proc }
    }
}
