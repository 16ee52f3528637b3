//! The unit's seccomp filter (`SystemCallFilter=@system-service`, then `~@privileged
//! @resources`) and `RestrictAddressFamilies=` must allow what the gateway really does:
//! a filtered call fails with EPERM under systemd, and nothing here runs systemd as PID 1.
//! So the gateway runs as an unprivileged user under strace through a whole service life
//! (check, start with certificate generation, HTTPS requests with audit, a DICOM TLS
//! C-STORE relayed to storescp, SIGHUP reload and audit reopen, SIGTERM drain), and every system call and socket family it used is
//! checked against the sets systemd itself resolves (`systemd-analyze syscall-filter`).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::backend::Backend;
use support::dicom::{dcmtk, StoreScp, STORESCU};
use support::gateway::{binary, http_status};
use support::notify::NotifySocket;
use support::process::{free_port, Proc};

const WAIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

/// Every group `systemd-analyze syscall-filter` knows, with its members (calls or @groups).
fn groups() -> HashMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze (package systemd); run tests/run.sh");
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{name}"));
            map.entry(format!("@{name}")).or_default();
        } else if let (Some(group), Some(item)) = (&current, line.strip_prefix("    ")) {
            if !item.starts_with('#') && !item.trim().is_empty() {
                map.get_mut(group).unwrap().push(item.trim().to_string());
            }
        }
    }
    map
}

fn expand(name: &str, groups: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    match groups.get(name) {
        Some(members) => members.iter().for_each(|m| expand(m, groups, out)),
        None => {
            out.insert(name.to_string());
        }
    }
}

/// What the unit's filter lets through, from the unit file's own SystemCallFilter= lines.
fn allowed_by_unit() -> BTreeSet<String> {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/pacsgate.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let groups = groups();
    let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
    for value in text
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, list) = match value.strip_prefix('~') {
            Some(rest) => (&mut deny, rest),
            None => (&mut allow, value),
        };
        list.split_whitespace()
            .for_each(|g| expand(g, &groups, set));
    }
    assert!(
        !allow.is_empty(),
        "the unit has no SystemCallFilter allow list"
    );
    let mut always = BTreeSet::new();
    expand("@default", &groups, &mut always);
    allow.difference(&deny).cloned().chain(always).collect()
}

fn families_allowed_by_unit() -> BTreeSet<String> {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/pacsgate.service");
    std::fs::read_to_string(unit)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// `cmd` as nobody under `strace -f`, its trace written to `trace`.
fn traced(args: &[&str], trace: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(["strace", "-f", "-qq", "-o"])
        .arg(trace)
        .arg(binary())
        .args(args)
        .envs(env.iter().copied());
    cmd
}

/// (system calls, socket families) in a strace log, from pacsgate's own execve on.
fn calls(trace: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(trace).unwrap();
    let (mut names, mut families) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let Some((name, rest)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // "<... resumed>", "--- SIGHUP", "+++ exited"
        }
        names.insert(name.to_string());
        if name == "socket" {
            families.insert(rest.split(',').next().unwrap_or("").to_string());
        }
    }
    (names, families)
}

#[test]
fn the_unit_allows_every_call_the_gateway_makes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "runs the gateway as nobody: run as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(NOBODY), Some(NOBODY)).unwrap();
    let backend = Backend::start();
    let scp = StoreScp::start(dir.path(), "ORTHANC", None);
    let (https, dicom) = (free_port(), free_port());
    let config = work.join("pacsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\nrsa_cert = \"certs/server-rsa.crt\"\nrsa_key = \"certs/server-rsa.key\"\n[http]\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n[audit]\npath = \"audit.jsonl\"\n",
            backend.port(),
            scp.port
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let notify = NotifySocket::bind();
    let socket = notify.env_value();
    let env = [("NOTIFY_SOCKET", socket.as_str())];

    // strace writes as nobody: the traces go into its directory.
    let (pre, main) = (work.join("check.trace"), work.join("run.trace"));
    let status = traced(&["check", "--config", &config], &pre, &[])
        .status()
        .unwrap();
    assert!(status.success(), "check failed");
    let mut proc = Proc::spawn(
        "pacsgate",
        traced(&["run", "--config", &config], &main, &env),
        &dir.path().join("run.log"),
    );
    notify.expect("READY=1", WAIT);
    let admin = std::fs::read_to_string(work.join("certs/admin.password")).unwrap();
    let url = format!("https://127.0.0.1:{https}/x");
    let user = admin.lines().next().unwrap();
    for args in [
        vec!["-k", url.as_str()],
        vec!["-k", "-u", user, url.as_str()],
    ] {
        let (_, code, err) = http_status(&args);
        assert_ne!(code, "000", "{err}\n{}", proc.output());
    }
    let certs = work.join("certs");
    let args: Vec<String> = ["-aec", "ORTHANC", "+tla", "+cf"]
        .iter()
        .map(|a| a.to_string())
        .chain([certs.join("server.crt").display().to_string(), "+cf".into()])
        .chain([certs.join("server-rsa.crt").display().to_string()])
        .collect();
    let file = support::pydicom_file("CT_small.dcm");
    let (status, out) = dcmtk(STORESCU, dicom, &args, &[file]);
    assert!(status.success() && scp.received().len() == 1, "{out}");
    // Signals go to pacsgate, strace's child (strace passes the exit status on).
    let children = format!("/proc/{0}/task/{0}/children", proc.pid());
    let gateway = std::fs::read_to_string(children).unwrap();
    let gateway = gateway
        .split_whitespace()
        .next()
        .expect("strace has a child");
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(gateway)
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {gateway}");
    };
    signal("HUP");
    notify.expect("RELOADING=1", WAIT);
    notify.expect("READY=1", WAIT);
    signal("TERM");
    notify.expect("STOPPING=1", WAIT);
    assert!(proc.wait_exit(WAIT).success(), "{}", proc.output());

    let allowed = allowed_by_unit();
    let families = families_allowed_by_unit();
    for trace in [&pre, &main] {
        let (used, used_families) = calls(trace);
        assert!(
            used.contains("execve") && used.len() > 20,
            "{trace:?}: {used:?}"
        );
        let refused: Vec<_> = used.difference(&allowed).collect();
        assert!(
            refused.is_empty(),
            "{trace:?}: the unit's SystemCallFilter refuses {refused:?} (EPERM under systemd)"
        );
        let refused: Vec<_> = used_families.difference(&families).collect();
        assert!(
            refused.is_empty(),
            "{trace:?}: RestrictAddressFamilies refuses {refused:?}"
        );
    }
}
