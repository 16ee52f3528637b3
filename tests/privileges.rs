//! Started as root with `server.user`, pacsgate binds its ports, gives its generated
//! certificates to that user, drops root, and keeps serving and reloading. The generated
//! admin password file stays root's (0600): the unprivileged process keeps only the hash.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use support::backend::Backend;
use support::gateway::{http_status, Gateway};
use support::process::{free_port, wait_until};

fn ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn root_is_dropped_after_binding() {
    let dir = tempfile::tempdir().unwrap();
    // The service user must be able to reach the certificate directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let backend = Backend::start();
    let https = free_port();
    let toml = format!(
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[http]\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n[server]\nuser = \"nobody\"\n",
        backend.port()
    );
    let gw = Gateway::start(dir.path(), &toml);
    let is_root = ids(std::process::id(), "Uid:")[0] == 0;
    if !is_root {
        assert!(
            gw.log().contains("server.user has nothing to do"),
            "{}",
            gw.log()
        );
        return;
    }
    let nobody = 65534;
    assert_eq!(
        ids(gw.proc.pid(), "Uid:"),
        vec![nobody; 4],
        "uids after the drop"
    );
    assert_eq!(
        ids(gw.proc.pid(), "Gid:"),
        vec![nobody; 4],
        "gids after the drop"
    );
    let key = dir.path().join("certs/server.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().uid(),
        nobody,
        "generated key not handed over"
    );
    let admin_file = std::fs::metadata(dir.path().join("certs/admin.password")).unwrap();
    assert_eq!(admin_file.uid(), 0, "the password file is not handed over");
    assert_eq!(admin_file.mode() & 0o777, 0o600);
    let log = gw.log();
    let password = log
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("password: "))
        .expect("generated password printed");
    let creds = format!("admin:{}", password.trim());
    let cacert = dir.path().join("certs/server.crt").display().to_string();
    let url = format!("https://localhost:{https}/1k");
    let get = |creds: &[&str]| {
        let mut args = vec!["--cacert", cacert.as_str()];
        args.extend_from_slice(creds);
        args.push(&url);
        http_status(&args)
    };
    let (status, code, err) = get(&["-u", &creds]);
    assert!(status.success(), "{err}");
    assert_eq!(code, "200");
    assert_eq!(get(&[]).1, "401");
    // Reload still reads the (handed over) files.
    gw.proc.signal("HUP");
    wait_until("the reload after the drop", Duration::from_secs(20), || {
        gw.log().contains("TLS material reloaded")
    });
    assert!(!gw.log().contains("TLS reload failed"), "{}", gw.log());
    // The policy reload keeps the account loaded before the drop (the file is root's).
    wait_until("the policy reload", Duration::from_secs(20), || {
        gw.log().contains("configuration reload")
    });
    assert!(gw.log().contains("configuration reloaded"), "{}", gw.log());
    assert_eq!(get(&["-u", &creds]).1, "200");
}
