//! A PACS that fails each upstream phase in turn, behind the real binary, with curl as the
//! client: stalled before its head (504 within `http.upstream_timeout`), stalled mid-body
//! (the client's connection is cut within `http.upstream_body_timeout`), down, closing,
//! or answering garbage (502). Each failure is named in the audit record and the
//! `pacsgate_upstream_errors_total` metric, and the stalled upstream socket is closed.
//! A slow *client* upload is not blamed on the PACS, nor one the client abandons.
//!
//! Abuse cases: a PACS (or anything bound to its port) holding the gateway's connections
//! forever; a PACS that stops reading an upload; a client pacing its upload to make the
//! gateway report the PACS as stalled.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::faulty::{Event, Fault, FaultyPacs};
use support::gateway::{curl, tls_section, Gateway};
use support::http_get;
use support::pki::Ca;
use support::process::{free_port, wait_until};
use support::raw::RawClient;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Generous: the machine is shared; what matters is that it is bounded, not a hang.
const MARGIN: Duration = Duration::from_secs(8);

struct Setup {
    dir: tempfile::TempDir,
    ca: String,
    port: u16,
    admin: u16,
    _gateway: Gateway,
}

fn start(upstream_port: u16) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let (port, admin) = (free_port(), free_port());
    let audit = dir.path().join("audit.jsonl");
    let toml = format!(
        "{}[audit]\npath = {:?}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{upstream_port}\"\nupstream_timeout = \"2s\"\nupstream_body_timeout = \"2s\"\n[dicom]\nenabled = false\n",
        tls_section(&server, ""),
        audit.display().to_string()
    );
    let gateway = Gateway::start(dir.path(), &toml);
    Setup {
        ca: ca.path.display().to_string(),
        dir,
        port,
        admin,
        _gateway: gateway,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The audit record of the first request to `path` (waits for it: records are
    /// written when the response body ends).
    fn record(&self, path: &str) -> serde_json::Value {
        let file = self.dir.path().join("audit.jsonl");
        let mut found = None;
        wait_until("the audit record", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|r| r["kind"] == "http.request" && r["path"] == path);
            found.is_some()
        });
        found.unwrap_or_default()
    }

    fn upstream_errors(&self, kind: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").expect("admin listener answers");
        let needle =
            format!("pacsgate_upstream_errors_total{{listener=\"https\",kind=\"{kind}\"}} ");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// curl `path` with `args`: (exit code, "status size", elapsed).
    fn curl(&self, args: &[&str], path: &str) -> (Option<i32>, String, Duration) {
        let mut all = vec!["--cacert", &self.ca, "-o", "/dev/null"];
        all.extend_from_slice(&["-w", "%{http_code} %{size_download}"]);
        all.extend_from_slice(args);
        let url = self.url(path);
        all.push(&url);
        let started = Instant::now();
        let (status, out, _) = curl(&all);
        (status.code(), out, started.elapsed())
    }
}

#[test]
fn a_stalled_pacs_gets_504_within_the_timeout_and_its_socket_is_closed() {
    let pacs = FaultyPacs::start(Fault::Stall);
    let s = start(pacs.port);
    for (version, path) in [("--http1.1", "/stall/h1"), ("--http2", "/stall/h2")] {
        let (code, out, elapsed) = s.curl(&[version], path);
        assert_eq!(code, Some(0), "{version}: {out}");
        assert!(out.starts_with("504 "), "{version}: {out}");
        assert!(
            elapsed >= UPSTREAM_TIMEOUT - Duration::from_millis(100)
                && elapsed < UPSTREAM_TIMEOUT + MARGIN,
            "{version}: 504 after {elapsed:?}"
        );
        assert!(matches!(pacs.next("head", MARGIN), Event::Head(h) if h.contains(path)));
        // The gateway gives the connection up: no stalled socket left behind.
        pacs.closed(MARGIN);
        let record = s.record(path);
        assert_eq!(record["status"], 504, "{record}");
        assert_eq!(record["upstream_error"], "response_timeout", "{record}");
        assert!(record["denied"].is_null(), "{record}");
    }
    assert!(s.upstream_errors("response_timeout") >= 2.0);
}

#[test]
fn a_pacs_that_stops_reading_an_upload_gets_504() {
    let pacs = FaultyPacs::start(Fault::HeadOnly);
    let s = start(pacs.port);
    // Far more than loopback socket buffers hold, so the upload blocks on the PACS.
    let body = s.dir.path().join("upload.bin");
    std::fs::write(&body, vec![7u8; 64 << 20]).unwrap();
    let data = format!("@{}", body.display());
    let started = Instant::now();
    let (_, out, _) = s.curl(&["--http1.1", "--data-binary", &data], "/upload");
    let record = s.record("/upload");
    let elapsed = started.elapsed();
    assert_eq!(record["status"], 504, "{record} (curl: {out})");
    assert_eq!(record["upstream_error"], "response_timeout", "{record}");
    assert!(elapsed < UPSTREAM_TIMEOUT + MARGIN, "504 after {elapsed:?}");
}

#[test]
fn a_pacs_stalling_mid_body_cuts_the_client_connection() {
    for (length, case) in [(Some(1 << 20), "length"), (None, "chunked")] {
        stalled_mid_body(length, case);
    }
}

/// A cut must never look like the end: with chunked framing a clean final chunk would
/// hand the client a silently truncated file.
fn stalled_mid_body(length: Option<usize>, case: &str) {
    let pacs = FaultyPacs::start(Fault::StallMidBody { length, sent: 1000 });
    let s = start(pacs.port);
    for (version, h) in [("--http1.1", "h1"), ("--http2", "h2")] {
        let path = format!("/mid/{case}/{h}");
        let path = path.as_str();
        let (code, out, elapsed) = s.curl(&[version], path);
        // curl: 18 (partial file, HTTP/1.1) or 92 (stream reset, HTTP/2); never success.
        assert!(code.is_some_and(|c| c != 0), "{path}: {code:?} {out}");
        assert_eq!(out, "200 1000", "{path}");
        assert!(
            elapsed >= UPSTREAM_TIMEOUT - Duration::from_millis(100)
                && elapsed < UPSTREAM_TIMEOUT + MARGIN,
            "{path}: cut after {elapsed:?}"
        );
        pacs.closed(MARGIN);
        let record = s.record(path);
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["bytes_out"], 1000, "{record}");
        assert_eq!(record["upstream_error"], "body_stalled", "{record}");
    }
    assert!(s.upstream_errors("body_stalled") >= 2.0);
}

#[test]
fn a_pacs_that_is_down_closes_or_speaks_garbage_gets_502() {
    let down = start(free_port());
    let (code, out, elapsed) = down.curl(&[], "/down");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("502 "), "{out}");
    assert!(elapsed < MARGIN, "{elapsed:?}");
    assert_eq!(down.record("/down")["upstream_error"], "connect_refused");
    assert!(down.upstream_errors("connect_refused") >= 1.0);
    for (fault, kind) in [(Fault::Close, "closed"), (Fault::Garbage, "protocol")] {
        let pacs = FaultyPacs::start(fault);
        let s = start(pacs.port);
        let (code, out, elapsed) = s.curl(&[], "/broken");
        assert_eq!(code, Some(0), "{kind}: {out}");
        assert!(out.starts_with("502 "), "{kind}: {out}");
        assert!(elapsed < MARGIN, "{kind}: {elapsed:?}");
        assert_eq!(s.record("/broken")["upstream_error"], kind);
        assert!(s.upstream_errors(kind) >= 1.0, "{kind}");
    }
}

#[test]
fn a_slow_client_upload_is_not_blamed_on_the_pacs() {
    for version in ["--http1.1", "--http2"] {
        let backend = Backend::start();
        let s = start(backend.port());
        let mut child = Command::new("curl")
            .args(["-sS", "--max-time", "60", version, "--cacert", &s.ca])
            .args(["-H", "Expect:", "-T", "-", &s.url("/sink")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&[1u8; 1024]).unwrap();
        stdin.flush().unwrap();
        wait_until("the upload at the PACS", MARGIN, || {
            backend.request_count() == 1
        });
        // The stimulus, not a synchronisation: the client pauses longer than the PACS's
        // clock while the PACS waits for the rest of the body.
        std::thread::sleep(UPSTREAM_TIMEOUT + Duration::from_secs(1));
        stdin.write_all(&[2u8; 1024]).unwrap();
        drop(stdin);
        let out = child.wait_with_output().expect("curl output");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("2048 "), "{version}: {text}");
        let record = s.record("/sink");
        assert_eq!(record["status"], 200, "{version}: {record}");
        assert!(record["upstream_error"].is_null(), "{version}: {record}");
    }
}

#[test]
fn a_client_abandoning_its_upload_is_not_counted_against_the_pacs() {
    let backend = Backend::start();
    let s = start(backend.port());
    let ca = std::path::PathBuf::from(&s.ca);
    let mut client = RawClient::connect(s.port, &ca, None);
    client.send(b"PUT /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n");
    client.send(&[3u8; 1000]);
    // The upload reached the PACS before the client vanished.
    wait_until("the request at the PACS", MARGIN, || {
        backend.request_count() == 1
    });
    drop(client);
    let record = s.record("/sink");
    // Answered 400 (to nobody); recorded as the client's fault.
    assert_eq!(record["status"], 400, "{record}");
    assert_eq!(record["upstream_error"], "client_body", "{record}");
    let (_, metrics) = http_get(s.admin, "/metrics").expect("admin listener answers");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        !metrics.contains("pacsgate_upstream_errors_total{"),
        "{metrics}"
    );
}
