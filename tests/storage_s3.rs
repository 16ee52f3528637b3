//! The plugin on S3: a real SeaweedFS server (installed by tests/run.sh) on 127.0.0.1,
//! reached by object_store with a custom endpoint and path-style requests. Objects at rest
//! are ciphertext, files come back byte-identical (a 24 MiB one goes through a multipart
//! upload), /tags uses ranged GETs, DELETE removes the objects, verify reads the bucket.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::orthanc::Orthanc;
use support::process::{free_port, port_open, wait_until, Proc};
use support::storage::{
    assert_reads_back, big_dicom, cli, contains, delete_instance, keygen, plugin_config, rest_json,
    upload,
};

const BUCKET: &str = "pacsgate";

fn weed() -> PathBuf {
    let venv = PathBuf::from("/opt/seaweed-venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

/// A port p with p and p + 10000 free (SeaweedFS puts gRPC on port + 10000).
fn grpc_pair_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55000 && !port_open(p + 10000) {
            return p;
        }
    }
}

struct Seaweed {
    s3_port: u16,
    _proc: Proc,
}

fn s3_curl(port: u16, method: &str, path: &str) -> (u16, Vec<u8>) {
    s3_curl_body(port, method, path, None)
}

fn s3_curl_body(port: u16, method: &str, path: &str, body: Option<&Path>) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "30",
            "-X",
            method,
        ])
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            "test:testtesttest",
        ])
        // An upload (-T) is signed with an unsigned payload, which SeaweedFS accepts.
        .args(body.into_iter().flat_map(|b| {
            [
                "-H".to_string(),
                "x-amz-content-sha256: UNSIGNED-PAYLOAD".to_string(),
                "-T".to_string(),
                b.display().to_string(),
            ]
        }))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    support::storage::status_and_body(out.stdout)
}

impl Seaweed {
    fn start(dir: &Path) -> Seaweed {
        let data = dir.join("weed");
        std::fs::create_dir_all(&data).unwrap();
        let s3_config = data.join("s3.json");
        std::fs::write(&s3_config, r#"{"identities":[{"name":"test","credentials":[{"accessKey":"test","secretKey":"testtesttest"}],"actions":["Admin","Read","Write","List","Tagging"]}]}"#).unwrap();
        let (master, volume, filer, s3) = (
            grpc_pair_port(),
            grpc_pair_port(),
            grpc_pair_port(),
            grpc_pair_port(),
        );
        let mut cmd = Command::new(weed());
        cmd.arg("server")
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=100",
                "-filer",
                "-s3",
            ])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", s3_config.display()));
        let proc = Proc::spawn("weed", cmd, &dir.join("weed.log"));
        // Ready when the bucket can be created (the port opens before the filer is ready).
        wait_until(
            "SeaweedFS S3 to create the bucket",
            Duration::from_secs(120),
            || matches!(s3_curl(s3, "PUT", &format!("/{BUCKET}")).0, 200 | 409),
        );
        Seaweed {
            s3_port: s3,
            _proc: proc,
        }
    }

    fn location(&self) -> serde_json::Value {
        serde_json::json!({"Type": "object", "Url": format!("s3://{BUCKET}/orthanc"), "Options": {
            "endpoint": format!("http://127.0.0.1:{}", self.s3_port), "allow_http": "true",
            "region": "us-east-1", "access_key_id": "test", "secret_access_key": "testtesttest",
            "virtual_hosted_style_request": "false"}})
    }
}

/// The bucket key of an instance's DICOM attachment.
fn object_key(orthanc: &Orthanc, id: &str) -> String {
    let info = rest_json(
        orthanc.http_port,
        "GET",
        &format!("/instances/{id}/attachments/dicom/info"),
        None,
    );
    let uuid = info["Uuid"].as_str().unwrap();
    format!("/{BUCKET}/orthanc/{}/{}/{uuid}", &uuid[..2], &uuid[2..4])
}

/// Swap the two objects in the bucket, then rename one onto the other's key: every read
/// fails with an integrity error (format v3 binds the uuid); put back, both read again.
fn swap_and_rename_fail(weed: &Seaweed, orthanc: &Orthanc, ids: &[String], files: &[PathBuf]) {
    let keys: Vec<String> = ids.iter().map(|id| object_key(orthanc, id)).collect();
    let dir = tempfile::tempdir().unwrap();
    let saved: Vec<PathBuf> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let (code, raw) = s3_curl(weed.s3_port, "GET", key);
            assert_eq!(code, 200, "{key}");
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, raw).unwrap();
            path
        })
        .collect();
    let put = |key: &str, file: &Path| {
        let (code, body) = s3_curl_body(weed.s3_port, "PUT", key, Some(file));
        assert_eq!(code, 200, "PUT {key}: {}", String::from_utf8_lossy(&body));
    };
    let get = |id: &str| {
        support::storage::rest(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/file"),
            None,
        )
    };
    put(&keys[0], &saved[1]);
    put(&keys[1], &saved[0]);
    for id in ids {
        let (code, body) = get(id);
        assert_eq!(code, 500, "{id} served after a swap in S3");
        assert!(!contains(&body, b"DICM"), "{id}");
    }
    // Rename: A's object under B's key, A's key deleted.
    put(&keys[1], &saved[0]);
    assert_eq!(s3_curl(weed.s3_port, "DELETE", &keys[0]).0 / 100, 2);
    assert_eq!(get(&ids[1]).0, 500, "renamed object served");
    assert_ne!(get(&ids[0]).0, 200, "A's object is gone");
    assert!(orthanc.proc.output().contains("integrity check failed"));
    put(&keys[0], &saved[0]);
    put(&keys[1], &saved[1]);
    for (id, file) in ids.iter().zip(files) {
        assert_reads_back(orthanc.http_port, id, file);
    }
}

#[test]
fn plugin_stores_encrypted_objects_in_s3() {
    let dir = tempfile::tempdir().unwrap();
    let weed = Seaweed::start(dir.path());
    let key = keygen(dir.path(), "1.key");
    let orthanc = Orthanc::start(dir.path(), plugin_config((1, &key), &[], weed.location()));
    let big = dir.path().join("big.dcm");
    big_dicom(&big, 24);
    let files = [support::pydicom_file("CT_small.dcm"), big];
    let ids: Vec<String> = files.iter().map(|f| upload(orthanc.http_port, f)).collect();
    for (id, file) in ids.iter().zip(&files) {
        assert_reads_back(orthanc.http_port, id, file);
        let info = rest_json(
            orthanc.http_port,
            "GET",
            &format!("/instances/{id}/attachments/dicom/info"),
            None,
        );
        let uuid = info["Uuid"].as_str().unwrap();
        let (code, raw) = s3_curl(
            weed.s3_port,
            "GET",
            &format!("/{BUCKET}/orthanc/{}/{}/{uuid}", &uuid[..2], &uuid[2..4]),
        );
        assert_eq!(code, 200, "object {uuid} not in the bucket");
        assert!(
            raw.starts_with(b"\x89PGE") && !contains(&raw, b"DICM"),
            "{uuid}"
        );
    }
    swap_and_rename_fail(&weed, &orthanc, &ids, &files);
    let conf = dir.path().join("orthanc.json").display().to_string();
    let (status, out) = cli(&["verify", "--orthanc-config", &conf]);
    assert!(
        status.success() && out.contains("2 objects on object store") && out.contains("2 ok"),
        "{out}"
    );
    for id in &ids {
        delete_instance(orthanc.http_port, id);
    }
    let (status, out) = cli(&["verify", "--orthanc-config", &conf]);
    assert!(status.success() && out.contains("0 objects"), "{out}");
}
