//! Debian's Orthanc 1.10.1 on free loopback ports, in a temp directory, for one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, wait_until, Proc};
use super::{bind_lo, http_get};

pub const ORTHANC: &str = "/usr/sbin/Orthanc";

pub struct Orthanc {
    pub http_port: u16,
    pub dicom_port: u16,
    pub dir: PathBuf,
    pub proc: Proc,
}

impl Orthanc {
    /// Start Orthanc with a loopback test configuration; `extra` is merged over it (JSON
    /// object, e.g. `{"DicomCheckCalledAet": true}` or `{"Plugins": [...]}`).
    pub fn start(dir: &Path, extra: serde_json::Value) -> Orthanc {
        Self::start_with(dir, extra, &[], &[])
    }

    /// As `start`, with extra command-line arguments (e.g. `--verbose`, which logs every
    /// REST request as `(http) METHOD /uri`: proof of what reached Orthanc).
    pub fn start_with_args(dir: &Path, extra: serde_json::Value, args: &[&str]) -> Orthanc {
        Self::start_with(dir, extra, args, &[])
    }

    /// [`Orthanc::start`] with extra environment variables for the Orthanc process.
    pub fn start_with_env(dir: &Path, extra: serde_json::Value, env: &[(&str, &str)]) -> Orthanc {
        Self::start_with(dir, extra, &[], env)
    }

    fn start_with(
        dir: &Path,
        extra: serde_json::Value,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Orthanc {
        let http_port = free_port();
        let dicom_port = free_port();
        let storage = dir.join("orthanc-storage");
        std::fs::create_dir_all(&storage).expect("orthanc storage dir");
        let mut config = serde_json::json!({
            "Name": "pacsgate-test",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpServerEnabled": true,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomServerEnabled": true,
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "DicomCheckCalledAet": true,
            "DicomAlwaysAllowEcho": true,
            "DicomAlwaysAllowStore": true,
            "DicomCheckModalityHost": false,
            "MaximumStorageCacheSize": 0,
            "Plugins": [],
        });
        if let (Some(base), Some(over)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in over {
                base.insert(k.clone(), v.clone());
            }
        }
        let config_path = dir.join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).expect("write orthanc.json");
        let mut cmd = Command::new(ORTHANC);
        cmd.args(args)
            .arg(&config_path)
            .current_dir(dir)
            .env("LD_PRELOAD", bind_lo())
            .envs(env.iter().copied());
        let mut proc = Proc::spawn("Orthanc", cmd, &dir.join("orthanc.log"));
        wait_until("Orthanc's REST API", Duration::from_secs(60), || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("Orthanc exited ({status}):\n{}", proc.output());
            }
            // 401: up, with AuthenticationEnabled.
            http_get(http_port, "/system").is_some_and(|(code, _)| matches!(code, 200 | 401))
        });
        Orthanc {
            http_port,
            dicom_port,
            dir: dir.to_path_buf(),
            proc,
        }
    }
}
