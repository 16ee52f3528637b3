//! The encrypting storage plugin in Debian's Orthanc 1.10.1 (storage cache off): C-STORE
//! through pacsgate over DICOM TLS; nothing readable at rest; files come back
//! byte-identical; /tags is served by range reads; DELETE removes objects; tampered and
//! truncated objects are errors; key rotation; start-up fails closed.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::dicom::{dcmtk, dcmtk_args, STORESCU};
use support::gateway::{dicom_only, Gateway};
use support::orthanc::{Orthanc, ORTHANC};
use support::pki::Ca;
use support::process::{free_port, Proc};
use support::storage::{
    cli, contains, delete_instance, fs_location, keygen, objects_under, plugin_config, rest,
    rest_json, upload,
};

fn instances(o: &Orthanc) -> Vec<String> {
    serde_json::from_value(rest_json(o.http_port, "GET", "/instances", None)).unwrap()
}

/// The object file of an instance's DICOM attachment.
fn object_of(o: &Orthanc, root: &Path, id: &str) -> std::path::PathBuf {
    let info = rest_json(
        o.http_port,
        "GET",
        &format!("/instances/{id}/attachments/dicom/info"),
        None,
    );
    let uuid = info["Uuid"].as_str().unwrap();
    root.join(&uuid[..2]).join(&uuid[2..4]).join(uuid)
}

#[test]
fn cstore_over_tls_is_encrypted_at_rest_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("encrypted");
    let key = keygen(dir.path(), "1.key");
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config((1, &key), &[], fs_location(&root)),
    );
    let system = rest_json(orthanc.http_port, "GET", "/system", None);
    assert!(
        system["StorageAreaPlugin"]
            .as_str()
            .is_some_and(|p| p.ends_with("libpacsgate_orthanc_storage.so")),
        "{system}"
    );

    // C-STORE through the gateway over TLS.
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let port = free_port();
    let toml = dicom_only(&server, "", port, orthanc.dicom_port, "");
    let _gw = Gateway::start(dir.path(), &toml);
    let args = dcmtk_args("MODALITY1", "ORTHANC", &ca.path, None);
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
    ];
    let (status, out) = dcmtk(STORESCU, port, &args, &files);
    assert!(
        status.success() && out.matches("Received Store Response (Success)").count() == 2,
        "{out}"
    );
    // And one over REST, whose stored bytes are the file's bytes.
    let rt = support::pydicom_file("rtplan.dcm");
    let rt_id = upload(orthanc.http_port, &rt);

    let ids = instances(&orthanc);
    assert_eq!(ids.len(), 3);
    let objects = objects_under(&root);
    assert_eq!(
        objects.len(),
        3,
        "one object per instance (readRange => no extra attachments): {objects:?}"
    );
    for id in &ids {
        let attachments = rest_json(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/attachments"),
            None,
        );
        assert_eq!(attachments, serde_json::json!(["dicom"]), "{id}");
        let tags = rest_json(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/simplified-tags"),
            None,
        );
        let name = tags["PatientName"].as_str().unwrap().to_string();
        assert!(name.len() > 3, "{tags}");
        let (code, file) = rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        );
        assert_eq!(code, 200);
        assert!(contains(&file, b"DICM") && contains(&file, name.as_bytes()));
        // At rest: neither the DICM magic nor the patient name, and the object decrypts
        // (with the CLI) to exactly what Orthanc serves.
        let object = object_of(&orthanc, &root, id);
        let at_rest = std::fs::read(&object).unwrap();
        assert!(
            !contains(&at_rest, b"DICM") && !contains(&at_rest, name.as_bytes()),
            "{id}"
        );
        let plain = dir.path().join(format!("{id}.dcm"));
        let (status, out) = cli(&[
            "decrypt",
            "--key",
            &format!("1:{}", key.display()),
            &object.display().to_string(),
            &plain.display().to_string(),
        ]);
        assert!(status.success(), "{out}");
        assert_eq!(std::fs::read(&plain).unwrap(), file, "{id}");
    }
    let (_, back) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{rt_id}/file"),
        None,
    );
    assert_eq!(
        back,
        std::fs::read(&rt).unwrap(),
        "REST upload comes back byte-identical"
    );

    // Tampering and truncation: an error from Orthanc, never the plaintext.
    let (a, b) = (&ids[0], &ids[1]);
    let obj_a = object_of(&orthanc, &root, a);
    let mut bytes = std::fs::read(&obj_a).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&obj_a, &bytes).unwrap();
    let obj_b = object_of(&orthanc, &root, b);
    let bytes = std::fs::read(&obj_b).unwrap();
    std::fs::write(&obj_b, &bytes[..bytes.len() - 1]).unwrap();
    for id in [a, b] {
        let (code, body) = rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        );
        assert_eq!(code, 500, "{id}");
        assert!(!contains(&body, b"DICM"), "{id}");
    }
    assert!(
        orthanc.proc.output().contains("integrity check failed"),
        "{}",
        orthanc.proc.output()
    );

    // DELETE removes the objects.
    for id in &ids {
        delete_instance(orthanc.http_port, id);
    }
    assert!(
        objects_under(&root).is_empty(),
        "{:?}",
        objects_under(&root)
    );
}

#[test]
fn key_rotation_reads_old_and_new_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("encrypted");
    let k1 = keygen(dir.path(), "1.key");
    let k2 = keygen(dir.path(), "2.key");
    let ct = support::pydicom_file("CT_small.dcm");
    let mr = support::pydicom_file("MR_small.dcm");

    let first = Orthanc::start(dir.path(), plugin_config((1, &k1), &[], fs_location(&root)));
    let ct_id = upload(first.http_port, &ct);
    drop(first);

    let rotated = Orthanc::start(
        dir.path(),
        plugin_config((2, &k2), &[(1, &k1)], fs_location(&root)),
    );
    let mr_id = upload(rotated.http_port, &mr);
    for (id, file) in [(&ct_id, &ct), (&mr_id, &mr)] {
        let (code, back) = rest(
            rotated.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        );
        assert_eq!(code, 200);
        assert_eq!(&back, &std::fs::read(file).unwrap());
    }
    let key_ids: Vec<u32> = [&ct_id, &mr_id]
        .iter()
        .map(|id| {
            // Format v3: the master key id is at bytes 44..48 (FORMAT.md).
            let bytes = std::fs::read(object_of(&rotated, &root, id)).unwrap();
            u32::from_be_bytes(bytes[44..48].try_into().unwrap())
        })
        .collect();
    assert_eq!(key_ids, vec![1, 2]);
    drop(rotated);

    // Without key 1 the old object is an error, the new one still reads.
    let only2 = Orthanc::start(dir.path(), plugin_config((2, &k2), &[], fs_location(&root)));
    assert_eq!(
        rest(
            only2.http_port,
            "GET",
            &format!("/instances/{ct_id}/file"),
            None
        )
        .0,
        500
    );
    assert_eq!(
        rest(
            only2.http_port,
            "GET",
            &format!("/instances/{mr_id}/file"),
            None
        )
        .0,
        200
    );
    assert!(only2
        .proc
        .output()
        .contains("master key id 1 is not configured"));
    drop(only2);

    // Rekey moves the old object to key 2; then key 1 is no longer needed.
    let conf = dir.path().join("orthanc.json");
    let (status, out) = cli(&[
        "rekey",
        "--orthanc-config",
        &conf.display().to_string(),
        "--key",
        &format!("1:{}", k1.display()),
    ]);
    assert!(
        status.success() && out.contains("1 moved to master key 2"),
        "{out}"
    );
    let again = Orthanc::start(dir.path(), plugin_config((2, &k2), &[], fs_location(&root)));
    let (code, back) = rest(
        again.http_port,
        "GET",
        &format!("/instances/{ct_id}/file"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(back, std::fs::read(&ct).unwrap());
}

/// Start Orthanc with `extra` and expect it to exit non-zero; returns its log.
fn orthanc_refuses(dir: &Path, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({
        "Name": "refuse", "HttpPort": free_port(), "DicomPort": free_port(),
        "StorageDirectory": dir.join("plain"), "IndexDirectory": dir.join("plain"),
        "RemoteAccessAllowed": false,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let path = dir.join("refuse.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut cmd = Command::new(ORTHANC);
    cmd.arg(&path)
        .current_dir(dir)
        .env("LD_PRELOAD", support::bind_lo());
    let mut proc = Proc::spawn("Orthanc", cmd, &dir.join("refuse.log"));
    let status = proc.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "Orthanc started: {}", proc.output());
    proc.output()
}

#[test]
fn start_fails_closed_on_bad_keys_or_backend() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("enc");
    let missing = dir.path().join("missing.key");
    let log = orthanc_refuses(
        dir.path(),
        plugin_config((1, &missing), &[], fs_location(&root)),
    );
    assert!(
        log.contains("refusing to start") && log.contains("missing.key"),
        "{log}"
    );

    let short = dir.path().join("short.key");
    std::fs::write(&short, "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(&short, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = orthanc_refuses(
        dir.path(),
        plugin_config((1, &short), &[], fs_location(&root)),
    );
    assert!(log.contains("expected 32"), "{log}");

    let open = keygen(dir.path(), "open.key");
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let log = orthanc_refuses(
        dir.path(),
        plugin_config((1, &open), &[], fs_location(&root)),
    );
    assert!(log.contains("chmod 600"), "{log}");

    let good = keygen(dir.path(), "good.key");
    let mut config = plugin_config((1, &good), &[], fs_location(&root));
    config["PacsgateStorage"]["StorageEncryption"]["Enable"] = false.into();
    let log = orthanc_refuses(dir.path(), config);
    assert!(log.contains("never stores plaintext"), "{log}");

    let dead = format!("http://127.0.0.1:{}", free_port());
    let s3 = serde_json::json!({"Type": "object", "Url": "s3://bucket/prefix", "Options": {
        "endpoint": dead, "allow_http": "true", "region": "us-east-1",
        "access_key_id": "test", "secret_access_key": "testtesttest"}});
    let log = orthanc_refuses(dir.path(), plugin_config((1, &good), &[], s3));
    assert!(
        log.contains("refusing to start") && log.contains("object store"),
        "{log}"
    );
}

/// Format v3 binds each object to its attachment uuid and content type: swapping two
/// objects in the storage directory, or renaming one onto another attachment's name, makes
/// Orthanc's reads fail with an integrity error instead of serving the other patient's
/// file (with format v2 both reads returned 200 and the swapped file). Putting the files
/// back makes them readable again: the failure is the binding, not damage.
#[test]
fn swapped_and_renamed_objects_fail_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("encrypted");
    let key = keygen(dir.path(), "1.key");
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config((1, &key), &[], fs_location(&root)),
    );
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
        support::pydicom_file("rtplan.dcm"),
    ];
    let ids: Vec<String> = files.iter().map(|f| upload(orthanc.http_port, f)).collect();
    let objects: Vec<_> = ids
        .iter()
        .map(|id| object_of(&orthanc, &root, id))
        .collect();
    let bytes: Vec<Vec<u8>> = objects.iter().map(|o| std::fs::read(o).unwrap()).collect();
    for b in &bytes {
        assert_eq!(b[4], 3, "written as format v3");
    }
    let get = |id: &str| {
        rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        )
    };

    // Swap A and B.
    std::fs::write(&objects[0], &bytes[1]).unwrap();
    std::fs::write(&objects[1], &bytes[0]).unwrap();
    for id in &ids[..2] {
        let (code, body) = get(id);
        assert_eq!(code, 500, "{id} served after a swap");
        assert!(!contains(&body, b"DICM"), "{id}");
    }
    // /tags goes through readRange: refused as well.
    let (code, _) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{}/simplified-tags", ids[0]),
        None,
    );
    assert_ne!(code, 200, "range read after a swap");
    // Rename C onto A's name.
    std::fs::rename(&objects[2], &objects[0]).unwrap();
    assert_eq!(get(&ids[0]).0, 500, "renamed object served");
    assert_ne!(get(&ids[2]).0, 200, "C's object is gone");
    let log = orthanc.proc.output();
    assert!(log.contains("integrity check failed"), "{log}");

    // Back in place: all three read again, byte-identical.
    for (o, b) in objects.iter().zip(&bytes) {
        std::fs::write(o, b).unwrap();
    }
    for (id, file) in ids.iter().zip(&files) {
        let (code, back) = get(id);
        assert_eq!(code, 200, "{id}");
        assert_eq!(back, std::fs::read(file).unwrap(), "{id}");
    }
}
