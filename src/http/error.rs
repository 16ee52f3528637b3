//! The one place where a refusal or failure becomes an HTTP status (STYLE habit 5).

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::body::ProxyBody;
use super::canonical::PathRefusal;
use super::upstream::UpstreamError;

// === impl UpstreamError ===

/// The PACS failed (`http::upstream` names the phase): 502 when it is unreachable or broke
/// the exchange, 504 when it missed a clock (connect, response head), 400 when the client
/// broke its own request body. Body failures happen after the head was sent: the
/// connection is cut instead, so their statuses here are never sent.
impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout { .. }
            | UpstreamError::ResponseTimeout(_)
            | UpstreamError::BodyStalled(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::ClientBody(_) => StatusCode::BAD_REQUEST,
            UpstreamError::ConnectRefused { .. }
            | UpstreamError::ConnectFailed { .. }
            | UpstreamError::Closed(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::BodyFailed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short body: enough for an operator, nothing about internals.
    fn body(&self) -> &'static str {
        match self {
            UpstreamError::ConnectRefused { .. } | UpstreamError::ConnectFailed { .. } => {
                "502 Bad Gateway: the PACS is not reachable\n"
            }
            UpstreamError::ConnectTimeout { .. } => {
                "504 Gateway Timeout: the PACS is not reachable\n"
            }
            UpstreamError::ResponseTimeout(_) | UpstreamError::BodyStalled(_) => {
                "504 Gateway Timeout: the PACS did not answer in time\n"
            }
            UpstreamError::ClientBody(_) => "400 Bad Request: the request body broke off\n",
            UpstreamError::Closed(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::BodyFailed(_) => "502 Bad Gateway: the PACS did not answer\n",
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        plain(self.status(), self.body())
    }
}

/// Why the access policy refused a request (never forwarded to the PACS).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("bad request target: {0}")]
    BadTarget(#[from] PathRefusal),
    #[error("method override in the query string (_method)")]
    MethodOverrideQuery,
    #[error("no credentials")]
    Unauthenticated,
    #[error("wrong credentials")]
    BadCredentials,
    #[error("authentication locked out")]
    LockedOut(Duration),
    #[error("rate limit {limit}")]
    Throttled {
        limit: &'static str,
        retry_after: Duration,
    },
    #[error("built-in deny set: {0}")]
    Dangerous(&'static str),
    #[error("cross-site request")]
    CrossSite,
    #[error("denied by rule {0:?}")]
    DeniedByRule(String),
    #[error("no rule allows it")]
    NoRule,
}

impl Refusal {
    /// The `reason` label of `pacsgate_http_refusals_total` (a closed set).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadTarget(_) => "bad_target",
            Refusal::MethodOverrideQuery => "method_override",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::LockedOut(_) => "locked_out",
            Refusal::Throttled { .. } => "rate_limited",
            Refusal::Dangerous(_) => "dangerous_endpoint",
            Refusal::CrossSite => "cross_site",
            Refusal::DeniedByRule(_) => "denied_by_rule",
            Refusal::NoRule => "no_rule",
        }
    }

    /// Count this refusal in the metrics (reason; rate limit or lockout families too).
    pub fn count(&self) {
        use crate::metrics::{HTTPS, METRICS};
        METRICS.http_refusals.inc(self.code());
        match self {
            Refusal::Throttled { limit, .. } => METRICS.rate_limited.inc((HTTPS, limit)),
            Refusal::LockedOut(_) => METRICS.lockouts.inc(HTTPS),
            _ => {}
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadTarget(_) | Refusal::MethodOverrideQuery => StatusCode::BAD_REQUEST,
            Refusal::Unauthenticated | Refusal::BadCredentials => StatusCode::UNAUTHORIZED,
            Refusal::LockedOut(_) | Refusal::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Dangerous(_)
            | Refusal::CrossSite
            | Refusal::DeniedByRule(_)
            | Refusal::NoRule => StatusCode::FORBIDDEN,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Refusal::BadTarget(_) | Refusal::MethodOverrideQuery => {
                "400 Bad Request: ambiguous request target\n"
            }
            Refusal::Unauthenticated | Refusal::BadCredentials => {
                "401 Unauthorized: valid credentials required\n"
            }
            Refusal::LockedOut(_) | Refusal::Throttled { .. } => {
                "429 Too Many Requests: retry later\n"
            }
            Refusal::Dangerous(_) => "403 Forbidden: this endpoint is disabled at the gateway\n",
            Refusal::CrossSite => "403 Forbidden: cross-site request\n",
            Refusal::DeniedByRule(_) | Refusal::NoRule => "403 Forbidden\n",
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = plain(self.status(), self.body());
        let h = resp.headers_mut();
        match self {
            Refusal::Unauthenticated | Refusal::BadCredentials => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"pacsgate\", charset=\"UTF-8\""),
                );
            }
            Refusal::LockedOut(wait)
            | Refusal::Throttled {
                retry_after: wait, ..
            } => {
                // RFC 9110 §10.2.3: whole seconds, rounded up so an early retry is rare.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        resp
    }
}

/// A short text/plain response generated by the gateway itself.
pub fn plain(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
