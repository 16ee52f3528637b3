//! Why a request got no (complete) answer from the PACS. Each variant names the phase that
//! failed and keeps its cause as `source`; `http::error` maps it to the client's status.

use std::time::Duration;

/// A failure talking to the PACS, by phase: connect, wait for the response head, stream
/// the response body.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection to the PACS at {addr} refused")]
    ConnectRefused {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the PACS at {addr}")]
    ConnectFailed {
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no connection to the PACS at {addr} within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("no response head from the PACS within {0:?} of its turn")]
    ResponseTimeout(Duration),
    #[error("the PACS closed or reset the connection before its response head")]
    Closed(#[source] hyper::Error),
    #[error("the PACS sent a malformed response")]
    Protocol(#[source] hyper::Error),
    #[error("the client's request body failed while it was forwarded")]
    ClientBody(#[source] hyper::Error),
    #[error("the PACS sent no body bytes for {0:?}")]
    BodyStalled(Duration),
    #[error("the PACS's response body broke off")]
    BodyFailed(#[source] hyper::Error),
}

impl UpstreamError {
    /// Classify an error of `SendRequest::try_send_request` (the request head was, or may
    /// have been, written).
    pub(super) fn from_send(e: hyper::Error) -> Self {
        if e.is_user() {
            // hyper's `User::Body`: polling the client's body failed (client reset).
            UpstreamError::ClientBody(e)
        } else if e.is_parse() {
            UpstreamError::Protocol(e)
        } else {
            UpstreamError::Closed(e)
        }
    }

    /// One closed set of labels: the `kind` of `pacsgate_upstream_errors_total` and the
    /// `upstream_error` of the `http.request` audit record.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::ConnectRefused { .. } => "connect_refused",
            UpstreamError::ConnectFailed { .. } => "connect_failed",
            UpstreamError::ConnectTimeout { .. } => "connect_timeout",
            UpstreamError::ResponseTimeout(_) => "response_timeout",
            UpstreamError::Closed(_) => "closed",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::ClientBody(_) => "client_body",
            UpstreamError::BodyStalled(_) => "body_stalled",
            UpstreamError::BodyFailed(_) => "body_failed",
        }
    }

    /// The PACS is not at fault (the client broke its own request): not counted as an
    /// upstream error, logged at debug like other client hang-ups.
    pub fn is_client_fault(&self) -> bool {
        matches!(self, UpstreamError::ClientBody(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kept() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = UpstreamError::ConnectRefused {
            addr: "127.0.0.1:8042".into(),
            source: io,
        };
        let chain = crate::telemetry::error_chain(&e);
        assert!(chain.starts_with("connection to the PACS at 127.0.0.1:8042 refused: "));
        assert!(std::error::Error::source(&e).is_some());
    }
}
