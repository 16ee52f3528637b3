//! Byte counting on streamed bodies (never buffered) and the one `http.request` audit
//! record per request, written when the response body is finished or dropped, so it
//! carries the real status, bytes both ways and the full duration.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Serialize;

use super::policy::identity::AuthMethod;
use super::upstream::UpstreamError;
use crate::audit::Audit;
use crate::metrics::{HTTPS, METRICS};
use crate::telemetry::error_chain;

pin_project! {
    /// A body that adds the length of every data frame to a shared counter.
    pub struct Metered<B> {
        #[pin]
        inner: B,
        counter: Arc<AtomicU64>,
        // Written when the body is dropped (response bodies only).
        entry: Option<AuditEntry>,
    }
}

impl<B> Metered<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            counter,
            entry: None,
        }
    }

    pub fn with_entry(inner: B, entry: AuditEntry) -> Self {
        Self {
            inner,
            counter: entry.bytes_out.clone(),
            entry: Some(entry),
        }
    }
}

/// A body error that may be the PACS's (reported to the audit entry).
pub trait BodyError {
    fn upstream(&self) -> Option<&UpstreamError>;
}

impl BodyError for hyper::Error {
    fn upstream(&self) -> Option<&UpstreamError> {
        None
    }
}

/// The error of `ProxyBody` (`Either` boxes both sides' errors).
impl BodyError for Box<dyn std::error::Error + Send + Sync> {
    fn upstream(&self) -> Option<&UpstreamError> {
        self.downcast_ref()
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes>,
    B::Error: BodyError,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let (Some(entry), Some(e)) = (this.entry.as_mut(), e.upstream()) {
                    entry.upstream_failed(e);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The facts of one request, completed as it is handled; recorded on drop.
pub struct AuditEntry {
    audit: Arc<Audit>,
    started: Instant,
    pub bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    pub record: RequestRecord,
}

/// The `http.request` audit record. Never passwords, tokens or query strings: the path is
/// the canonical path without its query.
#[derive(Debug, Serialize)]
pub struct RequestRecord {
    pub user: Option<String>,
    pub auth: AuthMethod,
    pub cert_fingerprint: Option<String>,
    pub client: String,
    /// The load balancer's address when `client` came from its PROXY header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub method: String,
    pub path: Option<String>,
    pub rule: Option<String>,
    pub denied: Option<String>,
    /// Why the PACS gave no complete answer (`UpstreamError::kind`), also when it broke
    /// off mid-body after the status was sent.
    pub upstream_error: Option<&'static str>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
}

impl AuditEntry {
    pub fn new(audit: Arc<Audit>, started: Instant, record: RequestRecord) -> Self {
        Self {
            audit,
            started,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: Arc::new(AtomicU64::new(0)),
            record,
        }
    }

    /// The PACS failed this request: counted, logged and recorded under one label.
    pub fn upstream_failed(&mut self, e: &UpstreamError) {
        if e.is_client_fault() {
            tracing::debug!(error = %error_chain(e), "client request body failed");
        } else {
            METRICS.upstream_errors.inc((HTTPS, e.kind()));
            tracing::warn!(kind = e.kind(), error = %error_chain(e), "upstream failed");
        }
        self.record.upstream_error = Some(e.kind());
    }
}

impl Drop for AuditEntry {
    fn drop(&mut self) {
        self.record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        self.record.bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        self.record.duration_ms = elapsed.as_secs_f64() * 1000.0;
        METRICS.http_request(
            self.record.status,
            elapsed,
            self.record.bytes_in,
            self.record.bytes_out,
        );
        self.audit.record("http.request", &self.record);
    }
}
