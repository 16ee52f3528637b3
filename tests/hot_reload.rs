//! Certificate hot reload: while clients keep connecting, replacing the certificate on
//! disk (or SIGHUP) switches new handshakes to it with zero failed requests; an established
//! connection keeps working; a broken file is logged and the old certificate stays.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::backend::Backend;
use support::gateway::{http_status, tls_section, Gateway};
use support::pki::{fingerprint, Ca, Leaf};
use support::process::{free_port, wait_until};

/// The fingerprint of the certificate the gateway serves now, as a fresh client sees it.
fn served_fingerprint(port: u16) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .trim()
        .rsplit('=')
        .next()?
        .replace(':', "")
        .to_ascii_lowercase();
    (hex.len() == 64).then(|| format!("sha256:{hex}"))
}

/// Replace `dst` atomically with the contents of `src` (what cert managers do).
fn install(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("incoming");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

struct Running {
    _dir: tempfile::TempDir,
    ca: Ca,
    port: u16,
    live: Leaf,
    gateway: Gateway,
    _backend: Backend,
}

fn start(watch: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let first = ca.server(dir.path(), "first");
    // The gateway serves from live.crt/live.key; tests swap other certificates in.
    let live = Leaf {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
    };
    install(&first.cert, &live.cert);
    install(&first.key, &live.key);
    let backend = Backend::start();
    let port = free_port();
    let toml = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n",
        tls_section(&live, &format!("watch = {watch}")),
        backend.port()
    );
    let gateway = Gateway::start(dir.path(), &toml);
    assert_eq!(served_fingerprint(port), Some(fingerprint(&first.cert)));
    Running {
        _dir: dir,
        ca,
        port,
        live,
        gateway,
        _backend: backend,
    }
}

/// Clients making new connections in a loop until stopped; counts (ok, failed).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(port: u16, ca: &Path) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let ca = ca.display().to_string();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let url = format!("https://localhost:{port}/1k");
                let (status, code, _) = http_status(&["--cacert", &ca, &url]);
                let counter = if status.success() && code == "200" {
                    &o
                } else {
                    &f
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Load {
            stop,
            ok,
            failed,
            thread,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    fn wait_for_more(&self, n: usize) {
        let target = self.ok() + n;
        wait_until("more successful requests", Duration::from_secs(30), || {
            self.ok() >= target || self.failed.load(Ordering::SeqCst) > 0
        });
    }

    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn replaced_files_are_served_to_new_clients_without_failures() {
    let r = start(true);
    let dir = r.live.cert.parent().unwrap().to_path_buf();
    let next = r.ca.server(&dir, "second");

    // An established keep-alive connection, used before and after the reload.
    let mut s_client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", r.port),
            "-CAfile",
        ])
        .arg(&r.ca.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_server = s_client.stdin.take().unwrap();
    let mut from_server = BufReader::new(s_client.stdout.take().unwrap());
    let mut ask = |marker: &str| -> bool {
        write!(
            to_server,
            "GET /echo HTTP/1.1\r\nHost: x\r\nX-Marker: {marker}\r\n\r\n"
        )
        .unwrap();
        to_server.flush().unwrap();
        let mut line = String::new();
        while from_server.read_line(&mut line).unwrap_or(0) > 0 {
            if line
                .to_ascii_lowercase()
                .contains(&format!("x-marker: {marker}"))
            {
                return true;
            }
            line.clear();
        }
        false
    };
    assert!(ask("before"));

    let load = Load::start(r.port, &r.ca.path);
    load.wait_for_more(3);
    install(&next.key, &r.live.key);
    install(&next.cert, &r.live.cert);
    let want = fingerprint(&next.cert);
    wait_until(
        "the new certificate to be served",
        Duration::from_secs(20),
        || served_fingerprint(r.port).as_deref() == Some(want.as_str()),
    );
    assert!(
        ask("after"),
        "the established connection broke during the reload"
    );
    load.wait_for_more(3);

    // A broken certificate file is refused; the current one stays in use.
    std::fs::write(dir.join("garbage"), b"not a certificate").unwrap();
    install(&dir.join("garbage"), &r.live.cert);
    wait_until(
        "the reload failure to be logged",
        Duration::from_secs(20),
        || r.gateway.log().contains("TLS reload failed"),
    );
    assert_eq!(served_fingerprint(r.port).as_deref(), Some(want.as_str()));

    load.wait_for_more(3);
    let (ok, failed) = load.finish();
    let _ = s_client.kill();
    let _ = s_client.wait();
    assert_eq!(
        failed, 0,
        "{failed} requests failed during the reloads ({ok} succeeded)"
    );
    assert!(ok >= 5, "only {ok} requests ran during the test");
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let r = start(false);
    let dir = r.live.cert.parent().unwrap().to_path_buf();
    let next = r.ca.server(&dir, "second");
    install(&next.key, &r.live.key);
    install(&next.cert, &r.live.cert);
    let want = fingerprint(&next.cert);
    r.gateway.proc.signal("HUP");
    wait_until(
        "SIGHUP to load the new certificate",
        Duration::from_secs(20),
        || served_fingerprint(r.port).as_deref() == Some(want.as_str()),
    );
    assert!(r.gateway.log().contains("TLS material reloaded"));
}
