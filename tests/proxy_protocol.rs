//! PROXY protocol behind Debian's HAProxy 2.6 (TCP mode) in front of two pacsgate
//! replicas in front of Debian's Orthanc: clients connect from 127.0.0.2 and 127.0.0.3 to
//! HAProxy on 127.0.0.1, so the client is never the LB. The audit, X-Forwarded-For as
//! Orthanc's Lua sees it, `sources` rules, the per-IP rate, the per-address budget and
//! `check_modality_host` all see the real client; HAProxy's v2 LOCAL health checks pass;
//! a PROXY header from anyone but the LB is refused; malformed, truncated and slow
//! headers from the LB's address are closed within the deadline.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::gateway::{curl, tls_section};
use support::lb::{connect_from, spoof, topology, OTHER, REAL};
use support::pki::Ca;
use support::policy::{hash, ADMIN_PW};
use support::process::{free_port, run, wait_until};

#[test]
fn through_haproxy_the_real_client_is_the_client() {
    let t = topology("");
    // v2 LOCAL health checks reach both replicas and are accepted as the LB itself.
    wait_until("HAProxy health checks", Duration::from_secs(20), || {
        (0..2).all(|r| t.proxy_metric(r, "https", "local") >= 2)
    });
    assert_eq!(t.get(t.v2, REAL, "/system", 4), [200; 4]);
    // `sources` admits 127.0.0.2 only: the LB's 127.0.0.1 and 127.0.0.3 are refused.
    assert_eq!(t.get(t.v2, OTHER, "/system", 2), [403; 2]);
    assert_eq!(t.get(t.v1, REAL, "/patients", 1), [200]);
    assert_eq!(t.get(t.v1, OTHER, "/patients", 1), [403]);
    let records = t.http_records(8);
    for r in &records {
        assert_eq!(r["via"], "127.0.0.1", "{r}");
        let expected = if r["status"] == 200 { REAL } else { OTHER };
        assert_eq!(r["client"], expected, "{r}");
    }
    assert!(
        (0..2).all(|n| t.audit(n).iter().any(|r| r["client"] == REAL)),
        "round robin reached both replicas"
    );
    let xff: Vec<String> = t
        .orthanc
        .proc
        .output()
        .lines()
        .filter_map(|l| l.split_once("XFF=").map(|(_, v)| v.to_string()))
        // Orthanc's readiness probe, sent directly, carries none.
        .filter(|l| !l.starts_with("nil "))
        .collect();
    assert_eq!(xff.len(), 5, "{xff:?}");
    assert!(xff.iter().all(|l| l.starts_with("127.0.0.2 ")), "{xff:?}");
    for r in 0..2 {
        for bad in ["missing", "malformed", "timeout", "untrusted"] {
            assert_eq!(t.proxy_metric(r, "https", bad), 0, "replica {r} {bad}");
        }
    }
    assert!(t.proxy_metric(0, "https", "proxy") >= 3);
}

#[test]
fn per_ip_rate_and_budget_count_the_client_not_the_lb() {
    let t = topology("max_pending_per_ip = 2\n[http.rate_limits]\nper_ip = \"6/min burst 6\"");
    let codes = t.get(t.v2, REAL, "/system", 30);
    assert!(
        codes.iter().filter(|c| **c == 429).count() >= 10,
        "{codes:?}"
    );
    // Keyed by the LB's address, 127.0.0.3 would be throttled too.
    assert_eq!(t.get(t.v2, OTHER, "/system", 2), [403; 2]);
    // Idle connections from 127.0.0.3 through the LB fill 127.0.0.3's pending budget, not
    // the LB's: 127.0.0.2 still gets in on the same replica.
    let idle: Vec<std::net::TcpStream> = (0..6).map(|_| connect_from(OTHER, t.v1)).collect();
    wait_until(
        "pending connections refused",
        Duration::from_secs(10),
        || {
            t.replicas[0]
                .gateway
                .log()
                .contains("too many unauthenticated connections")
        },
    );
    // Any HTTP answer (200, or 429 while its rate recovers): the connection was not closed.
    assert_ne!(t.get(t.v1, REAL, "/patients", 1), [0]);
    drop(idle);
}

#[test]
fn failed_logins_lock_out_the_client_not_the_lb() {
    let t = topology("[http.rate_limits]\nauth_failures_per_ip = \"4/min\"");
    // One replica (the v1 frontend), so its counters see every attempt.
    let codes = t.get_as("ghost:wrong", (t.v1, REAL), "/system", 8);
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 4, "{codes:?}");
    // Another client through the same LB is not locked out: its failure is a 401.
    assert_eq!(
        t.get_as("phantom:wrong", (t.v1, OTHER), "/system", 1),
        [401]
    );
}

#[test]
fn dicom_through_haproxy_checks_the_modality_host_of_the_real_client() {
    let t = topology("");
    let echo = |from: &str| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/pynd_scu.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("127.0.0.1").arg(t.dicom.to_string());
        cmd.args([
            "--called",
            "ORTHANC",
            "--calling",
            "CT1",
            "--bind",
            from,
            "--ca",
        ]);
        cmd.arg(&t.ca.path).arg("echo");
        run(cmd, Duration::from_secs(60))
    };
    for _ in 0..2 {
        let (status, out) = echo(REAL);
        assert!(status.success() && out.contains("ECHO 0x0000"), "{out}");
        let (status, out) = echo(OTHER);
        assert_eq!(status.code(), Some(2), "rejected: {out}");
    }
    let records = || -> Vec<serde_json::Value> {
        (0..2)
            .flat_map(|r| t.audit(r))
            .filter(|r| r.get("peer_ip").is_some())
            .collect()
    };
    wait_until("DICOM audit", Duration::from_secs(10), || {
        records().len() >= 4
    });
    for r in records() {
        assert_eq!(r["via"], "127.0.0.1", "{r}");
        let expected = if r["outcome"] == "accepted" {
            REAL
        } else {
            OTHER
        };
        assert_eq!(r["peer_ip"], expected, "{r}");
    }
}

#[test]
fn a_proxy_header_from_anyone_but_the_lb_is_refused_before_tls() {
    let t = topology("");
    let gw = t.replicas[0].https;
    // 127.0.0.3 claims to relay 127.0.0.2 (whom `sources` admits), then speaks TLS.
    let v2 = "b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x21\\x11\\x00\\x0c\\x7f\\x00\\x00\\x02\\x7f\\x00\\x00\\x01\\x9c\\x40\\x01\\xbb'";
    let v1 = "b'PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\\r\\n'";
    for header in [v2, v1] {
        let out = spoof(&t, OTHER, t.replicas[0].dicom, header);
        assert!(out.starts_with("REFUSED"), "dicom: {out}");
        let out = spoof(&t, OTHER, gw, header);
        assert!(out.starts_with("REFUSED"), "https: {out}");
    }
    assert_eq!(t.proxy_metric(0, "https", "untrusted"), 2);
    assert_eq!(t.proxy_metric(0, "dicom", "untrusted"), 2);
    // Through the LB, a client's own header after HAProxy's is only bytes before TLS:
    // one header is read per connection, never a second.
    for header in [v2, v1] {
        let out = spoof(&t, OTHER, t.v2, header);
        assert!(out.starts_with("REFUSED"), "through the LB: {out}");
    }
    // Plain HTTP starting with P is not TLS either: closed, but not counted as a header.
    {
        use std::io::{Read, Write};
        let mut s = connect_from(OTHER, gw);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /tools/execute-script HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        assert!(matches!(s.read_to_end(&mut buf), Ok(0) | Err(_)) && buf.is_empty());
        assert_eq!(t.proxy_metric(0, "https", "untrusted"), 2);
    }
    assert!(t.audit(0).iter().all(|r| r["status"] != 200));
    // The LB's address without a header is closed too: it would make clients look like
    // the LB.
    let url = format!("https://localhost:{gw}/system");
    let (status, _, _) = curl(&["--cacert", t.ca.path.to_str().unwrap(), "-4", &url]);
    assert!(!status.success());
    assert_eq!(t.proxy_metric(0, "https", "missing"), 1);
}

#[test]
fn malformed_truncated_and_slow_headers_from_the_lb_are_closed_in_time() {
    use std::io::{Read, Write};
    let mut t = topology("");
    let gw = t.replicas[1].https;
    let closes = |bytes: &[u8], within: Duration| {
        let mut s = connect_from("127.0.0.1", gw);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let _ = s.write_all(bytes);
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer: {bytes:?}");
        let took = started.elapsed();
        assert!(took < within, "{bytes:?} took {took:?}");
        took
    };
    let quick = Duration::from_millis(1500);
    closes(b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2 3\r\n", quick);
    closes(b"PROXY TCP4 127.0.0.02 127.0.0.1 1 2\r\n", quick);
    closes(
        &[b"PROXY UNKNOWN ".as_slice(), &[b'A'; 4096]].concat(),
        quick,
    );
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    huge.extend(std::iter::repeat_n(0u8, 8192));
    closes(&huge, quick);
    closes(b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\x0c", quick);
    // Truncated and then silent: closed at the 3 s header deadline, not later.
    let took = closes(b"\r\n\r\n\0\r\nQU", Duration::from_secs(5));
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    closes(b"PROXY TCP4 127.0.0.2 ", Duration::from_secs(5));
    // Generated garbage at volume: nothing hangs or crashes, and the replica still serves.
    let mut rng = support::rng::Rng::new(0x5eed);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let seeds: Vec<Vec<u8>> = (0..50).map(|_| garbage(&mut rng)).collect();
            std::thread::spawn(move || {
                for bytes in seeds {
                    let mut s = connect_from("127.0.0.1", gw);
                    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
                    let _ = s.write_all(&bytes);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut sink = Vec::new();
                    // Closed (EOF or reset) before the read timeout: a hang fails here.
                    let r = s.read_to_end(&mut sink);
                    assert!(
                        !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                        "{bytes:?} hung"
                    );
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let running = t.replicas[1].gateway.proc.child.try_wait();
    assert!(
        matches!(running, Ok(None)),
        "the replica still runs: {running:?}"
    );
    assert_eq!(t.get(t.v2, REAL, "/system", 2), [200; 2]);
}

/// A mutated PROXY header (v1 or v2 start), cut, flipped or extended at random.
fn garbage(rng: &mut support::rng::Rng) -> Vec<u8> {
    let mut b = if rng.below(2) == 0 {
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n".to_vec()
    } else {
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\0\0\x02\x7f\0\0\x01\x9c\x40\x01\xbb".to_vec()
    };
    for _ in 0..=rng.below(3) {
        if b.len() < 2 {
            break;
        }
        let at = 1 + rng.below(b.len() - 1);
        match rng.below(3) {
            0 => b[at] = rng.below(256) as u8,
            1 => b.truncate(at),
            _ => b.extend((0..rng.below(300)).map(|_| rng.below(256) as u8)),
        }
    }
    b
}

#[test]
fn a_load_balancer_list_that_trusts_everyone_is_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Config CA");
    let server = ca.server(dir.path(), "localhost");
    let port = free_port();
    let base = |http: &str, dicom: &str| {
        format!(
            "{}[http]\nlisten = \"127.0.0.1:{port}\"\n{http}\n[users.admin]\npassword_hash = \"{}\"\n\
             [[http.rules]]\nusers = [\"admin\"]\npaths = [\"/**\"]\n\
             [dicom]\nlisten = \"127.0.0.1:{}\"\n{dicom}\n",
            tls_section(&server, ""),
            hash(ADMIN_PW),
            free_port()
        )
    };
    for (http, dicom, key) in [
        (
            "proxy_protocol = [\"10.0.0.5\", \"0.0.0.0/0\"]",
            "",
            "http.proxy_protocol",
        ),
        ("", "proxy_protocol = [\"::/0\"]", "dicom.proxy_protocol"),
        (
            "proxy_protocol = [\"lb.example\"]",
            "",
            "http.proxy_protocol",
        ),
    ] {
        for sub in ["check", "run"] {
            let (code, out) =
                support::gateway::run_expecting_exit(dir.path(), &base(http, dicom), sub);
            assert_eq!(code, Some(64), "{sub} {key}: {out}");
            assert_eq!(out.trim().lines().count(), 1, "{out}");
            assert!(out.contains(key), "{out}");
        }
        assert!(!support::process::port_open(port), "nothing was bound");
    }
    let ok = base(
        "proxy_protocol = [\"10.0.0.5\"]",
        "proxy_protocol = [\"fd00::/64\"]",
    );
    std::fs::write(dir.path().join("ok.toml"), &ok).unwrap();
    let mut cmd = Command::new(support::gateway::binary());
    cmd.arg("check")
        .arg("--config")
        .arg(dir.path().join("ok.toml"));
    let (status, out) = run(cmd, Duration::from_secs(30));
    assert!(status.success(), "{out}");
    assert!(
        out.contains("https: client addresses from PROXY v1/v2 headers of [10.0.0.5/32] only"),
        "{out}"
    );
    assert!(
        out.contains("dicom: client addresses from PROXY v1/v2 headers of [fd00::/64] only"),
        "{out}"
    );
}
