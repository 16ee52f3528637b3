//! HTTPS through the gateway to a test backend: forwarding and header hygiene, HTTP/2,
//! 502 when the upstream is down, header limits, the slowloris timeout, and 1 GiB streamed
//! each way with the gateway's peak RSS bounded.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::backend::{self, Backend};
use support::gateway::{curl, http_status, tls_section, Gateway};
use support::pki::Ca;
use support::process::free_port;

struct Setup {
    _dir: tempfile::TempDir,
    ca: Ca,
    port: u16,
    gateway: Gateway,
}

fn start(upstream_port: u16, http_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let port = free_port();
    let toml = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{upstream_port}\"\n{http_extra}\n[dicom]\nenabled = false\n",
        tls_section(&server, "")
    );
    let gateway = Gateway::start(dir.path(), &toml);
    Setup {
        _dir: dir,
        ca,
        port,
        gateway,
    }
}

fn url(port: u16, path: &str) -> String {
    format!("https://localhost:{port}{path}")
}

#[test]
fn forwards_requests_and_replaces_forwarding_headers() {
    let backend = Backend::start();
    let s = start(backend.port(), "");
    let ca = s.ca.path.display().to_string();
    let (status, body, err) = curl(&[
        "--http1.1",
        "--cacert",
        &ca,
        "-H",
        "X-Forwarded-For: 10.66.66.66",
        "-H",
        "X-Real-IP: 10.66.66.66",
        // Naming our own X-Forwarded-For must not make the gateway drop the one it sets.
        "-H",
        "Connection: X-Hop, X-Forwarded-For",
        "-H",
        "Connection: X-Hop2",
        "-H",
        "X-Hop: secret",
        "-H",
        "X-Hop2: secret2",
        "-H",
        "Keep-Alive: timeout=99",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "TE: trailers",
        "-H",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        &url(s.port, "/echo?q=1"),
    ]);
    assert!(status.success(), "curl failed: {err}");
    let lower = body.to_ascii_lowercase();
    assert!(
        lower.starts_with("get /echo?q=1 http/1.1"),
        "request line: {body}"
    );
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(lower.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(
        lower.contains(&format!("x-forwarded-host: localhost:{}\n", s.port)),
        "{body}"
    );
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{}\n", backend.port())),
        "{body}"
    );
    for gone in [
        "10.66.66.66",
        "x-hop",
        "proxy-authorization",
        "x-real-ip",
        "keep-alive:",
        "proxy-connection",
        "te: trailers",
        "connection: x-hop",
    ] {
        assert!(!lower.contains(gone), "{gone} reached the upstream: {body}");
    }
}

#[test]
fn http2_and_http11_are_negotiated_by_alpn() {
    let backend = Backend::start();
    let s = start(backend.port(), "");
    let ca = s.ca.path.display().to_string();
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (status, out, err) = curl(&[
            flag,
            "--cacert",
            &ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &url(s.port, "/1k"),
        ]);
        assert!(status.success(), "{flag}: {err}");
        assert_eq!(out, format!("{want} 200"), "{flag}");
    }
    // Many concurrent streams on one HTTP/2 connection.
    let urls: Vec<String> = (0..20)
        .map(|i| url(s.port, &format!("/echo?{i}")))
        .collect();
    let mut args = vec![
        "--http2",
        "--parallel",
        "--parallel-immediate",
        "--cacert",
        &ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\n",
    ];
    args.extend(urls.iter().map(String::as_str));
    let (status, out, err) = curl(&args);
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 20, "{out}");
}

#[test]
fn upstream_down_gives_502_quickly() {
    let dead = free_port();
    let s = start(dead, "");
    let ca = s.ca.path.display().to_string();
    let started = Instant::now();
    let (status, body, err) = curl(&[
        "--cacert",
        &ca,
        "-w",
        "\n%{http_code}",
        &url(s.port, "/system"),
    ]);
    assert!(status.success(), "{err}");
    assert!(body.ends_with("\n502"), "{body}");
    assert!(body.contains("not reachable"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        s.gateway.log().contains("upstream failed"),
        "{}",
        s.gateway.log()
    );
}

#[test]
fn oversized_request_heads_are_refused() {
    let backend = Backend::start();
    let s = start(backend.port(), "max_header_bytes = 16384\n");
    let ca = s.ca.path.display().to_string();
    let big = format!("X-Big: {}", "a".repeat(40_000));
    let (_, out, _) = http_status(&[
        "--http1.1",
        "--cacert",
        &ca,
        "-H",
        &big,
        &url(s.port, "/echo"),
    ]);
    assert_eq!(out, "431");
    assert_eq!(
        backend.request_count(),
        0,
        "an oversized head reached the upstream"
    );
}

#[test]
fn slow_request_heads_are_cut_off() {
    let backend = Backend::start();
    let s = start(backend.port(), "header_timeout = \"1s\"\n");
    // A TLS client that sends half a request head and then nothing.
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", s.port),
            "-CAfile",
        ])
        .arg(&s.ca.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stdin.flush().unwrap();
    let started = Instant::now();
    // The gateway closes the connection (possibly after a 408): stdout reaches EOF.
    let mut out = Vec::new();
    client.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let waited = started.elapsed();
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(15), "not closed: {waited:?}");
    assert_eq!(backend.request_count(), 0);
}

#[test]
fn gigabyte_bodies_stream_both_ways_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let backend = Backend::start();
    let s = start(backend.port(), "");
    let ca = s.ca.path.display().to_string();

    // Download: hash what curl writes to stdout as it arrives.
    let mut dl = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert", &ca])
        .arg(url(s.port, &format!("/bytes/{GIB}")))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = dl.stdout.take().unwrap();
    let (mut hasher, mut got, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n as u64;
    }
    assert!(dl.wait().unwrap().success());
    assert_eq!(got, GIB);
    assert_eq!(
        backend::hex(&hasher.finalize()),
        backend::pattern_sha256(GIB)
    );

    // Upload: a chunked POST fed from a pipe, hashed by the backend.
    let mut ul = Command::new("curl")
        .args(["-sS", "--http2", "--cacert", &ca, "-T", "-", "-X", "POST"])
        .arg(url(s.port, "/sink"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ul.stdin.take().unwrap();
    let block = backend::pattern_block();
    let writer = std::thread::spawn(move || {
        for _ in 0..(GIB / block.len() as u64) {
            stdin.write_all(&block).unwrap();
        }
    });
    writer.join().unwrap();
    let out = ul.wait_with_output().unwrap();
    assert!(out.status.success());
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(answer, format!("{GIB} {}", backend::pattern_sha256(GIB)));

    let peak_mib = s.gateway.proc.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 96,
        "gateway peak RSS {peak_mib} MiB after 2 GiB streamed"
    );
    eprintln!("gateway peak RSS after 1 GiB each way: {peak_mib} MiB");
}
