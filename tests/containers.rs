//! The container images (deploy/container/): built with podman by build.sh, then each
//! entrypoint run from the mounted image in a chroot as the image's USER (podman run is
//! not possible in this sandbox: see tests/support/container.rs) against real peers on
//! loopback. pacsgate's image serves HTTPS (401 without credentials, 200 with) and relays
//! a DICOM echo to a real Orthanc; its `healthcheck` answers for the admin listener.
//! Orthanc's image starts with the encrypting plugin and stores only ciphertext.
//! Abuse cases: a shell or package manager in the gateway image (a foothold after an
//! exploit), root as USER, a plugin that silently fails to load (Orthanc then stores
//! plaintext).

mod support;

use std::path::Path;
use std::time::Duration;

use support::container::{
    chroot_cmd, image_user, inspect, mount, owned_copy, owned_dir, spawn_chroot, ORTHANC_IMAGE,
    PACSGATE_IMAGE,
};
use support::dicom::{dcmtk, dcmtk_tls, ECHOSCU};
use support::gateway::http_status;
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::policy::{sample_policy, ADMIN_PW};
use support::process::{free_port, run, wait_for_port};

const PACSGATE_UID: u32 = 10001;
const ORTHANC_UID: u32 = 999;

#[test]
fn pacsgate_image_is_minimal_and_non_root() {
    let meta = inspect(PACSGATE_IMAGE);
    let config = &meta["Config"];
    assert_eq!(config["User"], "10001:10001", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/bin/pacsgate"])
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["run", "--config", "/etc/pacsgate/config.toml"])
    );
    // Kept only in docker-format images (build.sh passes --format docker).
    let health = meta["Healthcheck"]["Test"].to_string();
    assert!(health.contains("\"healthcheck\""), "{health}");

    let root = mount(PACSGATE_IMAGE);
    for shell in [
        "bin/sh",
        "usr/bin/sh",
        "bin/bash",
        "usr/bin/env",
        "usr/bin/apt-get",
    ] {
        assert!(!root.join(shell).exists(), "{shell} is in the image");
    }
    // Every regular file is one we put there on purpose: the binary, the libraries ldd
    // names for it (loader included), passwd/group/nsswitch and the CA bundle.
    let allowed_etc = [
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ];
    for file in support::storage::files_under(&root) {
        let rel = file.strip_prefix(&root).expect("under root");
        let rel = rel.to_string_lossy();
        let lib =
            rel.starts_with("lib/") || rel.starts_with("lib64/") || rel.starts_with("usr/lib");
        assert!(
            rel == "usr/bin/pacsgate"
                || allowed_etc.contains(&rel.as_ref())
                || (lib && rel.contains(".so")),
            "unexpected file in the image: {rel}"
        );
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("pacsgate:x:10001:10001:"), "{passwd}");
    assert!(root.join("var/lib/pacsgate").is_dir());
}

#[test]
fn orthanc_image_runs_as_orthanc_with_the_plugin() {
    let meta = inspect(ORTHANC_IMAGE);
    let config = &meta["Config"];
    assert_eq!(config["User"], "999:999", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/sbin/Orthanc"])
    );
    let root = mount(ORTHANC_IMAGE);
    assert!(root
        .join("usr/lib/orthanc/pacsgate/libpacsgate_orthanc_storage.so")
        .is_file());
    assert!(root
        .join("usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")
        .is_file());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("orthanc:x:999:999:"), "{passwd}");
    // Only what a deployment mounts is configuration: no sample file loads a plugin or
    // opens a port behind its back.
    let etc: Vec<_> = std::fs::read_dir(root.join("etc/orthanc"))
        .unwrap()
        .collect();
    assert!(etc.is_empty(), "{etc:?}");
}

#[test]
fn pacsgate_image_serves_https_and_dicom_from_a_chroot() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
    let ca = Ca::new(dir.path(), "Container CA");
    let server = ca.server(dir.path(), "server");
    // /etc/pacsgate as a deployment mounts it: config and certificate files, readable by
    // the image's user only.
    let etc = owned_dir(&dir.path().join("etc-pacsgate"), PACSGATE_UID, 0o700);
    owned_copy(&server.cert, &etc.join("tls.crt"), PACSGATE_UID, 0o600);
    owned_copy(&server.key, &etc.join("tls.key"), PACSGATE_UID, 0o600);
    let (https, dicom, admin) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[tls]\ncert = \"/etc/pacsgate/tls.crt\"\nkey = \"/etc/pacsgate/tls.key\"\n\
         [dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [http]\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n{}",
        orthanc.dicom_port,
        orthanc.http_port,
        sample_policy()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    owned_copy(&config, &etc.join("config.toml"), PACSGATE_UID, 0o600);

    let root = mount(PACSGATE_IMAGE);
    let user = image_user(PACSGATE_IMAGE);
    let binds = [(etc.as_path(), "/etc/pacsgate")];
    let argv = [
        "/usr/bin/pacsgate",
        "run",
        "--config",
        "/etc/pacsgate/config.toml",
    ];
    let mut gw = spawn_chroot(
        "pacsgate (image)",
        &root,
        &user,
        &binds,
        &argv,
        &dir.path().join("gateway.log"),
    );
    gw.wait_for_output("pacsgate ready", Duration::from_secs(60));
    assert_eq!(
        uid_of(gw.pid()),
        PACSGATE_UID,
        "the entrypoint runs as USER"
    );

    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{https}/system");
    let (_, code, err) = http_status(&["--cacert", &cacert, &url]);
    assert_eq!(code, "401", "no credentials: {err}\n{}", gw.output());
    let creds = format!("admin:{ADMIN_PW}");
    let (_, code, err) = http_status(&["--cacert", &cacert, "-u", &creds, &url]);
    assert_eq!(code, "200", "admin: {err}\n{}", gw.output());

    let mut args = vec![
        "-aet".into(),
        "ECHOER".into(),
        "-aec".into(),
        "ORTHANC".into(),
    ];
    args.extend(dcmtk_tls(&ca.path, None));
    let (status, out) = dcmtk(ECHOSCU, dicom, &args, &[]);
    assert!(
        status.success() && out.contains("Received Echo Response (Success)"),
        "{out}\n{}",
        gw.output()
    );

    // The HEALTHCHECK command, from the image, in the same chroot: healthy while the
    // gateway and Orthanc answer; a port nobody listens on is unhealthy (exit 1).
    let probe = |url: &str| {
        let cmd = chroot_cmd(
            &root,
            &user,
            &[],
            &["/usr/bin/pacsgate", "healthcheck", "--url", url],
        );
        run(cmd, Duration::from_secs(30))
    };
    for path in ["healthz", "readyz"] {
        let (status, out) = probe(&format!("http://127.0.0.1:{admin}/{path}"));
        assert!(status.success(), "{path}: {out}");
    }
    let (status, out) = probe(&format!("http://127.0.0.1:{}/healthz", free_port()));
    assert_eq!(status.code(), Some(1), "{out}");
    let (status, out) = probe("https://127.0.0.1:1/healthz");
    assert_eq!(status.code(), Some(64), "{out}");
}

#[test]
fn orthanc_image_stores_ciphertext_through_the_plugin_from_a_chroot() {
    let dir = tempfile::tempdir().unwrap();
    let etc = owned_dir(&dir.path().join("etc-orthanc"), ORTHANC_UID, 0o750);
    let state = owned_dir(&dir.path().join("var-lib-orthanc"), ORTHANC_UID, 0o750);
    let tmp = owned_dir(&dir.path().join("tmp"), 0, 0o1777);
    for sub in ["db", "encrypted"] {
        owned_dir(&state.join(sub), ORTHANC_UID, 0o750);
    }
    let key = support::storage::keygen(dir.path(), "master-1.key");
    owned_copy(&key, &etc.join("master-1.key"), ORTHANC_UID, 0o600);
    // The loopback shim (tests only: Orthanc 1.10.1 has no bind address), seen by the
    // chrooted Orthanc at /tmp/bind_lo.so.
    owned_copy(&support::bind_lo(), &tmp.join("bind_lo.so"), 0, 0o755);

    let (http, dicom) = (free_port(), free_port());
    let mut config = support::storage::plugin_config_keys(
        (1, "/etc/orthanc/master-1.key"),
        &[],
        support::storage::fs_location(Path::new("/var/lib/orthanc/encrypted")),
        serde_json::json!({}),
    );
    let overrides = serde_json::json!({
        "Name": "container-test",
        "StorageDirectory": "/var/lib/orthanc/db",
        "IndexDirectory": "/var/lib/orthanc/db",
        "Plugins": ["/usr/lib/orthanc/pacsgate/libpacsgate_orthanc_storage.so"],
        "HttpPort": http,
        "DicomPort": dicom,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
    });
    for (k, v) in overrides.as_object().unwrap() {
        config[k] = v.clone();
    }
    std::fs::write(etc.join("orthanc.json"), config.to_string()).unwrap();

    let root = mount(ORTHANC_IMAGE);
    let binds = [
        (etc.as_path(), "/etc/orthanc"),
        (state.as_path(), "/var/lib/orthanc"),
        (tmp.as_path(), "/tmp"),
    ];
    let user = image_user(ORTHANC_IMAGE);
    let mut cmd = chroot_cmd(
        &root,
        &user,
        &binds,
        &["/usr/sbin/Orthanc", "/etc/orthanc/"],
    );
    // Host tools before the chroot print a harmless "cannot be preloaded" for this path.
    cmd.env("LD_PRELOAD", "/tmp/bind_lo.so");
    let orthanc =
        support::process::Proc::spawn("Orthanc (image)", cmd, &dir.path().join("orthanc.log"));
    wait_for_port(http, Duration::from_secs(60));
    assert_eq!(
        uid_of(orthanc.pid()),
        ORTHANC_UID,
        "the entrypoint runs as USER"
    );

    let system = support::storage::rest_json(http, "GET", "/system", None);
    assert!(
        system["StorageAreaPlugin"].is_string(),
        "plugin not active: {system}\n{}",
        orthanc.output()
    );
    let file = support::pydicom_file("CT_small.dcm");
    let id = support::storage::upload(http, &file);
    support::storage::assert_reads_back(http, &id, &file);

    let objects = support::storage::objects_under(&state.join("encrypted"));
    assert!(!objects.is_empty(), "no object under the plugin's root");
    let plain = std::fs::read(&file).unwrap();
    let name = b"CompressedSamples^CT1";
    assert!(support::storage::contains(&plain, name), "fixture changed");
    for object in &objects {
        let bytes = std::fs::read(object).unwrap();
        assert!(
            !support::storage::contains(&bytes, name),
            "plaintext in {object:?}"
        );
        assert!(
            !support::storage::contains(&bytes, b"DICM"),
            "DICOM preamble in {object:?}"
        );
    }
    let plain_files = support::storage::objects_under(&state.join("db"));
    assert!(
        plain_files.is_empty(),
        "Orthanc wrote files past the plugin: {plain_files:?}"
    );
}

/// The real uid of a process (the first field of `Uid:` in /proc/PID/status).
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Uid line")
}
