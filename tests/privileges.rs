//! Started as root with `server.user`, pacsgate binds its ports, gives its generated
//! certificates to that user, drops root, and keeps serving and reloading.

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
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n[server]\nuser = \"nobody\"\n",
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
    let cacert = dir.path().join("certs/server.crt").display().to_string();
    let (status, code, err) = http_status(&[
        "--cacert",
        &cacert,
        &format!("https://localhost:{https}/1k"),
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(code, "200");
    // Reload still reads the (handed over) files.
    gw.proc.signal("HUP");
    wait_until("the reload after the drop", Duration::from_secs(20), || {
        gw.log().contains("TLS material reloaded")
    });
    assert!(!gw.log().contains("TLS reload failed"), "{}", gw.log());
}
