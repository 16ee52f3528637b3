//! The plugin on Azure Blob storage: Azurite (npm, installed by tests/run.sh) on a free
//! loopback port, object_store's emulator mode. Ciphertext at rest, byte-identical reads,
//! /tags, DELETE, and `pacsgate storage verify` over the container.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::orthanc::Orthanc;
use support::process::{free_port, run, wait_until, Proc};
use support::storage::{assert_reads_back, delete_instance, keygen, plugin_config, upload};

const AZURITE: &str = "/opt/azurite/node_modules/.bin/azurite-blob";

struct Azurite {
    url: String,
    _proc: Proc,
}

impl Azurite {
    fn start(dir: &Path) -> Azurite {
        let port = free_port();
        let work = dir.join("azurite");
        std::fs::create_dir_all(&work).unwrap();
        let mut cmd = Command::new(AZURITE);
        cmd.current_dir(&work)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ]);
        let proc = Proc::spawn("azurite", cmd, &dir.join("azurite.log"));
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/azurite_container.py");
        wait_until(
            "Azurite to create the container",
            Duration::from_secs(60),
            || {
                Command::new("python3")
                    .arg(&script)
                    .arg(port.to_string())
                    .arg("pacsgate")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        Azurite {
            url: format!("http://127.0.0.1:{port}"),
            _proc: proc,
        }
    }
}

#[test]
fn plugin_stores_encrypted_blobs_in_azurite() {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(dir.path());
    let key = keygen(dir.path(), "1.key");
    let location = serde_json::json!({"Type": "object", "Url": "az://pacsgate/orthanc",
        "Options": {"use_emulator": "true"}});
    // object_store's emulator mode takes Azurite's address from this variable.
    let env = [("AZURITE_BLOB_STORAGE_URL", azurite.url.as_str())];
    let orthanc =
        Orthanc::start_with_env(dir.path(), plugin_config((1, &key), &[], location), &env);
    let file = support::pydicom_file("CT_small.dcm");
    let id = upload(orthanc.http_port, &file);
    assert_reads_back(orthanc.http_port, &id, &file);

    let verify = || {
        let mut cmd = Command::new(support::gateway::binary());
        cmd.args(["storage", "verify", "--orthanc-config"])
            .arg(dir.path().join("orthanc.json"))
            .envs(env);
        run(cmd, Duration::from_secs(120))
    };
    let (status, out) = verify();
    assert!(
        status.success() && out.contains("1 objects on object store az://pacsgate/orthanc: 1 ok"),
        "{out}"
    );
    delete_instance(orthanc.http_port, &id);
    let (status, out) = verify();
    assert!(status.success() && out.contains("0 objects"), "{out}");
}
