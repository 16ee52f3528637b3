//! sd_notify(3) without libsystemd: one datagram per state change to the socket named by
//! `NOTIFY_SOCKET` (set by systemd for `Type=notify` units; a path, or `@name` for the
//! abstract namespace). Without the variable every call is a no-op, so the same binary
//! runs under systemd, in a container or in a terminal.
//!
//! Protocol (sd_notify(3), systemd.service(5) "Type=notify"): newline-separated
//! `KEY=VALUE` assignments. `READY=1` once the listeners are bound and root is dropped;
//! `RELOADING=1` with `MONOTONIC_USEC=` (required with it since systemd 253) when a SIGHUP
//! reload starts, `READY=1` when it is done; `STOPPING=1` when shutdown begins.
//!
//! Hand-written (25 lines over `UnixDatagram`) rather than a crate: it is the whole
//! protocol, and the gateway stays free of another dependency on its internet-facing path.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

/// The service is up: listeners bound, privileges dropped.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload (SIGHUP) starts; systemd keeps `systemctl reload` waiting until `ready()`.
pub fn reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
    ));
}

/// Shutdown begins (draining connections).
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining connections");
}

fn send(state: &str) {
    let Some(addr) = target() else { return };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// The notification socket, read once. Only absolute paths and abstract names are
/// accepted, as sd_notify(3) does.
fn target() -> Option<&'static SocketAddr> {
    static TARGET: OnceLock<Option<SocketAddr>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var_os("NOTIFY_SOCKET")?;
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str());
            let addr = match bytes.split_first() {
                Some((b'@', name)) => SocketAddr::from_abstract_name(name),
                Some((b'/', _)) => SocketAddr::from_pathname(&value),
                _ => return None,
            };
            addr.map_err(|e| tracing::warn!(error = %e, "NOTIFY_SOCKET is not usable"))
                .ok()
        })
        .as_ref()
}
