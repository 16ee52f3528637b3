//! `deploy/quickstart.sh` checks everything that would stop it before the release build
//! (issue 11 item 2): Rust present and new enough (with the fix named), every port it
//! needs free on any address (the gateway's 443/11112, Orthanc's 8042/4242), and a running
//! Debian `orthanc.service` (DICOM on 0.0.0.0:4242 outside the gateway) stopped and kept
//! from starting at boot. A fake `cargo` first on PATH records whether the build started;
//! fake `systemctl`/`update-rc.d` record the boot-time changes instead of making them on
//! the test machine. The real run on stock Debian 12 is `deploy/chroot-proof.sh`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Sandbox {
    dir: tempfile::TempDir,
    /// https, dicom, orthanc http, orthanc dicom
    ports: [u16; 4],
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn rust_min() -> String {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("rust-version")
        .to_string()
}

fn write_exe(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Sandbox {
    /// `cargo_version`: what the fake cargo reports, or None for no cargo on PATH.
    fn new(cargo_version: Option<&str>) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let calls = dir.path().join("calls");
        if let Some(v) = cargo_version {
            write_exe(
                &bin.join("cargo"),
                &format!(
                    "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'cargo {v} (fake)'; exit 0; }}\n\
                     echo \"cargo $*\" >> {calls:?}\nexit 3\n"
                ),
            );
        }
        for tool in ["systemctl", "update-rc.d"] {
            write_exe(
                &bin.join(tool),
                &format!("#!/bin/sh\necho \"{tool} $*\" >> {calls:?}\n"),
            );
        }
        Sandbox {
            dir,
            ports: [free_port(), free_port(), free_port(), free_port()],
        }
    }

    fn run(&self) -> Output {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/quickstart.sh");
        let d = self.dir.path();
        let [https, dicom, ohttp, odicom] = self.ports.map(|p| p.to_string());
        Command::new("bash")
            .arg(script)
            .env_clear()
            .env("HOME", d) // no ~/.cargo/bin
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", d.join("bin").display()),
            )
            .env("PACSGATE_STATE", d.join("state"))
            .env("CARGO_TARGET_DIR", d.join("target"))
            .env("QUICKSTART_HTTPS_PORT", https)
            .env("QUICKSTART_DICOM_PORT", dicom)
            .env("QUICKSTART_ORTHANC_HTTP_PORT", ohttp)
            .env("QUICKSTART_ORTHANC_DICOM_PORT", odicom)
            .stdin(Stdio::null())
            .output()
            .expect("bash deploy/quickstart.sh")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ports_free_and_rust_present_reach_the_build_with_progress_shown() {
    let s = Sandbox::new(Some("1.95.0"));
    let out = s.run();
    let calls = s.calls();
    // The fake cargo fails the build (exit 3), so the script stops there.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        calls.contains(
            "cargo build --release -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage"
        ),
        "{calls}\n{}",
        text(&out)
    );
    // cargo's own progress: no --quiet / -q.
    assert!(!calls.contains("-q"), "{calls}");
}

#[test]
fn every_busy_port_stops_the_quickstart_before_the_build() {
    let names = ["https", "dicom", "orthanc http", "orthanc dicom"];
    for (i, name) in names.iter().enumerate() {
        // Held on 0.0.0.0, and the HTTPS port also on 127.0.0.2 only: a connect to
        // 127.0.0.1 (the old check) misses that listener, the gateway's bind does not.
        let hosts: &[Ipv4Addr] = if i == 0 {
            &[Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(127, 0, 0, 2)]
        } else {
            &[Ipv4Addr::UNSPECIFIED]
        };
        for host in hosts {
            let s = Sandbox::new(Some("1.95.0"));
            let port = s.ports[i];
            let _held = TcpListener::bind(SocketAddrV4::new(*host, port)).expect("hold port");
            let out = s.run();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name} on {host}: {}",
                text(&out)
            );
            assert!(
                err.contains(&format!("port {port} is in use")),
                "{name} on {host}: {}",
                text(&out)
            );
            // The holder is named (ss -p): this test process.
            assert!(
                err.contains(&format!("pid {}", std::process::id())),
                "{}",
                text(&out)
            );
            assert!(
                !s.calls().contains("cargo build"),
                "built anyway: {}",
                s.calls()
            );
        }
    }
}

#[test]
fn missing_cargo_is_explained_with_rustup() {
    let s = Sandbox::new(None);
    let out = s.run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("cargo is missing")
            && err.contains(&format!("Rust >= {}", rust_min()))
            && err.contains("https://rustup.rs"),
        "{}",
        text(&out)
    );
}

#[test]
fn debians_old_cargo_is_refused_with_the_fix() {
    // Debian 12's own cargo.
    let s = Sandbox::new(Some("1.65.0"));
    let out = s.run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("cargo 1.65.0 ") && err.contains(&format!("older than Rust {}", rust_min())),
        "{}",
        text(&out)
    );
    assert!(!s.calls().contains("cargo build"), "{}", s.calls());
}

/// Debian's Orthanc as orthanc.service runs it (`/usr/sbin/Orthanc --logdir=... <dir>/etc/orthanc/`)
/// on the given ports; returns once its DICOM port listens.
fn start_debian_orthanc(d: &Path, http: u16, dicom: u16) -> std::process::Child {
    let etc = d.join("etc/orthanc");
    let db = d.join("orthanc-db");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::create_dir_all(&db).expect("db");
    let config = serde_json::json!({
        "Name": "debian-default",
        "StorageDirectory": db, "IndexDirectory": db,
        "HttpPort": http, "DicomPort": dicom,
        "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
    });
    std::fs::write(etc.join("orthanc.json"), config.to_string()).expect("config");
    let log = std::fs::File::create(d.join("orthanc.log")).expect("log");
    let mut orthanc = Command::new("/usr/sbin/Orthanc")
        .arg(format!("--logdir={}", d.display()))
        .arg(format!("{}/", etc.display()))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("Orthanc");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", dicom)).is_err() {
        assert!(
            orthanc.try_wait().expect("wait").is_none(),
            "Orthanc exited"
        );
        assert!(Instant::now() < deadline, "Orthanc did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    orthanc
}

/// Debian's Orthanc holding the quickstart's Orthanc ports is stopped (by its pid, not
/// by name) and disabled at boot, and the build goes ahead.
#[test]
fn a_running_debian_orthanc_on_our_ports_is_stopped_and_disabled() {
    let s = Sandbox::new(Some("1.95.0"));
    let mut orthanc = start_debian_orthanc(s.dir.path(), s.ports[2], s.ports[3]);
    let out = s.run();
    let gone = orthanc.try_wait().expect("wait");
    if gone.is_none() {
        let _ = orthanc.kill();
        let _ = orthanc.wait();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        gone.is_some(),
        "Debian's Orthanc still running: {}",
        text(&out)
    );
    assert!(
        stdout.contains("Debian's orthanc.service is running")
            && stdout.contains(&format!("holds port(s) {} {}", s.ports[2], s.ports[3])),
        "{}",
        text(&out)
    );
    let calls = s.calls();
    assert!(
        calls.contains("systemctl disable --quiet orthanc.service"),
        "{calls}"
    );
    assert!(calls.contains("update-rc.d orthanc disable"), "{calls}");
    assert!(
        calls.contains("cargo build --release"),
        "{calls}\n{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// Debian's Orthanc on other ports is not the quickstart's to stop (another PACS, another
/// quickstart): it is left running, with a warning that its DICOM port bypasses the gateway.
#[test]
fn a_debian_orthanc_on_other_ports_is_left_running_with_a_warning() {
    let s = Sandbox::new(Some("1.95.0"));
    let mut orthanc = start_debian_orthanc(s.dir.path(), free_port(), free_port());
    let out = s.run();
    let running = orthanc.try_wait().expect("wait").is_none();
    let _ = orthanc.kill();
    let _ = orthanc.wait();
    assert!(
        running,
        "the quickstart stopped an Orthanc not on its ports: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: Debian's orthanc.service is running beside"),
        "{}",
        text(&out)
    );
    assert!(!s.calls().contains("disable"), "{}", s.calls());
    assert!(
        s.calls().contains("cargo build --release"),
        "{}",
        text(&out)
    );
}
