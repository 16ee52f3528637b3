//! A plain-HTTP test backend (the "PACS" for proxy tests that need more than Orthanc can
//! show): echoes request heads, streams large bodies both ways without buffering, answers
//! slowly on request. Runs on its own thread and runtime; stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Deterministic content for /bytes/N: a 64 KiB block repeated.
pub fn pattern_block() -> Vec<u8> {
    (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// SHA-256 of the first `len` bytes of the /bytes pattern.
pub fn pattern_sha256(len: u64) -> String {
    let block = pattern_block();
    let mut h = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Backend {
    pub addr: SocketAddr,
    /// Requests seen, for "did it reach the upstream" assertions.
    pub requests: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start() -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counter = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, counter, rx));
        });
        Backend {
            addr,
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    counter: Arc<AtomicUsize>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = &mut stop => return,
        };
        let counter = counter.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                counter.fetch_add(1, Ordering::SeqCst);
                handle(req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = if path == "/echo" {
        let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
        for (k, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        full(text.into_bytes())
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let len: u64 = n.parse().unwrap_or(0);
        stream_bytes(len)
    } else if path == "/sink" {
        let (count, sha) = sink(req.into_body()).await;
        full(format!("{count} {sha}").into_bytes())
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        full(b"slow done".to_vec())
    } else if path == "/1k" {
        full(vec![b'x'; 1024])
    } else {
        let mut r = full(b"not found".to_vec());
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        r
    };
    Ok(resp)
}

fn full(body: Vec<u8>) -> Response<Body> {
    Response::new(Full::new(Bytes::from(body)).boxed())
}

fn stream_bytes(len: u64) -> Response<Body> {
    let block = Bytes::from(pattern_block());
    let chunks = stream::unfold(len, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(block.len() as u64) as usize;
            Some((
                Ok::<_, Infallible>(Frame::data(block.slice(..n))),
                left - n as u64,
            ))
        }
    });
    let mut resp = Response::new(StreamBody::new(chunks).boxed());
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

async fn sink(mut body: Incoming) -> (u64, String) {
    let mut h = Sha256::new();
    let mut count = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    count += d.len() as u64;
                    h.update(d);
                }
            }
            Err(_) => break,
        }
    }
    (count, hex(&h.finalize()))
}
