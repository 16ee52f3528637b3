//! Started as root with `[server] user`, the audit file is created before the privilege
//! drop and given to that user, so a rotation that recreates it with the old file's owner
//! and mode (logrotate's `create` without arguments) is reopened on SIGHUP: records go to
//! the new file, not to the rotated one. Abuse: the log directory belongs to the service
//! user, who could plant a symlink or hard link to a root file at the audit path; root
//! must not give that file away at the next start.

mod support;

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use support::backend::Backend;
use support::gateway::{http_status, Gateway};
use support::notify::NotifySocket;
use support::process::free_port;

const WAIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A directory tree the service user can work in: `dir` 0755 (root's), `dir/logs` its own.
fn logs_dir(dir: &Path) -> std::path::PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(NOBODY), Some(NOBODY)).unwrap();
    logs
}

fn config(https: u16, backend: &Backend, audit: &Path) -> String {
    format!(
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n[audit]\npath = \"{}\"\n[server]\nuser = \"nobody\"\n",
        backend.port(),
        audit.display()
    )
}

fn request(https: u16, path: &str) {
    let url = format!("https://127.0.0.1:{https}{path}");
    let (_, code, err) = http_status(&["-k", &url]);
    assert_ne!(code, "000", "no answer: {err}");
}

#[test]
fn audit_file_survives_rotation_after_the_privilege_drop() {
    if !is_root() {
        eprintln!("audit_rotate: needs root (CI runs as root); the owner hand-over is root-only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = logs_dir(dir.path());
    let audit = logs.join("audit.jsonl");
    let backend = Backend::start();
    let https = free_port();
    let notify = NotifySocket::bind();
    let socket = notify.env_value();
    let gw = Gateway::start_with_env(
        dir.path(),
        &config(https, &backend, &audit),
        &[("NOTIFY_SOCKET", &socket)],
    );
    notify.expect("READY=1", WAIT);
    let meta = std::fs::metadata(&audit).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (NOBODY, NOBODY),
        "audit file not given to server.user"
    );
    assert_eq!(meta.mode() & 0o777, 0o600);
    // The audit writer thread starts before the privilege drop: it must not stay root.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gw.proc.pid())).unwrap();
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let name = status.lines().next().unwrap_or("").to_string();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace()
                .skip(1)
                .all(|u| u == NOBODY.to_string()),
            "{name}: {uid}"
        );
    }
    request(https, "/before-rotation");

    // logrotate: move, then `create` a new file with the old one's owner and mode.
    let rotated = logs.join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    let old = std::fs::metadata(&rotated).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&audit)
        .unwrap();
    std::os::unix::fs::chown(&audit, Some(old.uid()), Some(old.gid())).unwrap();
    gw.proc.signal("HUP");
    notify.expect("RELOADING=1", WAIT);
    notify.expect("READY=1", WAIT);
    request(https, "/after-rotation");

    // The writer thread writes records shortly after the response.
    let mut after = String::new();
    let waited = std::time::Instant::now();
    while !after.contains("/after-rotation") && waited.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
        after = std::fs::read_to_string(&audit).unwrap();
    }
    let before = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        after.contains("/after-rotation"),
        "the new file got no record; rotated file:\n{before}\nlog:\n{}",
        gw.log()
    );
    assert!(
        !before.contains("/after-rotation"),
        "still writing the rotated file"
    );
    assert!(before.contains("/before-rotation"));
    assert!(
        !gw.log().contains("cannot reopen the audit file"),
        "{}",
        gw.log()
    );
}

#[test]
fn planted_links_at_the_audit_path_are_not_given_away() {
    if !is_root() {
        eprintln!("audit_rotate: needs root (CI runs as root)");
        return;
    }
    let backend = Backend::start();
    for kind in ["symlink", "hardlink"] {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs_dir(dir.path());
        // A root file the service user must never own (stands in for /etc/shadow).
        let victim = match kind {
            "symlink" => dir.path().join("victim"),
            // Hard links must stay on one file system: beside the planted name.
            _ => logs.join("victim"),
        };
        std::fs::write(&victim, "root:secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let audit = logs.join("audit.jsonl");
        match kind {
            "symlink" => std::os::unix::fs::symlink(&victim, &audit).unwrap(),
            _ => std::fs::hard_link(&victim, &audit).unwrap(),
        }
        let https = free_port();
        let gw = Gateway::start(dir.path(), &config(https, &backend, &audit));
        let meta = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "{kind}: the victim was given to server.user:\n{}",
            gw.log()
        );
        assert!(gw.log().contains("not a plain file"), "{kind}: no warning");
    }
}
