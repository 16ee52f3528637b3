//! The encrypting storage plugin under test: the built .so, master key files, Orthanc
//! configuration for it, at-rest inspection and the `pacsgate storage` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::run;

/// `libpacsgate_orthanc_storage.so`, built by cargo as a dev-dependency of this package
/// (cargo emits the cdylib next to the test binaries).
pub fn plugin_so() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("libpacsgate_orthanc_storage.so"),
        deps.parent()
            .expect("profile dir")
            .join("libpacsgate_orthanc_storage.so"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("plugin not built; looked at {candidates:?}"))
}

/// A new master key file (0600) from `pacsgate storage keygen`.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let (status, out) = cli(&["keygen", "--out", &path.display().to_string()]);
    assert!(status.success(), "{out}");
    path
}

/// Orthanc configuration that loads the plugin: current key `(id, path)`, previous keys,
/// and a location (`None`: a filesystem root under `dir`).
pub fn plugin_config(
    current: (u32, &Path),
    previous: &[(u32, &Path)],
    location: serde_json::Value,
) -> serde_json::Value {
    let text = |p: &Path| p.display().to_string();
    let previous: Vec<(u32, String)> = previous.iter().map(|(id, p)| (*id, text(p))).collect();
    let previous: Vec<(u32, &str)> = previous.iter().map(|(id, p)| (*id, p.as_str())).collect();
    plugin_config_keys(
        (current.0, &text(current.1)),
        &previous,
        location,
        serde_json::json!({}),
    )
}

/// [`plugin_config`] with key locations as configured (file path, `pkcs11:...`,
/// `aws-kms:...`) and `extra` keys merged into `StorageEncryption` (`Kms`, cache settings).
pub fn plugin_config_keys(
    current: (u32, &str),
    previous: &[(u32, &str)],
    location: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut config = serde_json::json!({
        "Plugins": [plugin_so()],
        "MaximumStorageCacheSize": 0,
        "PacsgateStorage": {
            "StorageEncryption": {
                "Enable": true,
                "MasterKey": [current.0, current.1],
                "PreviousMasterKeys": previous.iter().map(|(id, p)| serde_json::json!([id, p])).collect::<Vec<_>>(),
                "MaxConcurrentInputSize": 256
            },
            "Location": location
        }
    });
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            config["PacsgateStorage"]["StorageEncryption"][k] = v.clone();
        }
    }
    config
}

pub fn fs_location(root: &Path) -> serde_json::Value {
    serde_json::json!({"Type": "filesystem", "Root": root})
}

/// Every regular file under `root` (recursively), excluding nothing.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Object files (xx/yy/uuid), not temp files.
pub fn objects_under(root: &Path) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 36))
        .collect()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Run `pacsgate storage ARGS...` (the gateway executes the `pacsgate-storage` tool beside it).
pub fn cli(args: &[&str]) -> (std::process::ExitStatus, String) {
    cli_env(args, &[])
}

/// [`cli`] with extra environment variables (AWS credentials, SOFTHSM2_CONF).
pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    tool();
    let mut cmd = Command::new(super::gateway::binary());
    cmd.arg("storage").args(args).envs(env.iter().copied());
    run(cmd, Duration::from_secs(300))
}

/// The `pacsgate-storage` tool beside the gateway binary, which `pacsgate storage` runs.
/// Another package's binary: cargo builds it for these tests only when its package is
/// built too (`cargo test --workspace`, as tests/run.sh does). Missing or older than its
/// sources, the tests would exercise nothing or stale code: fail and say how to build it.
pub fn tool() -> PathBuf {
    let gateway = Path::new(super::gateway::binary());
    let tool = gateway.with_file_name("pacsgate-storage");
    let built = std::fs::metadata(&tool).and_then(|m| m.modified());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest_source = ["storage-cli", "storage", "orthanc-json"]
        .iter()
        .flat_map(|dir| {
            let mut files = files_under(&root.join(dir).join("src"));
            files.push(root.join(dir).join("Cargo.toml"));
            files
        })
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .max();
    match (built, newest_source) {
        (Ok(built), Some(source)) if built >= source => tool,
        _ => panic!(
            "{} is missing or older than its sources: run `cargo build -p pacsgate-storage-cli` \
             (or `cargo test --workspace`) with the same CARGO_TARGET_DIR first",
            tool.display()
        ),
    }
}

/// Orthanc REST on loopback with curl: (HTTP status, body bytes).
pub fn rest(port: u16, method: &str, path: &str, body: Option<&Path>) -> (u16, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "300",
        "-X",
        method,
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(file) = body {
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd.output().expect("curl");
    status_and_body(out.stdout)
}

/// curl's output with `-w "\n%{http_code}"` appended: (HTTP code, body); code 0 when
/// curl printed none.
pub fn status_and_body(raw: Vec<u8>) -> (u16, Vec<u8>) {
    let split = raw.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let code = std::str::from_utf8(&raw[split..])
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(0);
    (code, raw[..split].to_vec())
}

pub fn rest_json(port: u16, method: &str, path: &str, body: Option<&Path>) -> serde_json::Value {
    let (status, bytes) = rest(port, method, path, body);
    assert_eq!(
        status,
        200,
        "{method} {path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).expect("JSON answer")
}

/// Upload a DICOM file over REST; returns the instance id.
pub fn upload(port: u16, file: &Path) -> String {
    let v = rest_json(port, "POST", "/instances", Some(file));
    v["ID"].as_str().expect("instance ID").to_string()
}

/// A DICOM file of about `mib` MiB with a unique SOP Instance UID.
pub fn big_dicom(path: &Path, mib: u32) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/bigdicom.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(path)
        .arg(mib.to_string())
        .status()
        .expect("python3 with pydicom; run tests/run.sh");
    assert!(status.success(), "bigdicom.py failed");
}

/// Orthanc serves instance `id` byte-identical to `file` (readWhole) and its tags
/// (readRange through the plugin).
pub fn assert_reads_back(port: u16, id: &str, file: &Path) {
    let (code, back) = rest(port, "GET", &format!("/instances/{id}/file"), None);
    assert_eq!(code, 200, "GET /instances/{id}/file");
    assert!(
        back == std::fs::read(file).unwrap(),
        "{id} differs from {file:?}"
    );
    let tags = rest_json(
        port,
        "GET",
        &format!("/instances/{id}/simplified-tags"),
        None,
    );
    assert!(tags["PatientName"].is_string(), "{tags}");
}

/// `DELETE /instances/{id}` succeeds.
pub fn delete_instance(port: u16, id: &str) {
    let (code, _) = rest(port, "DELETE", &format!("/instances/{id}"), None);
    assert_eq!(code, 200, "DELETE /instances/{id}");
}

/// Start Orthanc with `extra` (and `env`) and expect it to exit non-zero; returns its log.
pub fn orthanc_refuses_env(dir: &Path, extra: serde_json::Value, env: &[(&str, &str)]) -> String {
    use super::process::{free_port, Proc};
    let mut config = serde_json::json!({
        "Name": "refuse", "HttpPort": free_port(), "DicomPort": free_port(),
        "StorageDirectory": dir.join("plain"), "IndexDirectory": dir.join("plain"),
        "RemoteAccessAllowed": false,
    });
    for (k, v) in extra.as_object().expect("object") {
        config[k] = v.clone();
    }
    let path = dir.join("refuse.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut cmd = Command::new(super::orthanc::ORTHANC);
    cmd.arg(&path)
        .current_dir(dir)
        .env("LD_PRELOAD", super::bind_lo())
        .envs(env.iter().copied());
    let mut proc = Proc::spawn("Orthanc", cmd, &dir.join("refuse.log"));
    let status = proc.wait_exit(Duration::from_secs(120));
    assert!(!status.success(), "Orthanc started: {}", proc.output());
    proc.output()
}

/// Instance ids Orthanc knows.
pub fn instance_ids(port: u16) -> Vec<String> {
    serde_json::from_value(rest_json(port, "GET", "/instances", None)).expect("id list")
}

/// The object file of an instance's DICOM attachment in a filesystem location.
pub fn object_path(port: u16, root: &Path, id: &str) -> PathBuf {
    let info = rest_json(
        port,
        "GET",
        &format!("/instances/{id}/attachments/dicom/info"),
        None,
    );
    let uuid = info["Uuid"].as_str().expect("Uuid");
    root.join(&uuid[..2]).join(&uuid[2..4]).join(uuid)
}
