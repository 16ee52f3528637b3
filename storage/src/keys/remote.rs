//! What the key services reached over HTTP (AWS KMS, Vault Transit) share: one bounded
//! client (https:// unless loopback; 2 s to connect, 5 s per attempt), a one-thread runtime
//! to drive it from Orthanc's synchronous callbacks, at most 3 attempts with back-off on
//! network errors, throttling and 5xx only, and answers capped at 64 KiB.

use std::time::Duration;

use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpRequest, ReqwestConnector,
};
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;
/// Longest answer read from a key service; key material answers are a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// How one attempt ended when it did not succeed.
pub(super) enum Attempt {
    /// Network error, throttling or 5xx: worth another attempt.
    Retry(String),
    Final(Error),
}

/// The HTTP client and runtime for `base` (`service` names it in errors: "KMS", "Vault").
pub(super) fn connect(base: &str, service: &str, thread: &str) -> Result<(HttpClient, Runtime)> {
    if !base.starts_with("https://") && !super::location::loopback_http(base) {
        return Err(Error::Kms(format!(
            "{base}: {service} must be reached over https:// (http:// only on loopback)"
        )));
    }
    let options = ClientOptions::new()
        .with_allow_http(base.starts_with("http://"))
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(ATTEMPT_TIMEOUT);
    let client = ReqwestConnector::default()
        .connect(&options)
        .map_err(|e| Error::Kms(format!("HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(thread)
        .enable_all()
        .build()
        .map_err(|e| Error::Kms(format!("cannot start the runtime: {e}")))?;
    Ok((client, runtime))
}

/// Run `attempt` up to three times (100 ms, then 1.6 s apart) while it asks for a retry.
pub(super) fn with_retries<F>(
    runtime: &Runtime,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<Value>
where
    F: std::future::Future<Output = std::result::Result<Value, Attempt>>,
{
    let mut last = String::new();
    for n in 0..ATTEMPTS {
        if n > 0 {
            std::thread::sleep(Duration::from_millis(100 << (2 * n)));
        }
        match runtime.block_on(attempt()) {
            Ok(v) => return Ok(v),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(why)) => last = why,
        }
    }
    Err(Error::Kms(format!(
        "{what} failed after {ATTEMPTS} attempts: {last}"
    )))
}

/// Send one request and read its JSON answer (Null if the body is not JSON): the status
/// and the value. Network errors ask for a retry; an oversized answer is final.
pub(super) async fn exchange(
    client: &HttpClient,
    request: HttpRequest,
    what: &str,
) -> std::result::Result<(http::StatusCode, Value), Attempt> {
    let url = request.uri().to_string();
    let response = client
        .execute(request)
        .await
        .map_err(|e| Attempt::Retry(format!("{url}: {e}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| Attempt::Retry(format!("{url}: {e}")))?;
    if bytes.len() > MAX_ANSWER {
        return Err(Attempt::Final(Error::Kms(format!(
            "{what}: answer of {} bytes",
            bytes.len()
        ))));
    }
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}
