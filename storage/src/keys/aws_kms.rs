//! AWS KMS as a master key: data keys are wrapped by `Encrypt` and unwrapped by `Decrypt`
//! (the KMS JSON 1.1 API, `X-Amz-Target: TrentService.*`), the key never leaves KMS.
//!
//! A small signed-request client instead of aws-sdk-kms: the SDK brings its own HTTP and
//! runtime stack (aws-smithy-*, aws-config, hyper 0.14 in some versions) that would add
//! minutes to a cold build on the 2-core CI machine for two calls; this crate already has
//! object_store's maintained SigV4 signer ([`AwsAuthorizer`]) and HTTP client. Requests
//! follow the KMS API reference (Encrypt, Decrypt, CreateKey); the encryption context
//! carries the wrap's AAD, so KMS refuses a blob presented with another context.
//!
//! Calls are bounded: 2 s to connect, 5 s per attempt, at most 3 attempts and only for
//! network errors and 5xx/throttling; access denied or an invalid ciphertext fail at once.
//! There is never a fallback: a failed wrap fails the write.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpRequestBody};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

use super::location::KmsSettings;
use super::remote::{self, Attempt};
use super::{DataKey, MasterKeyProvider};
use crate::{Error, Result};

pub struct AwsKms {
    key_id: String,
    endpoint: String,
    region: String,
    credential: AwsCredential,
    client: HttpClient,
    runtime: Runtime,
}

impl AwsKms {
    pub fn new(key_id: &str, settings: Option<&KmsSettings>) -> Result<AwsKms> {
        let settings = settings.ok_or(Error::Unsupported(
            "an aws-kms: key needs StorageEncryption.Kms {\"Region\": ...} (or --kms-region)",
        ))?;
        let endpoint = match &settings.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://kms.{}.amazonaws.com", settings.region),
        };
        let (client, runtime) = remote::connect(&endpoint, "KMS", "pacsgate-kms")?;
        Ok(AwsKms {
            key_id: key_id.to_string(),
            endpoint,
            region: settings.region.clone(),
            credential: credentials()?,
            client,
            runtime,
        })
    }

    /// `CreateKey` (symmetric, encrypt/decrypt): the key's ARN for `aws-kms:<ARN>`.
    pub fn create_key(settings: &KmsSettings, description: &str) -> Result<String> {
        let kms = AwsKms::new("", Some(settings))?;
        let answer = kms.call(
            "CreateKey",
            json!({"Description": description, "KeyUsage": "ENCRYPT_DECRYPT",
                   "KeySpec": "SYMMETRIC_DEFAULT"}),
        )?;
        answer["KeyMetadata"]["Arn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Kms("CreateKey answer without KeyMetadata.Arn".into()))
    }

    fn context(aad: &[u8]) -> Value {
        let hex: String = aad.iter().map(|b| format!("{b:02x}")).collect();
        json!({ "pacsgate-aad": hex })
    }

    /// One KMS call, retried on network errors, throttling and 5xx only.
    fn call(&self, target: &str, body: Value) -> Result<Value> {
        let body = Zeroizing::new(body.to_string().into_bytes());
        remote::with_retries(&self.runtime, target, || self.attempt(target, &body))
    }

    async fn attempt(&self, target: &str, body: &[u8]) -> std::result::Result<Value, Attempt> {
        let url = format!("{}/", self.endpoint);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{target}"))
            .body(HttpRequestBody::from(body.to_vec()))
            .map_err(|e| Attempt::Final(Error::Kms(format!("{url}: {e}"))))?;
        AwsAuthorizer::new(&self.credential, "kms", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| Attempt::Final(Error::Kms(format!("signing: {e}"))))?;
        let (status, value) = remote::exchange(&self.client, request, target).await?;
        if status.is_success() {
            return Ok(value);
        }
        let kind = value["__type"]
            .as_str()
            .unwrap_or("")
            .rsplit('#')
            .next()
            .unwrap_or("");
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .unwrap_or("");
        let why = format!("{target}: HTTP {} {kind} {message}", status.as_u16());
        if status.is_server_error() || kind.contains("Throttl") || status.as_u16() == 429 {
            return Err(Attempt::Retry(why));
        }
        if kind == "InvalidCiphertextException" {
            return Err(Attempt::Final(Error::Integrity));
        }
        Err(Attempt::Final(Error::Kms(why)))
    }
}

impl MasterKeyProvider for AwsKms {
    fn kind(&self) -> &'static str {
        "aws-kms"
    }

    fn remote(&self) -> bool {
        true
    }

    fn wrap(&self, aad: &[u8], dek: &DataKey) -> Result<Vec<u8>> {
        let plain = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(dek.expose()));
        let answer = self.call(
            "Encrypt",
            json!({"KeyId": self.key_id, "Plaintext": plain.as_str(),
                   "EncryptionContext": AwsKms::context(aad)}),
        )?;
        let blob = answer["CiphertextBlob"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| Error::Kms("Encrypt answer without CiphertextBlob".into()))?;
        if blob.is_empty() || blob.len() > super::MAX_BLOB_LEN {
            return Err(Error::Kms(format!(
                "CiphertextBlob of {} bytes",
                blob.len()
            )));
        }
        Ok(blob)
    }

    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<DataKey> {
        let mut answer = self.call(
            "Decrypt",
            json!({"KeyId": self.key_id,
                   "CiphertextBlob": base64::engine::general_purpose::STANDARD.encode(blob),
                   "EncryptionContext": AwsKms::context(aad)}),
        )?;
        // Best effort: the base64 text is wiped; the HTTP client's own buffers are not ours.
        let text = match answer["Plaintext"].take() {
            Value::String(s) => Zeroizing::new(s),
            _ => return Err(Error::Kms("Decrypt answer without Plaintext".into())),
        };
        let plain = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| Error::Kms("Decrypt answer: Plaintext is not base64".into()))?,
        );
        DataKey::from_slice(&plain)
    }
}

/// Credentials as the AWS tools find them: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN`, else the profile (`AWS_PROFILE`, default `default`) of the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`).
fn credentials() -> Result<AwsCredential> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(key_id), Some(secret_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(AwsCredential {
            key_id,
            secret_key,
            token: env("AWS_SESSION_TOKEN"),
        });
    }
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
        .ok_or(Error::Unsupported("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_SHARED_CREDENTIALS_FILE"))?;
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
        Error::Kms(format!(
            "no AWS credentials in the environment, and {}: {e}",
            path.display()
        ))
    })?);
    let section = ini_section(&text, &profile);
    match (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) {
        (Some(k), Some(s)) => Ok(AwsCredential {
            key_id: k.clone(),
            secret_key: s.clone(),
            token: section.get("aws_session_token").cloned(),
        }),
        _ => Err(Error::Kms(format!(
            "{}: profile [{profile}] has no aws_access_key_id/aws_secret_access_key",
            path.display()
        ))),
    }
}

/// `key = value` lines of `[name]` in an INI file.
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut inside = false;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
        } else if let (true, Some((k, v))) = (inside, line.split_once('=')) {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_credentials_profile() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n[other]\naws_access_key_id=C\n";
        let d = ini_section(text, "default");
        assert_eq!(d.get("aws_access_key_id").map(String::as_str), Some("A"));
        assert_eq!(
            d.get("aws_secret_access_key").map(String::as_str),
            Some("B")
        );
        assert!(!ini_section(text, "other").contains_key("aws_secret_access_key"));
    }
}
