//! Per-address connection budgets: one address holding silent TLS connections (no
//! A-ASSOCIATE-RQ, no HTTP request, an HTTP/2 connection that never opens a stream, a
//! request head that never ends) or idle keep-alive connections cannot take the slots
//! other clients need. Over its cap a new connection is closed before the TLS handshake;
//! the slots come back when the attacker disconnects or the pending deadline passes.
//!
//! The attacker connects from 127.0.0.2, the legitimate clients (curl, dcmtk's echoscu)
//! from 127.0.0.1. Which connections were admitted is seen by whether their TLS handshake
//! completes: a refused one is closed before the ServerHello.

mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use support::backend::Backend;
use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{dicom_only, http_status, tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::{free_port, wait_until};
use support::raw::{client_config, connect_from, RawClient};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Open `n` TLS connections from the attacker's address, each sending `first` once the
/// handshake is done; returns the ones whose handshake completed.
fn flood(port: u16, config: &Arc<rustls::ClientConfig>, n: usize, first: &[u8]) -> Vec<RawClient> {
    (0..n)
        .filter_map(|_| {
            let mut c = RawClient::over(connect_from(ATTACKER, port), config.clone());
            c.handshake().ok()?;
            if !first.is_empty() {
                c.send(first);
            }
            Some(c)
        })
        .collect()
}

#[test]
fn dicom_silent_tls_connections_from_one_address_leave_room_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orthanc = Orthanc::start(d, serde_json::json!({}));
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let port = free_port();
    let budget = "max_associations = 6\nmax_pending_per_ip = 3\nmax_connections_per_ip = 4\npending_timeout = \"3s\"\n";
    let mut gw = Gateway::start(
        d,
        &dicom_only(&server, "", port, orthanc.dicom_port, budget),
    );
    let config = client_config(&ca.path, None, rustls::DEFAULT_VERSIONS, &[]);

    // Ten silent TLS connections: three are admitted as pending, the rest closed at once.
    let mut held = flood(port, &config, 10, b"");
    assert_eq!(held.len(), 3, "{}", gw.log());
    gw.proc.wait_for_output(
        "connections closed at accept: over a per-address budget",
        Duration::from_secs(30),
    );
    // Half the global slots are free; a modality elsewhere is served without waiting.
    let args = dcmtk_args("CT1", "ORTHANC", &ca.path, None);
    let (status, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(
        status.success() && out.contains("Echo Response (Success)"),
        "{out}"
    );

    // The pending deadline closes the silent connections...
    for c in &mut held {
        assert!(c.closed_by_server(), "a silent connection stayed open");
    }
    gw.proc.wait_for_output(
        "not authenticated before the pending_timeout",
        Duration::from_secs(30),
    );
    // ...and frees their slots.
    wait_until(
        "the attacker's slots to free",
        Duration::from_secs(30),
        || flood(port, &config, 1, b"").len() == 1,
    );
}

/// A gateway in front of the test backend with `[http]` lines `budget`, without
/// authentication (the budgets apply before it; `served` needs no credentials).
fn https_site(dir: &std::path::Path, budget: &str) -> (Gateway, Ca, u16, Backend) {
    let ca = Ca::new(dir, "Test CA");
    let server = ca.server(dir, "server");
    let backend = Backend::start();
    let port = free_port();
    let toml = format!(
        "{}[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\nauthentication = \"none\"\n{budget}",
        tls_section(&server, ""),
        backend.port()
    );
    (Gateway::start(dir, &toml), ca, port, backend)
}

fn served(gw: &Gateway, ca: &Ca, port: u16, proto: &str) {
    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{port}/1k");
    let (_, code, err) = http_status(&["--cacert", &cacert, proto, &url]);
    assert_eq!(code, "200", "{proto}: {err}\n{}", gw.log());
}

#[test]
fn https_idle_http2_and_slow_headers_from_one_address_leave_room_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let budget = "max_connections = 12\nmax_pending_per_ip = 4\nmax_connections_per_ip = 6\npending_timeout = \"300s\"\n";
    let (gw, ca, port, _backend) = https_site(dir.path(), budget);
    let h2 = client_config(&ca.path, None, rustls::DEFAULT_VERSIONS, &[b"h2"]);
    let h1 = client_config(&ca.path, None, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);

    // HTTP/2 connections that never open a stream, and request heads that never end:
    // four pending at most, the rest closed before the handshake.
    let mut idle = flood(port, &h2, 6, H2_PREFACE);
    idle.extend(flood(port, &h1, 3, b"GET /1k HTTP/1.1\r\nHost: loc"));
    assert_eq!(idle.len(), 4, "{}", gw.log());
    served(&gw, &ca, port, "--http2");
    served(&gw, &ca, port, "--http1.1");

    // Disconnecting frees the pending slots (the deadline is five minutes away).
    drop(idle);
    let mut back = Vec::new();
    wait_until("pending slots to free", Duration::from_secs(30), || {
        back.extend(flood(port, &h2, 1, H2_PREFACE));
        back.len() == 4
    });
}

#[test]
fn https_keep_alive_connections_of_one_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let budget = "max_connections = 12\nmax_pending_per_ip = 2\nmax_connections_per_ip = 4\n";
    let (gw, ca, port, _backend) = https_site(dir.path(), budget);
    let h1 = client_config(&ca.path, None, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let get = b"GET /1k HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // Each connection makes one request, then sits idle: no longer pending, but an
    // address holds at most four connections in all.
    let mut keep_alive = Vec::new();
    for _ in 0..4 {
        let mut c = flood(port, &h1, 1, get).pop().expect("admitted");
        assert!(c.read_some().is_some(), "no response: {}", gw.log());
        keep_alive.push(c);
    }
    assert!(flood(port, &h1, 1, get).is_empty(), "{}", gw.log());
    served(&gw, &ca, port, "--http2");

    keep_alive.pop();
    let mut back = Vec::new();
    wait_until("a connection slot to free", Duration::from_secs(30), || {
        back.extend(flood(port, &h1, 1, get));
        !back.is_empty()
    });
}

/// How many of `socks` the gateway has not closed (a read would block).
fn still_open(socks: &[std::net::TcpStream]) -> usize {
    socks
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            matches!(std::io::Read::read(&mut &**s, &mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

#[test]
fn default_budgets_withstand_the_reported_floods() {
    // Issue 9: 256 silent connections filled max_associations (256), 1024 idle ones
    // filled max_connections (1024). With the defaults, one address keeps 16 and 64.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orthanc = Orthanc::start(d, serde_json::json!({}));
    let backend = Backend::start();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let (https, dicom) = (free_port(), free_port());
    let toml = format!(
        "{}[http]\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\nauthentication = \"none\"\n[dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n",
        tls_section(&server, ""),
        backend.port(),
        orthanc.dicom_port
    );
    let gw = Gateway::start(d, &toml);
    let http_flood: Vec<_> = (0..1100).map(|_| connect_from(ATTACKER, https)).collect();
    let dicom_flood: Vec<_> = (0..300).map(|_| connect_from(ATTACKER, dicom)).collect();

    served(&gw, &ca, https, "--http2");
    let args = dcmtk_args("CT1", "ORTHANC", &ca.path, None);
    let (status, out) = dcmtk(ECHOSCU, dicom, &args, &[]);
    assert!(
        status.success() && out.contains("Echo Response (Success)"),
        "{out}"
    );
    // Served after the whole flood was accepted, so every refusal has been sent.
    assert_eq!(still_open(&http_flood), 64, "{}", gw.log());
    assert_eq!(still_open(&dicom_flood), 16, "{}", gw.log());
}

#[test]
fn https_refused_requests_keep_a_connection_pending() {
    let dir = tempfile::tempdir().unwrap();
    // Anonymous clients may GET /1k only; anything else is refused by the gateway.
    let budget = "max_connections = 12\nmax_pending_per_ip = 2\nmax_connections_per_ip = 6\npending_timeout = \"300s\"\n[[http.rules]]\nusers = [\"anonymous\"]\nmethods = [\"GET\"]\npaths = [\"/1k\"]\n";
    let (gw, ca, port, backend) = https_site(dir.path(), budget);
    let h1 = client_config(&ca.path, None, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let refused = b"GET /system HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // Requests the policy refuses do not make a connection count as authenticated: two
    // such keep-alive connections fill the pending budget of the address.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut c = flood(port, &h1, 1, refused).pop().expect("admitted");
        let head = c.read_some().expect("a response");
        assert!(
            head.starts_with(b"HTTP/1.1 403"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        kept.push(c);
    }
    assert!(flood(port, &h1, 1, refused).is_empty(), "{}", gw.log());
    assert_eq!(backend.request_count(), 0);

    // An admitted request on one of them does, and frees a pending slot.
    kept[0].send(b"GET /1k HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = kept[0].read_some().expect("a response");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(flood(port, &h1, 1, b"").len(), 1, "{}", gw.log());
}
