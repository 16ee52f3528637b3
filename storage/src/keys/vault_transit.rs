//! HashiCorp Vault / OpenBao Transit as a master key: data keys are wrapped by
//! `POST /v1/{mount}/encrypt/{name}` and unwrapped by `.../decrypt/{name}` with the wrap's
//! AAD as `associated_data` (aes256-gcm96 keys); the key never leaves Vault. Location
//! `vault-transit:<key name>`, server from `"Vault": {"Address": ..., "Mount": "transit"}`,
//! token from `VAULT_TOKEN` (or `BAO_TOKEN`) in the environment.
//!
//! Bounded like the KMS client (same HTTP client): 2 s to connect, 5 s per attempt, at
//! most 3 attempts, retried only on network errors, 429 and 5xx.

use base64::Engine;
use object_store::client::{HttpClient, HttpRequestBody};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

use super::location::VaultSettings;
use super::remote::{self, Attempt};
use super::{DataKey, MasterKeyProvider, MAX_BLOB_LEN};
use crate::{Error, Result};

pub struct VaultTransit {
    key: String,
    base: String,
    token: Zeroizing<String>,
    client: HttpClient,
    runtime: Runtime,
}

impl VaultTransit {
    pub fn new(key: &str, settings: Option<&VaultSettings>) -> Result<VaultTransit> {
        let settings = settings.ok_or(Error::Unsupported(
            "a vault-transit: key needs StorageEncryption.Vault {\"Address\": ...} (or --vault-address)",
        ))?;
        let token = ["VAULT_TOKEN", "BAO_TOKEN"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .ok_or(Error::Unsupported(
                "no Vault token: set VAULT_TOKEN in Orthanc's environment",
            ))?;
        let address = settings.address.trim_end_matches('/');
        let (client, runtime) = remote::connect(address, "Vault", "pacsgate-vault")?;
        Ok(VaultTransit {
            key: key.to_string(),
            base: format!("{address}/v1/{}", settings.mount),
            token: Zeroizing::new(token),
            client,
            runtime,
        })
    }

    /// Create the transit key (aes256-gcm96, not exportable).
    pub fn create_key(name: &str, settings: &VaultSettings) -> Result<()> {
        let vault = VaultTransit::new(name, Some(settings))?;
        vault.call(
            &format!("keys/{name}"),
            json!({"type": "aes256-gcm96", "exportable": false}),
        )?;
        Ok(())
    }

    fn call(&self, path: &str, body: Value) -> Result<Value> {
        let body = Zeroizing::new(body.to_string().into_bytes());
        let what = format!("Vault {path}");
        remote::with_retries(&self.runtime, &what, || self.attempt(path, &body))
    }

    async fn attempt(&self, path: &str, body: &[u8]) -> std::result::Result<Value, Attempt> {
        let url = format!("{}/{path}", self.base);
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header("content-type", "application/json")
            .header("x-vault-token", self.token.as_str())
            .body(HttpRequestBody::from(body.to_vec()))
            .map_err(|e| Attempt::Final(Error::Kms(format!("{url}: {e}"))))?;
        let (status, value) =
            remote::exchange(&self.client, request, &format!("Vault {path}")).await?;
        if status.is_success() {
            return Ok(value);
        }
        let errors = value["errors"].to_string();
        let why = format!("Vault {path}: HTTP {} {errors}", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Attempt::Retry(why));
        }
        // Transit answers 400 "cipher: message authentication failed" for a bad tag.
        if errors.contains("authentication failed") {
            return Err(Attempt::Final(Error::Integrity));
        }
        Err(Attempt::Final(Error::Kms(why)))
    }
}

impl MasterKeyProvider for VaultTransit {
    fn kind(&self) -> &'static str {
        "vault-transit"
    }

    fn remote(&self) -> bool {
        true
    }

    fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = Zeroizing::new(b64.encode(dek.expose()));
        let answer = self.call(
            &format!("encrypt/{}", self.key),
            json!({"plaintext": plain.as_str(), "associated_data": b64.encode(aad)}),
        )?;
        let blob = answer["data"]["ciphertext"]
            .as_str()
            .filter(|c| c.starts_with("vault:v") && c.len() <= MAX_BLOB_LEN)
            .ok_or_else(|| Error::Kms("Vault encrypt answer without data.ciphertext".into()))?;
        Ok(blob.as_bytes().to_vec())
    }

    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let ciphertext = std::str::from_utf8(blob)
            .ok()
            .filter(|c| c.starts_with("vault:v"))
            .ok_or(Error::Integrity)?;
        let mut answer = self.call(
            &format!("decrypt/{}", self.key),
            json!({"ciphertext": ciphertext, "associated_data": b64.encode(aad)}),
        )?;
        let text = match answer["data"]["plaintext"].take() {
            Value::String(s) => Zeroizing::new(s),
            _ => {
                return Err(Error::Kms(
                    "Vault decrypt answer without data.plaintext".into(),
                ))
            }
        };
        let plain = Zeroizing::new(
            b64.decode(text.as_bytes())
                .map_err(|_| Error::Kms("Vault decrypt: plaintext is not base64".into()))?,
        );
        DataKey::from_slice(&plain)
    }
}
