//! `Type=notify` (deploy/pacsgate.service): pacsgate tells systemd READY=1 only once its
//! listeners accept, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP
//! reload, and STOPPING=1 when SIGTERM starts the drain. A NOTIFY_SOCKET that is not an
//! absolute path or abstract name is ignored, never fatal.

mod support;

use std::time::Duration;

use support::backend::Backend;
use support::gateway::Gateway;
use support::notify::NotifySocket;
use support::process::{free_port, port_open};

const WAIT: Duration = Duration::from_secs(60);

fn config(https: u16, backend: &Backend) -> String {
    format!(
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n",
        backend.port()
    )
}

#[test]
fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let https = free_port();
    let notify = NotifySocket::bind();
    let socket = notify.env_value();
    let mut gw = Gateway::start_with_env(
        dir.path(),
        &config(https, &backend),
        &[("NOTIFY_SOCKET", &socket)],
    );
    let ready = notify.expect("READY=1", WAIT);
    assert!(port_open(https), "READY=1 before the listener accepts");
    assert!(
        !ready.contains("RELOADING"),
        "first message is not plain ready: {ready:?}"
    );

    gw.proc.signal("HUP");
    let reloading = notify.expect("RELOADING=1", WAIT);
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
    assert!(
        usec.parse::<u64>().is_ok_and(|u| u > 0),
        "MONOTONIC_USEC={usec}"
    );
    notify.expect("READY=1", WAIT);
    gw.proc.wait_for_output("configuration reloaded", WAIT);

    gw.proc.signal("TERM");
    notify.expect("STOPPING=1", WAIT);
    let status = gw.proc.wait_exit(WAIT);
    assert!(status.success(), "exit {status}:\n{}", gw.log());
}

#[test]
fn an_unusable_notify_socket_does_not_stop_the_gateway() {
    let backend = Backend::start();
    for value in ["relative/path", "", "/nonexistent/dir/notify"] {
        let dir = tempfile::tempdir().unwrap();
        let https = free_port();
        let mut gw = Gateway::start_with_env(
            dir.path(),
            &config(https, &backend),
            &[("NOTIFY_SOCKET", value)],
        );
        assert!(port_open(https), "NOTIFY_SOCKET={value:?}");
        gw.proc.signal("TERM");
        let status = gw.proc.wait_exit(WAIT);
        assert!(status.success(), "NOTIFY_SOCKET={value:?}: exit {status}");
    }
}
