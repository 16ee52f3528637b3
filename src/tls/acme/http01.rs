//! The HTTP-01 responder (RFC 8555 §8.3): plain HTTP on `tls.acme.http01_listen`, answering
//! `GET /.well-known/acme-challenge/<token>` with the key authorization of a pending
//! challenge and 404 to everything else. Bound with the other listeners (before the
//! privilege drop: port 80), bounded like them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::server::{self, Shutdown};

const PREFIX: &str = "/.well-known/acme-challenge/";
/// A validation server opens a few connections per challenge.
const MAX_CONNECTIONS: usize = 64;

/// Pending challenges: token -> key authorization.
#[derive(Clone, Default)]
pub struct Challenges(Arc<Mutex<HashMap<String, String>>>);

impl Challenges {
    pub fn insert(&self, token: String, key_authorization: String) {
        self.lock().insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn answer(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        crate::sync::lock(&self.0)
    }
}

pub async fn serve(
    listener: TcpListener,
    challenges: Challenges,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    server::accept_loop(
        "acme-http01",
        listener,
        (MAX_CONNECTIONS, None, None),
        shutdown,
        tracker,
        move |tcp, _peer, _admission| connection(tcp, challenges.clone()),
    )
    .await;
}

async fn connection(tcp: TcpStream, challenges: Challenges) {
    let service = service_fn(move |req: Request<Incoming>| {
        let answer = req
            .uri()
            .path()
            .strip_prefix(PREFIX)
            .filter(|_| req.method() == http::Method::GET)
            .and_then(|token| challenges.answer(token));
        async move { Ok::<_, Infallible>(respond(answer)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(false)
        .serve_connection(TokioIo::new(tcp), service);
    if let Err(e) = conn.await {
        tracing::debug!(listener = "acme-http01", error = %e, "connection ended with an error");
    }
}

fn respond(answer: Option<String>) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}
