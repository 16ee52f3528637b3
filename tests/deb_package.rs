//! The Debian package, end to end on this machine (CI runs as root): build it twice from
//! the release build (revisions 1 and 2), install with dpkg, run the installed unit's
//! ExecStartPre and ExecStart as systemd would (systemd is not PID 1 here: the same
//! command lines, as the unit's User=/Group=, with its UMask=, working directory and
//! environment, and a notification socket that must get READY=1) in front of a real
//! Orthanc that loads the installed storage plugin; HTTPS answers 401 without and 200
//! with the generated admin account; logrotate rotates the audit file and the SIGHUP
//! reopen works; upgrade keeps the configuration, the account and the user; remove keeps
//! data; purge removes data, directories, user and group.
//!
//! The installed configuration listens on 443/11112 and expects Orthanc on 8042/4242: the
//! test edits the installed conffile to free loopback ports (which also proves that dpkg
//! keeps an edited conffile on upgrade).
//!
//! It refuses to run where pacsgate is already installed or a `pacsgate` user exists: it
//! would replace and then purge a real installation.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::gateway::http_status;
use support::notify::NotifySocket;
use support::orthanc::Orthanc;
use support::process::{free_port, listening_addresses, Proc};
use support::unit::Unit;

const WAIT: Duration = Duration::from_secs(120);
const UNIT: &str = "/lib/systemd/system/pacsgate.service";
const CONFIG: &str = "/etc/pacsgate/config.toml";

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", "pacsgate"])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn account(name: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

fn group_exists(name: &str) -> bool {
    matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
}

fn owner_mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// Purges the package whatever happens, so a failed run leaves the machine clean.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pacsgate"]).output();
    }
}

/// The release build's directory, built now (a no-op when tests/run.sh built it).
fn release_dir() -> PathBuf {
    // .../target/debug/deps/deb_package-HASH -> .../target
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    run_ok(
        Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "--release", "--quiet", "-p", "pacsgate"])
            .args([
                "-p",
                "pacsgate-storage-cli",
                "-p",
                "pacsgate-orthanc-storage",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    target.join("release")
}

fn build_deb(release: &Path, revision: u32, out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/build-deb.sh");
    let stdout = run_ok(
        Command::new(script)
            .arg("--bin")
            .arg(release.join("pacsgate"))
            .args(["--revision", &revision.to_string(), "--out-dir"])
            .arg(out),
    );
    PathBuf::from(stdout.trim())
}

fn assert_runs_as_pacsgate(proc: &Proc) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap();
    let (uid, _) = account("pacsgate").unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let all = uids
        .split_whitespace()
        .skip(1)
        .all(|u| u == uid.to_string());
    assert!(all, "not running as pacsgate: {uids}");
}

fn admin_credentials() -> String {
    let text = std::fs::read_to_string("/var/lib/pacsgate/certs/admin.password").unwrap();
    text.lines().next().unwrap().to_string()
}

fn assert_auth(https: u16) {
    let url = format!("https://localhost:{https}/patients");
    let ca = "/var/lib/pacsgate/certs/server.crt";
    let (_, code, err) = http_status(&["--cacert", ca, &url]);
    assert_eq!(code, "401", "without credentials: {err}");
    let (_, code, err) = http_status(&["--cacert", ca, "-u", &admin_credentials(), &url]);
    assert_eq!(code, "200", "with the generated admin account: {err}");
}

/// Point the installed configuration at free loopback ports and at `orthanc`.
fn edit_config(https: u16, dicom: u16, orthanc: &Orthanc) {
    let mut text = std::fs::read_to_string(CONFIG).unwrap();
    for (from, to) in [
        (
            "listen = \"0.0.0.0:443\"",
            format!("listen = \"127.0.0.1:{https}\""),
        ),
        (
            "listen = \"0.0.0.0:11112\"",
            format!("listen = \"127.0.0.1:{dicom}\""),
        ),
        (
            "upstream = \"http://127.0.0.1:8042\"",
            format!("upstream = \"http://127.0.0.1:{}\"", orthanc.http_port),
        ),
        (
            "upstream = \"127.0.0.1:4242\"",
            format!("upstream = \"127.0.0.1:{}\"", orthanc.dicom_port),
        ),
    ] {
        assert!(text.contains(from), "shipped config lacks {from}");
        text = text.replace(from, &to);
    }
    std::fs::write(CONFIG, text).unwrap();
}

/// A typo in the configuration is stopped by ExecReload's `check`: the running service
/// never sees it. The fixed file then reloads (RELOADING=1, READY=1).
fn reload_checks_first(unit: &Unit, proc: &Proc, notify: &NotifySocket, https: u16) {
    let good = std::fs::read_to_string(CONFIG).unwrap();
    std::fs::write(CONFIG, format!("{good}\n[bogus]\nkey = 1\n")).unwrap();
    let err = unit
        .reload(proc, notify)
        .expect_err("a broken config passed ExecReload");
    assert!(err.contains("bogus"), "{err}");
    assert!(
        !proc.output().contains("SIGHUP"),
        "the broken config reached the service"
    );
    std::fs::write(CONFIG, good).unwrap();
    unit.reload(proc, notify).unwrap();
    notify.expect("RELOADING=1", WAIT);
    notify.expect("READY=1", WAIT);
    assert_auth(https);
}

/// DICOM TLS through the installed service (dcmtk gets the RSA certificate under TLS 1.2).
fn echo_through(dicom: u16) {
    let certs = "/var/lib/pacsgate/certs";
    let args: Vec<String> = [
        "-aet",
        "TESTSCU",
        "-aec",
        "ORTHANC",
        "+tla",
        "+cf",
        &format!("{certs}/server.crt"),
        "+cf",
        &format!("{certs}/server-rsa.crt"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let (status, out) = support::dicom::dcmtk(support::dicom::ECHOSCU, dicom, &args, &[]);
    assert!(
        status.success() && out.contains("Received Echo Response (Success)"),
        "{out}"
    );
}

fn rotate_audit(proc: &Proc, notify: &NotifySocket, https: u16, dir: &Path) {
    let state = dir.join("logrotate.state");
    run_ok(
        Command::new("logrotate")
            .args(["-f", "-s"])
            .arg(&state)
            .arg("/etc/logrotate.d/pacsgate"),
    );
    // What the postrotate's `systemctl kill --signal=HUP` does under systemd.
    proc.signal("HUP");
    notify.expect("RELOADING=1", WAIT);
    notify.expect("READY=1", WAIT);
    let url = format!("https://localhost:{https}/after-rotation");
    http_status(&["--cacert", "/var/lib/pacsgate/certs/server.crt", &url]);
    let rotated: Vec<String> = std::fs::read_dir("/var/log/pacsgate")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.jsonl-"))
        .collect();
    assert_eq!(rotated.len(), 1, "rotated files: {rotated:?}");
    // The audit writer thread writes the record shortly after the response.
    let mut audit = String::new();
    let waited = std::time::Instant::now();
    while !audit.contains("/after-rotation") && waited.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
        audit = std::fs::read_to_string("/var/log/pacsgate/audit.jsonl").unwrap();
    }
    assert!(
        audit.contains("/after-rotation"),
        "the reopened audit file got no record:\n{}",
        proc.output()
    );
    let (uid, gid) = account("pacsgate").unwrap();
    assert_eq!(
        owner_mode("/var/log/pacsgate/audit.jsonl"),
        (uid, gid, 0o600)
    );
}

#[test]
fn deb_installs_runs_upgrades_and_purges() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "installs a package: run as root (CI does)"
    );
    assert!(
        !dpkg_status().contains("installed") && account("pacsgate").is_none(),
        "pacsgate is installed (or a pacsgate user exists) on this machine; this test would \
         replace and purge it. Run it on a CI or throwaway machine (dpkg --purge pacsgate)."
    );
    let dir = tempfile::tempdir().unwrap();
    let release = release_dir();
    let debs = [1, 2].map(|rev| build_deb(&release, rev, dir.path()));
    let _cleanup = Installed;

    run_ok(Command::new("dpkg").arg("-i").arg(&debs[0]));
    assert!(dpkg_status().starts_with("install ok installed 0.1.0-1"));
    let (uid, gid) = account("pacsgate").expect("no pacsgate user");
    assert!(uid < 1000, "not a system user: {uid}");
    assert_eq!(owner_mode("/etc/pacsgate"), (0, gid, 0o750));
    assert_eq!(owner_mode(CONFIG), (0, gid, 0o640));
    assert_eq!(owner_mode("/var/lib/pacsgate"), (uid, gid, 0o700));
    assert_eq!(owner_mode("/var/log/pacsgate"), (uid, gid, 0o750));
    for path in [
        "/usr/bin/pacsgate",
        "/usr/lib/pacsgate/libpacsgate_orthanc_storage.so",
        "/usr/lib/pacsgate/bind_lo.so",
        "/usr/share/man/man1/pacsgate.1.gz",
        "/usr/share/bash-completion/completions/pacsgate",
        "/usr/share/doc/pacsgate/copyright",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let verify = run_ok(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(verify.trim().is_empty(), "{verify}");

    // Orthanc with the installed plugin and a key made by the installed binary.
    let key = dir.path().join("1.key");
    run_ok(
        Command::new("/usr/bin/pacsgate")
            .args(["storage", "keygen", "--out"])
            .arg(&key),
    );
    let mut plugin = support::storage::plugin_config(
        (1, &key),
        &[],
        support::storage::fs_location(&dir.path().join("enc")),
    );
    plugin["Plugins"] = serde_json::json!(["/usr/lib/pacsgate/libpacsgate_orthanc_storage.so"]);
    let shim = "/usr/lib/pacsgate/bind_lo.so";
    let orthanc = Orthanc::start_with_env(dir.path(), plugin, &[("LD_PRELOAD", shim)]);
    for port in [orthanc.http_port, orthanc.dicom_port] {
        let bound = listening_addresses(port);
        // 127.0.0.1 and ::1 as /proc/net writes them.
        let loopback = ["0100007F", "00000000000000000000000001000000"];
        assert!(
            !bound.is_empty() && bound.iter().all(|a| loopback.contains(&a.as_str())),
            "Orthanc with the shipped shim listens on {bound:?} for port {port}"
        );
    }
    let (_, system) = support::http_get(orthanc.http_port, "/system").unwrap();
    assert!(
        String::from_utf8_lossy(&system)
            .contains("/usr/lib/pacsgate/libpacsgate_orthanc_storage.so"),
        "Orthanc did not load the installed plugin"
    );

    let (https, dicom) = (free_port(), free_port());
    edit_config(https, dicom, &orthanc);
    let notify = NotifySocket::bind();
    let unit = Unit::load(Path::new(UNIT));
    let proc = unit.start(&notify, &dir.path().join("service-1.log"));
    assert_runs_as_pacsgate(&proc);
    assert_eq!(
        owner_mode("/var/lib/pacsgate/certs/admin.password").2,
        0o600
    );
    assert_auth(https);
    echo_through(dicom);
    reload_checks_first(&unit, &proc, &notify, https);
    rotate_audit(&proc, &notify, https, dir.path());
    unit.stop(proc, &notify);

    let (config, credentials) = (
        std::fs::read_to_string(CONFIG).unwrap(),
        admin_credentials(),
    );
    run_ok(Command::new("dpkg").arg("-i").arg(&debs[1]));
    assert!(dpkg_status().starts_with("install ok installed 0.1.0-2"));
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        config,
        "edited conffile replaced"
    );
    assert_eq!(owner_mode(CONFIG), (0, gid, 0o640));
    assert_eq!(
        account("pacsgate"),
        Some((uid, gid)),
        "service user changed"
    );
    assert_eq!(admin_credentials(), credentials, "generated account lost");
    let unit = Unit::load(Path::new(UNIT));
    let proc = unit.start(&notify, &dir.path().join("service-2.log"));
    assert_runs_as_pacsgate(&proc);
    assert_auth(https);
    unit.stop(proc, &notify);

    run_ok(Command::new("dpkg").args(["-r", "pacsgate"]));
    assert!(!Path::new("/usr/bin/pacsgate").exists());
    for kept in [
        CONFIG,
        "/var/lib/pacsgate/certs/admin.password",
        "/var/log/pacsgate",
    ] {
        assert!(Path::new(kept).exists(), "remove deleted {kept}");
    }
    assert!(account("pacsgate").is_some(), "remove deleted the user");

    run_ok(Command::new("dpkg").args(["--purge", "pacsgate"]));
    for gone in [
        "/etc/pacsgate",
        "/var/lib/pacsgate",
        "/var/log/pacsgate",
        "/usr/lib/pacsgate",
    ] {
        assert!(!Path::new(gone).exists(), "purge left {gone}");
    }
    assert!(account("pacsgate").is_none(), "purge left the user");
    assert!(!group_exists("pacsgate"), "purge left the group");
    assert!(dpkg_status().is_empty() || dpkg_status().contains("not-installed"));
}
