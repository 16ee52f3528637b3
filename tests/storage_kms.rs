//! Master keys outside the PACS host, with Debian's Orthanc 1.10.1 and the plugin: an AWS
//! KMS key (moto's server, the real KMS API) and a non-extractable AES key in a SoftHSM2
//! token. C-STORE and REST uploads read back byte-identical; the data keys appear in no
//! file, log or the Orthanc process's environment; KMS unreachable fails writes (nothing
//! left behind), reads and start-up closed; with KMS back everything reads; rekey moves
//! objects from a key file to KMS and on to the HSM.

mod support;

use std::path::Path;

use support::dicom::{dcmtk, STORESCU};
use support::kms::{Moto, SoftHsm, AWS_ENV};
use support::orthanc::Orthanc;
use support::storage::{
    cli_env, contains, files_under, fs_location, instance_ids, keygen, object_path,
    orthanc_refuses_env, plugin_config_keys, rest, rest_json, upload,
};

/// The data key AAD of master key `id` (FORMAT.md, "Wrapped data key") in hex: the KMS
/// encryption context the plugin uses.
fn context_hex(id: u32) -> String {
    let mut aad = b"pacsgate-storage v3 data key".to_vec();
    aad.extend_from_slice(&id.to_be_bytes());
    aad.iter().map(|b| format!("{b:02x}")).collect()
}

/// (key id, wrapped data key) of a v3 object.
fn wrapped_key(object: &[u8]) -> (u32, Vec<u8>) {
    assert_eq!(&object[..5], b"\x89PGE\x03", "format v3");
    let id = u32::from_be_bytes(object[44..48].try_into().unwrap());
    let w = usize::from(u16::from_be_bytes(object[48..50].try_into().unwrap()));
    (id, object[50..50 + w].to_vec())
}

/// C-STORE two files straight to Orthanc's DICOM port and upload one over REST. The REST
/// upload reads back byte-identical to its file; a C-STOREd instance is what Orthanc wrote
/// (its own file meta header, possibly another transfer syntax), so it must carry the SOP
/// Instance UID of a file sent. Returns what Orthanc serves per instance, for
/// byte-identical comparisons after key changes (and with the CLI's decryption).
fn store_three(orthanc: &Orthanc) -> Vec<(String, Vec<u8>)> {
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
        support::pydicom_file("rtplan.dcm"),
    ];
    let args: Vec<String> = ["-aet", "MODALITY1", "-aec", "ORTHANC"]
        .map(String::from)
        .to_vec();
    let (status, out) = dcmtk(STORESCU, orthanc.dicom_port, &args, &files[..2]);
    assert!(
        status.success() && out.matches("Received Store Response (Success)").count() == 2,
        "{out}"
    );
    let rest_id = upload(orthanc.http_port, &files[2]);
    let sources: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let served = served(orthanc);
    assert_eq!(served.len(), 3);
    for (id, bytes) in &served {
        if *id == rest_id {
            assert!(*bytes == sources[2], "REST upload {id} not byte-identical");
        } else {
            let tags = rest_json(
                orthanc.http_port,
                "GET",
                &format!("/instances/{id}/simplified-tags"),
                None,
            );
            let uid = tags["SOPInstanceUID"].as_str().unwrap_or("?");
            assert!(
                sources[..2].iter().any(|s| contains(s, uid.as_bytes())),
                "C-STORE {id}: {uid} is not one of the files sent"
            );
        }
    }
    served
}

/// Every instance's file as Orthanc serves it (200 required).
fn served(orthanc: &Orthanc) -> Vec<(String, Vec<u8>)> {
    let mut ids = instance_ids(orthanc.http_port);
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let (code, back) = rest(
                orthanc.http_port,
                "GET",
                &format!("/instances/{id}/file"),
                None,
            );
            assert_eq!(code, 200, "{id}: {}", String::from_utf8_lossy(&back));
            (id, back)
        })
        .collect()
}

/// No file under `dir` and nothing in the process's environment or command line holds
/// `secret` raw, in hex or in base64.
fn assert_nowhere(dir: &Path, pid: u32, secret: &[u8]) {
    use base64::Engine;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let needles = [
        secret.to_vec(),
        hex.into_bytes(),
        hex_upper(secret),
        b64.into_bytes(),
    ];
    let mut places = files_under(dir);
    places.push(format!("/proc/{pid}/environ").into());
    places.push(format!("/proc/{pid}/cmdline").into());
    for place in places {
        let Ok(bytes) = std::fs::read(&place) else {
            continue;
        };
        for needle in &needles {
            assert!(
                !contains(&bytes, needle),
                "key material in {}",
                place.display()
            );
        }
    }
}

fn hex_upper(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn aws_kms_key_encrypts_cstore_and_rest_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path());
    let key = moto.create_key();
    let root = dir.path().join("encrypted");
    let config = plugin_config_keys((1, &key), &[], fs_location(&root), moto.settings());
    assert!(
        !config.to_string().contains("secret"),
        "no credentials in Orthanc's config"
    );
    let mut orthanc = Orthanc::start_with_env(dir.path(), config, &AWS_ENV);
    assert!(
        orthanc.proc.output().contains("master key 1 (aws-kms"),
        "{}",
        orthanc.proc.output()
    );
    let stored = store_three(&orthanc);

    for (id, bytes) in &stored {
        let path = object_path(orthanc.http_port, &root, id);
        let object = std::fs::read(&path).unwrap();
        assert!(!contains(&object, b"DICM"), "{id}");
        // The CLI, with the same KMS key, decrypts the object to exactly what Orthanc serves.
        let plain = dir.path().join("plain.dcm");
        let (status, out) = cli_env(
            &[
                "decrypt",
                "--key",
                &format!("1:{key}"),
                "--kms-region",
                support::kms::REGION,
                "--kms-endpoint",
                &moto.endpoint(),
                &path.display().to_string(),
                &plain.display().to_string(),
            ],
            &AWS_ENV,
        );
        assert!(status.success(), "{out}");
        assert!(std::fs::read(&plain).unwrap() == *bytes, "{id}");
        std::fs::remove_file(&plain).unwrap();
        let (key_id, blob) = wrapped_key(&object);
        assert_eq!(key_id, 1);
        // Only KMS opens the wrapped key, and only with the plugin's encryption context.
        let dek = moto.decrypt(&blob, &context_hex(1)).expect("KMS Decrypt");
        assert_eq!(dek.len(), 32);
        assert!(
            moto.decrypt(&blob, &context_hex(2)).is_none(),
            "context not enforced"
        );
        assert_nowhere(dir.path(), orthanc.proc.pid(), &dek);
    }
    // Default cache: one data key (one Encrypt) for the three objects, reads from the cache.
    orthanc.proc.signal("TERM");
    orthanc.proc.wait_exit(std::time::Duration::from_secs(60));
    let log = orthanc.proc.output();
    assert!(log.contains("remote key calls: 1 wrap, 0 unwrap"), "{log}");
}

#[test]
fn kms_unreachable_fails_closed_and_everything_reads_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path());
    let key = moto.create_key();
    let root = dir.path().join("encrypted");
    // Caching off: every write and read is a KMS call.
    let mut settings = moto.settings();
    settings["DataKeyReuseCount"] = 1.into();
    settings["DataKeyCacheSize"] = 0.into();
    let config = plugin_config_keys((1, &key), &[], fs_location(&root), settings.clone());
    let orthanc = Orthanc::start_with_env(dir.path(), config.clone(), &AWS_ENV);
    let ct = support::pydicom_file("CT_small.dcm");
    let ct_id = upload(orthanc.http_port, &ct);

    // KMS hangs (stopped process: connections open, no answers).
    moto.proc.signal("STOP");
    let before = files_under(&root);
    let mr = support::pydicom_file("MR_small.dcm");
    let (code, _) = rest(orthanc.http_port, "POST", "/instances", Some(&mr));
    assert_ne!(code, 200, "stored without KMS");
    assert_eq!(
        files_under(&root),
        before,
        "a partial or temporary object was left"
    );
    assert_eq!(instance_ids(orthanc.http_port), vec![ct_id.clone()]);
    let (code, body) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{ct_id}/file"),
        None,
    );
    assert_eq!(code, 500, "read without KMS");
    assert!(!contains(&body, b"DICM"));
    let log = orthanc.proc.output();
    assert!(
        log.contains("key service: Encrypt failed after 3 attempts"),
        "{log}"
    );
    drop(orthanc);

    // Start-up fails closed while the current key cannot be used.
    let log = orthanc_refuses_env(dir.path(), config.clone(), &AWS_ENV);
    assert!(
        log.contains("refusing to start") && log.contains("key service"),
        "{log}"
    );

    // KMS back: a restarted Orthanc reads the old object and stores the new one.
    moto.proc.signal("CONT");
    let orthanc = Orthanc::start_with_env(dir.path(), config, &AWS_ENV);
    let (code, back) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{ct_id}/file"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(back, std::fs::read(&ct).unwrap());
    let mr_id = upload(orthanc.http_port, &mr);
    let (code, back) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{mr_id}/file"),
        None,
    );
    assert_eq!((code, back), (200, std::fs::read(&mr).unwrap()));
}

#[test]
fn pkcs11_key_in_softhsm_encrypts_cstore_and_rest_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(dir.path(), "pacsgate");
    let uri = hsm.keygen("master-2");
    // The label is taken: keygen refuses to make a second key under it.
    let conf = hsm.conf.display().to_string();
    let env = [("SOFTHSM2_CONF", conf.as_str())];
    let (status, out) = cli_env(&["keygen", "--pkcs11", &uri], &env);
    assert!(!status.success() && out.contains("already exists"), "{out}");

    let root = dir.path().join("encrypted");
    let config = plugin_config_keys((2, &uri), &[], fs_location(&root), serde_json::json!({}));
    let orthanc = Orthanc::start_with_env(dir.path(), config, &env);
    store_three(&orthanc);
    for id in instance_ids(orthanc.http_port) {
        let object = std::fs::read(object_path(orthanc.http_port, &root, &id)).unwrap();
        let (key_id, blob) = wrapped_key(&object);
        assert_eq!(
            (key_id, blob.len()),
            (2, 60),
            "AES-GCM wrap inside the token"
        );
    }
    let (status, out) = cli_env(
        &[
            "verify",
            "--root",
            &root.display().to_string(),
            "--key",
            &format!("2:{uri}"),
        ],
        &env,
    );
    assert!(
        status.success()
            && out.contains("3 ok, 0 unreadable")
            && out.contains("v3 key 2 (pkcs11) content-type 1"),
        "{out}"
    );
    drop(orthanc);

    // A wrong PIN stops the start.
    let wrong = dir.path().join("wrong.pin");
    std::fs::write(&wrong, "0000\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bad_uri = uri.replace(
        &hsm.pin_file.display().to_string(),
        &wrong.display().to_string(),
    );
    let config = plugin_config_keys(
        (2, &bad_uri),
        &[],
        fs_location(&root),
        serde_json::json!({}),
    );
    let log = orthanc_refuses_env(dir.path(), config, &env);
    assert!(
        log.contains("refusing to start") && log.contains("C_Login"),
        "{log}"
    );
}

#[test]
fn rekey_from_a_key_file_to_kms_then_to_the_hsm() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path());
    let kms_key = moto.create_key();
    let hsm = SoftHsm::new(dir.path(), "pacsgate");
    let hsm_key = hsm.keygen("master-3");
    let conf = hsm.conf.display().to_string();
    let env = [AWS_ENV[0], AWS_ENV[1], ("SOFTHSM2_CONF", conf.as_str())];
    let root = dir.path().join("encrypted");
    let file_key = keygen(dir.path(), "1.key");
    let file_loc = file_key.display().to_string();

    let none = serde_json::json!({});
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config_keys((1, &file_loc), &[], fs_location(&root), none.clone()),
    );
    let stored = store_three(&orthanc);
    drop(orthanc);

    let rekey = |config: serde_json::Value, expect: &str| {
        let path = dir.path().join("rekey.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let (status, out) = cli_env(
            &["rekey", "--orthanc-config", &path.display().to_string()],
            &env,
        );
        assert!(status.success() && out.contains(expect), "{out}");
    };
    // File key -> KMS; then the key file is deleted.
    rekey(
        plugin_config_keys(
            (2, &kms_key),
            &[(1, &file_loc)],
            fs_location(&root),
            moto.settings(),
        ),
        "3 moved to master key 2",
    );
    std::fs::remove_file(&file_key).unwrap();
    let only_kms = plugin_config_keys((2, &kms_key), &[], fs_location(&root), moto.settings());
    let orthanc = Orthanc::start_with_env(dir.path(), only_kms, &env);
    assert!(served(&orthanc) == stored, "changed after rekey to KMS");
    drop(orthanc);

    // KMS -> HSM; then KMS is gone.
    rekey(
        plugin_config_keys(
            (3, &hsm_key),
            &[(2, &kms_key)],
            fs_location(&root),
            moto.settings(),
        ),
        "3 moved to master key 3",
    );
    drop(moto);
    let only_hsm = plugin_config_keys((3, &hsm_key), &[], fs_location(&root), none);
    let orthanc = Orthanc::start_with_env(dir.path(), only_hsm, &env);
    assert!(served(&orthanc) == stored, "changed after rekey to the HSM");
}
