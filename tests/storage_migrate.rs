//! `pacsgate storage migrate` and `verify` on a real Orthanc storage directory: plain
//! files written by Orthanc's built-in storage (plus an A1 object) are encrypted in place,
//! a dry run changes nothing, a second run has nothing left to do, and Orthanc with the
//! plugin then serves the migrated files byte-identical. verify lists damaged objects.

mod support;

use support::orthanc::Orthanc;
use support::storage::{
    cli, contains, fs_location, keygen, objects_under, plugin_config, rest, upload,
};

const A1_UUID: &str = "0a1b2c3d-0000-4000-8000-00000000a1a1";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn migrate_and_verify_a_real_orthanc_storage_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("orthanc-storage");
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
        support::pydicom_file("rtplan.dcm"),
    ];
    let plain = Orthanc::start(dir.path(), serde_json::json!({}));
    let ids: Vec<String> = files.iter().map(|f| upload(plain.http_port, f)).collect();
    drop(plain);
    assert_eq!(objects_under(&storage).len(), 3);

    // An A1 object from the official plugin (vector 3, key id 0x01020304).
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../storage/tests/vectors/a1-vectors.json")).unwrap();
    let v = &vectors["vectors"][2];
    let a1_key = dir.path().join("a1.key");
    std::fs::write(&a1_key, v["kek_base64_file_content"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(&a1_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let a1_path = storage
        .join(&A1_UUID[..2])
        .join(&A1_UUID[2..4])
        .join(A1_UUID);
    std::fs::create_dir_all(a1_path.parent().unwrap()).unwrap();
    std::fs::write(&a1_path, hex(v["encrypted_hex"].as_str().unwrap())).unwrap();

    let key = keygen(dir.path(), "1.key");
    let root = storage.display().to_string();
    let keys = [
        "--key".to_string(),
        format!("1:{}", key.display()),
        "--key".into(),
        format!("16909060:{}", a1_key.display()),
    ];
    let run = |cmd: &str, extra: &[&str]| {
        let mut args = vec![cmd, "--root", &root];
        args.extend(keys.iter().map(String::as_str));
        args.extend(extra);
        cli(&args)
    };

    let (status, out) = run("verify", &[]);
    assert!(
        !status.success() && out.contains("3 unreadable (3 not encrypted)"),
        "{out}"
    );
    let before: Vec<Vec<u8>> = objects_under(&storage)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let (status, out) = run("migrate", &["--dry-run"]);
    assert!(
        status.success() && out.contains("would encrypt 3 plain, 1 A1 and 0 v2"),
        "{out}"
    );
    let after: Vec<Vec<u8>> = objects_under(&storage)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "dry run changed files");

    let (status, out) = run("migrate", &[]);
    assert!(
        status.success() && out.contains("encrypted 3 plain, 1 A1 and 0 v2 objects; 0 already"),
        "{out}"
    );
    for p in objects_under(&storage) {
        assert!(
            !contains(&std::fs::read(&p).unwrap(), b"DICM"),
            "{}",
            p.display()
        );
    }
    let (status, out) = run("migrate", &[]);
    assert!(
        status.success() && out.contains("encrypted 0 plain, 0 A1 and 0 v2 objects; 4 already"),
        "{out}"
    );
    let (status, out) = run("verify", &[]);
    assert!(
        status.success() && out.contains("4 ok, 0 unreadable"),
        "{out}"
    );
    let decrypted = dir.path().join("a1.plain");
    let object = a1_path.display().to_string();
    let (status, out) = cli(&[
        "decrypt",
        "--key",
        &format!("1:{}", key.display()),
        &object,
        &decrypted.display().to_string(),
    ]);
    assert!(status.success(), "{out}");
    assert_eq!(
        std::fs::read(&decrypted).unwrap(),
        hex(v["plaintext_hex"].as_str().unwrap())
    );

    // Orthanc with the plugin on the migrated directory.
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config((1, &key), &[], fs_location(&storage)),
    );
    for (id, file) in ids.iter().zip(&files) {
        let (code, back) = rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        );
        assert_eq!(code, 200, "{id}");
        assert_eq!(back, std::fs::read(file).unwrap(), "{id}");
    }
    drop(orthanc);

    // verify names the damaged object.
    let mut bytes = std::fs::read(&a1_path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&a1_path, bytes).unwrap();
    let (status, out) = run("verify", &[]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "UNREADABLE 0a/1b/{A1_UUID}: integrity check failed"
        )) && out.contains("3 ok, 1 unreadable"),
        "{out}"
    );
}

/// A legacy v2 object (the independent Python writer's vector) stays readable, `verify`
/// says it is v2, and `migrate` upgrades it to v3 bound to its uuid (content type unknown
/// offline: unbound); `rekey` does the same for v2 objects it meets.
#[test]
fn migrate_upgrades_v2_objects_to_v3() {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../storage/tests/vectors/pge-vectors.json")).unwrap();
    let v = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let uuid = v["uuid"].as_str().unwrap();
    let object = root.join(&uuid[..2]).join(&uuid[2..4]).join(uuid);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    std::fs::write(
        &object,
        b64.decode(v["object_base64"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let key = dir.path().join("1.key");
    std::fs::write(
        &key,
        format!("{}\n", v["master_key_base64"].as_str().unwrap()),
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root_arg = root.display().to_string();
    let key_arg = format!("1:{}", key.display());
    let run = |cmd: &str| cli(&[cmd, "--root", &root_arg, "--key", &key_arg]);

    let (status, out) = run("verify");
    assert!(
        status.success()
            && out.contains(&format!(
                "OK {}/{}/{uuid} v2 key 1 (file)",
                &uuid[..2],
                &uuid[2..4]
            )),
        "{out}"
    );
    let before = std::fs::read(&object).unwrap();
    let (status, out) = run("migrate");
    assert!(
        status.success() && out.contains("0 plain, 0 A1 and 1 v2 objects; 0 already"),
        "{out}"
    );
    let after = std::fs::read(&object).unwrap();
    assert_eq!((before[4], after[4]), (2, 3), "upgraded to v3");
    let (status, out) = run("verify");
    assert!(
        status.success() && out.contains("v3 key 1 (file) content-type unbound"),
        "{out}"
    );
    let plain = dir.path().join("plain");
    let (status, out) = cli(&[
        "decrypt",
        "--key",
        &key_arg,
        &object.display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(status.success(), "{out}");
    assert_eq!(
        std::fs::read(&plain).unwrap().len() as u64,
        v["plaintext_len"].as_u64().unwrap()
    );
    // Now bound: the same bytes under another name no longer decrypt, unless told its name.
    let renamed = dir.path().join("99999999-8b18-4a3c-9d2e-0123456789ab");
    std::fs::copy(&object, &renamed).unwrap();
    let (status, out) = cli(&[
        "decrypt",
        "--key",
        &key_arg,
        &renamed.display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(
        !status.success() && out.contains("integrity check failed"),
        "{out}"
    );
    let (status, out) = cli(&[
        "decrypt",
        "--key",
        &key_arg,
        "--name",
        uuid,
        &renamed.display().to_string(),
        &plain.display().to_string(),
    ]);
    assert!(status.success(), "{out}");
}

/// The downgrade an attacker with write access to the storage would try once v3 binds
/// names: put an old, unbound v2 object (here the Python writer's vector, under master
/// key 1) in place of an attachment. Read by default (v2 stays readable): Orthanc serves
/// the foreign bytes. With `AcceptUnboundFormats: false` the plugin refuses it.
#[test]
fn an_unbound_v2_object_swapped_in_is_refused_when_unbound_formats_are_off() {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../storage/tests/vectors/pge-vectors.json")).unwrap();
    let v = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let key = dir.path().join("1.key");
    std::fs::write(
        &key,
        format!("{}\n", v["master_key_base64"].as_str().unwrap()),
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config((1, &key), &[], fs_location(&root)),
    );
    let ct = support::pydicom_file("CT_small.dcm");
    let id = upload(orthanc.http_port, &ct);
    let object = support::storage::object_path(orthanc.http_port, &root, &id);
    std::fs::write(
        &object,
        b64.decode(v["object_base64"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let (code, body) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{id}/file"),
        None,
    );
    assert_eq!(code, 200, "default: v2 is read");
    assert_eq!(
        body.len() as u64,
        v["plaintext_len"].as_u64().unwrap(),
        "foreign bytes served"
    );
    drop(orthanc);

    let mut strict = plugin_config((1, &key), &[], fs_location(&root));
    strict["PacsgateStorage"]["StorageEncryption"]["AcceptUnboundFormats"] = false.into();
    let orthanc = Orthanc::start(dir.path(), strict);
    let (code, body) = rest(
        orthanc.http_port,
        "GET",
        &format!("/instances/{id}/file"),
        None,
    );
    assert_eq!(code, 500, "unbound object served");
    assert!(!contains(&body, b"DICM"));
    let log = orthanc.proc.output();
    assert!(log.contains("not bound to its name"), "{log}");
}
