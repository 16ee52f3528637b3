//! The audit file on a full file system (a 1 MiB tmpfs), through the real gateway in front
//! of a real Orthanc. `audit.on_full = "drop"`: requests keep flowing, and
//! `pacsgate_audit_records_lost_total` is exactly the number of records missing from the
//! file once space is back (the writer holds what it could not write and retries).
//! `"refuse"`: once a write fails, requests get 503 and associations A-ASSOCIATE-RJ
//! transient, every request that was answered by Orthanc has its record in the file after
//! space is back, and service resumes. Shutdown writes what is still queued.
//!
//! Abuse considered: an attacker who can fill the audit disk (big uploads to a shared
//! volume, a log flood) to act unaudited. With "drop" every unaudited request is counted
//! and logged; with "refuse" there is no access whose record cannot be written.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::backend::Backend;
use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{http_status, tls_section, Gateway};
use support::http_get;
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::{free_port, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// A 1 MiB tmpfs, unmounted when dropped (declare it before the gateway that writes in it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Write zeros until the file system is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Site {
    ca: Ca,
    https: u16,
    dicom: u16,
    admin: u16,
    audit: PathBuf,
    gateway: Gateway,
    _orthanc: Orthanc,
}

fn start(dir: &Path, audit: &Path, audit_extra: &str) -> Site {
    let orthanc = Orthanc::start(dir, serde_json::json!({}));
    let ca = Ca::new(dir, "Test CA");
    let server = ca.server(dir, "server");
    let (https, dicom, admin) = (free_port(), free_port(), free_port());
    let toml = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n[dicom.modalities.ct]\naet = \"CT1\"\nallow = [\"echo\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[audit]\npath = {:?}\n{audit_extra}\n",
        tls_section(&server, ""),
        orthanc.http_port,
        orthanc.dicom_port,
        audit.display().to_string(),
    );
    let gateway = Gateway::start(dir, &toml);
    Site {
        ca,
        https,
        dicom,
        admin,
        audit: audit.to_path_buf(),
        gateway,
        _orthanc: orthanc,
    }
}

impl Site {
    /// GET `path` (an unknown instance: Orthanc answers 404 itself); the status code.
    fn get(&self, path: &str) -> u16 {
        let url = format!("https://localhost:{}{path}", self.https);
        let ca = self.ca.path.display().to_string();
        let (_, code, err) = http_status(&["--cacert", &ca, &url]);
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no answer: {err}"))
    }

    /// The paths of the audit file's records; every line must be a whole JSON object.
    fn records(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("truncated or bad record {l:?}: {e}"));
                r["path"]
                    .as_str()
                    .unwrap_or(r["kind"].as_str().unwrap_or(""))
                    .to_string()
            })
            .collect()
    }

    /// The sum of every series of `name` on /metrics.
    fn metric(&self, name: &str) -> u64 {
        let (status, body) = http_get(self.admin, "/metrics").expect("admin answers");
        assert_eq!(status, 200);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn drop_mode_keeps_serving_on_a_full_disk_and_counts_every_lost_record() {
    if !is_root() {
        eprintln!("audit_full: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("audit"));
    let site = start(
        dir.path(),
        &fs.0.join("audit.jsonl"),
        "queue = 16\nflush = \"1ms\"\non_full = \"drop\"",
    );
    assert_eq!(site.get("/instances/first"), 404);
    wait_until("the first record", WAIT, || site.records().len() == 1);

    fs.fill();
    let sent = 80;
    for i in 0..sent {
        assert_eq!(
            site.get(&format!("/instances/full-{i}")),
            404,
            "{}",
            site.gateway.log()
        );
    }
    wait_until("lost records to be counted", WAIT, || {
        site.metric("pacsgate_audit_records_lost_total") > 0
    });
    let log = site.gateway.log();
    assert!(log.contains("cannot write the audit file"), "{log}");
    assert!(log.contains("audit records lost"), "{log}");

    fs.free();
    // The writer retries within a second; until it has taken the queue, it is still full.
    wait_until("the writer to recover", WAIT, || {
        site.gateway
            .log()
            .contains("the audit file is writable again")
            && site.metric("pacsgate_audit_queue_records") == 0
    });
    assert_eq!(site.get("/instances/after"), 404);
    // Until then the file may end in the first part of a record whose rest is held.
    let text = || std::fs::read_to_string(&site.audit).unwrap_or_default();
    let waited = std::time::Instant::now();
    while !text().contains("\"/instances/after\"") {
        assert!(
            waited.elapsed() < WAIT,
            "records do not flow again: {} bytes {:?}\nlost {} written {} queued {}\n{}",
            std::fs::metadata(&site.audit).map(|m| m.len()).unwrap_or(0),
            text(),
            site.metric("pacsgate_audit_records_lost_total"),
            site.metric("pacsgate_audit_records_written_total"),
            site.metric("pacsgate_audit_queue_records"),
            site.gateway.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let records = site.records();
    let lost = site.metric("pacsgate_audit_records_lost_total");
    assert!(lost > 0 && lost < sent, "lost {lost}");
    assert_eq!(
        records.len() as u64 + lost,
        1 + sent + 1,
        "every request is either in the file or counted as lost"
    );
    let missing = (0..sent)
        .filter(|i| !records.contains(&format!("/instances/full-{i}")))
        .count() as u64;
    assert_eq!(missing, lost);
    assert_eq!(
        site.metric("pacsgate_audit_records_written_total"),
        records.len() as u64
    );
    assert_eq!(site.metric("pacsgate_audit_queue_records"), 0);
}

#[test]
fn refuse_mode_answers_503_and_rj_until_records_can_be_written() {
    if !is_root() {
        eprintln!("audit_full: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("audit"));
    let site = start(
        dir.path(),
        &fs.0.join("audit.jsonl"),
        "queue = 16\nflush = \"1ms\"\non_full = \"refuse\"",
    );
    fs.fill();
    // Records fit in the file's last page for a while; then a write fails.
    let mut answered = Vec::new();
    let mut sent = 0;
    loop {
        assert!(sent < 200, "never refused: {}", site.gateway.log());
        let path = format!("/instances/r-{sent}");
        sent += 1;
        match site.get(&path) {
            404 => answered.push(path),
            503 => break,
            other => panic!("{path}: {other}"),
        }
    }
    let ca = site.ca.path.clone();
    let (status, out) = dcmtk(
        ECHOSCU,
        site.dicom,
        &dcmtk_args("CT1", "ORTHANC", &ca, None),
        &[],
    );
    assert!(
        !status.success() && out.contains("Rejected Transient"),
        "{out}"
    );
    assert!(site.metric("pacsgate_http_refusals_total") >= 1);

    fs.free();
    wait_until("requests to be admitted again", WAIT, || {
        let path = format!("/instances/r-{sent}");
        sent += 1;
        let ok = site.get(&path) == 404;
        if ok {
            answered.push(path);
        }
        ok
    });
    let (status, out) = dcmtk(
        ECHOSCU,
        site.dicom,
        &dcmtk_args("CT1", "ORTHANC", &ca, None),
        &[],
    );
    assert!(status.success(), "{out}");
    wait_until("the echo's record", WAIT, || {
        site.records()
            .iter()
            .filter(|p| *p == "dicom.association")
            .count()
            == 2
    });
    // No unaudited access: every request Orthanc answered is in the file.
    let records = site.records();
    for path in &answered {
        assert!(records.contains(path), "{path} answered but not audited");
    }
    let lost = site.metric("pacsgate_audit_records_lost_total");
    assert_eq!(records.len() as u64 + lost, sent + 2, "{records:?}");
}

#[test]
fn sigterm_writes_the_queued_records_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let https = free_port();
    let audit = dir.path().join("audit.jsonl");
    // A 10 s flush: without the drain at shutdown nothing would be on disk yet.
    let toml = format!(
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n[audit]\npath = {:?}\nflush = \"10s\"\n",
        backend.port(),
        audit.display().to_string()
    );
    let mut gw = Gateway::start(dir.path(), &toml);
    let urls: Vec<String> = (0..20)
        .map(|i| format!("https://127.0.0.1:{https}/last-{i}"))
        .collect();
    for url in &urls {
        let (_, code, err) = http_status(&["-k", url]);
        assert_ne!(code, "000", "no answer: {err}");
    }
    gw.proc.signal("TERM");
    assert!(gw.proc.wait_exit(WAIT).success(), "{}", gw.log());
    let text = std::fs::read_to_string(&audit).unwrap();
    for i in 0..20 {
        assert!(
            text.contains(&format!("\"/last-{i}\"")),
            "/last-{i} missing:\n{text}"
        );
    }
}
