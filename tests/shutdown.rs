//! Graceful shutdown: SIGTERM stops accepting at once, lets an in-flight request finish
//! within the grace period and exits 0; past the grace period the rest is dropped.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::gateway::{tls_section, Gateway};
use support::pki::Ca;
use support::process::{free_port, port_open, wait_until};

fn start(grace: &str) -> (tempfile::TempDir, Ca, u16, Gateway, Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let backend = Backend::start();
    let port = free_port();
    let toml = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n[server]\nshutdown_grace = \"{grace}\"\n",
        tls_section(&server, ""),
        backend.port()
    );
    let gw = Gateway::start(dir.path(), &toml);
    (dir, ca, port, gw, backend)
}

fn slow_request(ca: &Ca, port: u16, ms: u64) -> std::process::Child {
    Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca.path)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}/slow/{ms}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn in_flight_requests_finish_and_new_connections_are_refused() {
    let (_dir, ca, port, mut gw, backend) = start("30s");
    let client = slow_request(&ca, port, 1500);
    wait_until(
        "the slow request to reach the backend",
        Duration::from_secs(20),
        || backend.request_count() == 1,
    );
    gw.proc.signal("TERM");
    wait_until("the listener to close", Duration::from_secs(5), || {
        !port_open(port)
    });
    let out = client.wait_with_output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.ends_with("slow done\n200"),
        "in-flight request cut: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gw.proc.wait_exit(Duration::from_secs(10)).success());
    assert!(gw.log().contains("shutting down"), "{}", gw.log());
}

#[test]
fn the_grace_period_bounds_the_wait() {
    let (_dir, ca, port, mut gw, backend) = start("1s");
    let client = slow_request(&ca, port, 20_000);
    wait_until(
        "the slow request to reach the backend",
        Duration::from_secs(20),
        || backend.request_count() == 1,
    );
    let started = Instant::now();
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(Duration::from_secs(10)).success());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
    let out = client.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).ends_with("200"),
        "the request was not cut off"
    );
    assert!(gw.log().contains("grace period over"), "{}", gw.log());
}
