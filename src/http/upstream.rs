//! Keep-alive HTTP/1.1 connections to the PACS. Each client connection keeps the upstream
//! connection its last request used (its "sticky" slot) and returns it to a shared idle
//! pool when it ends, so a keep-alive client costs no pool traffic per request and a
//! client that reconnects per request still reuses warm upstream connections.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::proxy::{error_chain, RequestBody};
use crate::sync::lock;

/// Idle upstream connections older than this are closed rather than reused: the PACS
/// may have dropped them already (Orthanc's HTTP server closes idle keep-alives).
const IDLE_EXPIRY: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 256;

pub type Sender = SendRequest<RequestBody>;

/// The upstream connection a client connection is using, if any.
#[derive(Debug, Default)]
pub struct Sticky(Mutex<Option<Sender>>);

pub struct Pool {
    addr: String,
    connect_timeout: Duration,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Pool {
    pub fn new(addr: String, connect_timeout: Duration) -> Self {
        Self {
            addr,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send `req` on a ready connection (the client's own, an idle one, or a new one).
    /// A pooled connection the PACS closed at the same moment is retried once on another,
    /// as long as the request has not been written.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        sticky: &Sticky,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut retried = false;
        loop {
            let (mut sender, reused) = match self.take(sticky) {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.put_back(sticky, sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused && !retried => {
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(ProxyError::ForwardRequest(error_chain(e.error()))),
                },
            }
        }
    }

    /// The client connection ended: its upstream connection goes back to the pool.
    pub fn release(&self, sticky: &Sticky) {
        if let Some(sender) = lock(&sticky.0).take() {
            self.park(sender);
        }
    }

    fn take(&self, sticky: &Sticky) -> Option<Sender> {
        {
            let mut own = lock(&sticky.0);
            if own.as_ref().is_some_and(SendRequest::is_ready) {
                return own.take();
            }
        }
        let mut idle = lock(&self.idle);
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_EXPIRY);
        let ready = idle.iter().rposition(|(s, _)| s.is_ready())?;
        Some(idle.swap_remove(ready).0)
    }

    fn put_back(&self, sticky: &Sticky, sender: Sender) {
        let mut own = lock(&sticky.0);
        match own.as_ref() {
            Some(current) if !current.is_closed() => {
                drop(own);
                self.park(sender);
            }
            _ => *own = Some(sender),
        }
    }

    fn park(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Sender, ProxyError> {
        let fail = |what: &str| ProxyError::ConnectUpstream(format!("{}: {what}", self.addr));
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| fail("connect timed out"))?
            .map_err(|e| fail(&e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| fail(&e.to_string()))?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| fail(&error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %error_chain(&e), "upstream connection ended");
            }
        });
        Ok(sender)
    }
}
