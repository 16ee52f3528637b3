//! Issue 12's Done-means on the whole topology of deploy/topology.sh: HAProxy (TCP mode,
//! PROXY v2) in front of two pacsgate replicas sharing limits through Redis. Clients use
//! their own loopback addresses (curl --interface 127.0.0.7x), so the real client and the
//! balancer's address differ.
//!
//! Attacks written down and tested: spread a password guess run over both replicas (the
//! balancer alternates them) to get each replica's allowance; spread requests to get
//! twice the per-IP rate; log in from an address a `sources` rule does not name (the
//! balancer's address must not stand in for the client); send a PROXY header naming someone else, directly to a replica
//! and through the balancer; stop Redis to get limits lifted (password logins fail closed
//! while it is away, and work again when it is back).

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use support::process::wait_until;
use support::topology::Topology;

/// `pacsgate hash-password` of `password` (read from stdin).
fn hash(password: &str) -> String {
    let mut child = std::process::Command::new(support::gateway::binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pacsgate hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.lines().last().unwrap_or_default().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{text}");
    hash
}

fn audit(topo: &Topology, node: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(topo.dir.join(format!("gateway-{node}/audit.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Audit records of both replicas whose client is `ip`: (on A, on B).
fn records_from(topo: &Topology, ip: &str) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let pick = |node| {
        audit(topo, node)
            .into_iter()
            .filter(|r| r["client"].as_str().is_some_and(|c| c.starts_with(ip)))
            .collect()
    };
    (pick("a"), pick("b"))
}

/// A PROXY v2 header (PS: haproxy.org proxy-protocol.txt section 2.2) claiming TCP over
/// IPv4 from `src` to the replica.
fn proxy_v2(src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h
}

/// Send `bytes` to addr:port and read what comes back until close (bounded).
fn send_raw(addr: &str, port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect((addr, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    back
}

#[test]
fn limits_are_shared_and_clients_seen_through_haproxy_and_redis() {
    let dir = tempfile::tempdir().unwrap();
    // A second account whose rule admits one client address only.
    let extra = format!(
        "[users.viewer]\npassword_hash = {:?}\n[[http.rules]]\nusers = [\"viewer\"]\n\
         sources = [\"127.0.0.90/32\"]\nmethods = [\"GET\"]\npaths = [\"/system\"]\n",
        hash("viewer-password")
    );
    let topo = Topology::up(
        dir.path(),
        &[
            ("TOPOLOGY_CLUSTER", "1"),
            ("TOPOLOGY_PROXY", "1"),
            ("TOPOLOGY_HTTP_RATE_LIMITS", "per_ip = \"1/h burst 8\""),
            ("TOPOLOGY_GATEWAY_EXTRA", &extra),
        ],
    );
    let lb = topo.get("LB_ADDR").to_string();

    // The real client, not the balancer, is the client in both replicas' audit.
    for _ in 0..2 {
        let (code, _) = topo.https("lb", &["--interface", "127.0.0.77"], "/system");
        assert_eq!(code, 200);
    }
    // The audit writer flushes after the response: wait for the records.
    wait_until(
        "one record on each replica",
        Duration::from_secs(10),
        || {
            let (a, b) = records_from(&topo, "127.0.0.77");
            (a.len(), b.len()) == (1, 1)
        },
    );
    let (a, b) = records_from(&topo, "127.0.0.77");
    for r in a.iter().chain(&b) {
        assert!(r.to_string().contains(&lb), "the balancer as via: {r}");
    }

    // `sources` rules match the real client on both replicas (two requests each: one
    // per replica), whatever HAProxy's address is.
    for (ip, want) in [("127.0.0.90", 200), ("127.0.0.91", 403)] {
        for _ in 0..2 {
            let args = ["--interface", ip, "-u", "viewer:viewer-password"];
            assert_eq!(
                topo.https("lb", &args, "/system").0,
                want,
                "viewer from {ip}"
            );
        }
    }

    // A password guess run alternating over the replicas: cut after the configured
    // total (auth_failures_per_user, 5/min by default), not 5 per replica.
    let codes: Vec<u16> = (0..12)
        .map(|_| {
            let args = ["--interface", "127.0.0.78", "-u", "mallory:guess"];
            topo.https("lb", &args, "/system").0
        })
        .collect();
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert_eq!(&codes[5..], &[429; 7], "{codes:?}");
    wait_until(
        "the run alternating over A and B",
        Duration::from_secs(10),
        || {
            let (a, b) = records_from(&topo, "127.0.0.78");
            a.len() == 6 && b.len() == 6
        },
    );

    // One per-IP budget (burst 8) across both replicas.
    let codes: Vec<u16> = (0..12)
        .map(|_| {
            topo.https("lb", &["--interface", "127.0.0.79"], "/system")
                .0
        })
        .collect();
    assert_eq!(&codes[..8], &[200; 8], "{codes:?}");
    assert_eq!(&codes[8..], &[429; 4], "{codes:?}");

    // PROXY headers naming 203.0.113.9: from a non-balancer address straight to a
    // replica (refused before TLS), and through the balancer (HAProxy's own header comes
    // first; ours is then garbage where TLS should start).
    let (gw_a, gw_https, gw_dicom) = topo.front("a");
    let dst: Ipv4Addr = gw_a.parse().unwrap();
    for port in [gw_https, gw_dicom] {
        let back = send_raw(&gw_a, port, &proxy_v2([203, 0, 113, 9].into(), dst, port));
        assert!(
            back.is_empty(),
            "a replica answered a spoofed header: {back:?}"
        );
    }
    let (_, lb_https, _) = topo.front("lb");
    let _ = send_raw(
        &lb,
        lb_https,
        &proxy_v2([203, 0, 113, 9].into(), dst, lb_https),
    );
    // Still served afterwards, and nobody ever became 203.0.113.9.
    assert_eq!(
        topo.https("lb", &["--interface", "127.0.0.80"], "/system")
            .0,
        200
    );
    let (a, b) = records_from(&topo, "203.0.113.9");
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");

    // Redis gone: password logins fail closed (the locked-out 429) on both replicas,
    // whatever the balancer picks; back when Redis is. Each request from an address of
    // its own, so the per-IP budget never answers for the lockout policy.
    let next = std::sync::atomic::AtomicU8::new(1);
    let admin = || {
        let ip = format!(
            "127.0.1.{}",
            next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        (topo.https("lb", &["--interface", &ip], "/system").0, ip)
    };
    topo.kill9("redis");
    wait_until(
        "logins to fail closed without Redis",
        Duration::from_secs(30),
        || admin().0 == 429,
    );
    for _ in 0..4 {
        let (code, ip) = admin();
        assert_eq!(code, 429, "{ip}: a replica let a login in without Redis");
    }
    let out = topo.script("up", &[], &[]);
    assert!(out.contains("starting redis"), "{out}");
    wait_until("logins once Redis is back", Duration::from_secs(30), || {
        admin().0 == 200
    });
    for _ in 0..4 {
        let (code, ip) = admin();
        assert_eq!(code, 200, "{ip}: a replica still degraded");
    }
}
