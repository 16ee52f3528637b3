//! A stand-in for systemd's notification socket (sd_notify(3)): an abstract-namespace
//! datagram socket, reachable by a process whatever user it runs as.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct NotifySocket {
    sock: UnixDatagram,
    name: String,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pacsgate-test-notify-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
        NotifySocket { sock, name }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> String {
        format!("@{}", self.name)
    }

    /// The next datagram, or None after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Read datagrams until one has the line `assignment` (e.g. "READY=1"); returns it.
    /// Panics with everything received on timeout.
    pub fn expect(&self, assignment: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(msg) if msg.lines().any(|l| l == assignment) => return msg,
                Some(msg) => seen.push(msg),
                None => break,
            }
        }
        panic!("no {assignment} within {timeout:?}; received {seen:?}");
    }
}
