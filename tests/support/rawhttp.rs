//! HTTP clients that send request targets byte for byte (no client-side normalisation):
//! HTTP/1.1 over plain TCP (to Orthanc) and over TLS (to the gateway), and HTTP/2 over
//! TLS for targets that are valid `:path` values. One request per connection
//! (`Connection: close`), read to EOF, so no response framing has to be trusted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Status and body of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn request_bytes(method: &str, target: &[u8], host: &str, extra: &str) -> Vec<u8> {
    let mut req = Vec::with_capacity(target.len() + 128);
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    req
}

/// Parse what came back; `None` if nothing that looks like an HTTP response did.
fn parse(raw: &[u8]) -> Option<Reply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let mut body = raw[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Some(Reply { status, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        let Some(chunk) = data.get(start..start + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        data = data.get(start + size + 2..).unwrap_or(&[]);
    }
    out
}

/// Send over plain TCP to 127.0.0.1:`port`.
pub fn send_plain(port: u16, method: &str, target: &[u8], extra_headers: &str) -> Option<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&request_bytes(method, target, "127.0.0.1", extra_headers))
        .ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// HTTP/1.1 over TLS to the gateway; sessions resume, so each request is cheap.
pub struct TlsSender {
    config: Arc<ClientConfig>,
    port: u16,
}

impl TlsSender {
    pub fn new(port: u16, ca: &Path, alpn: &[&[u8]]) -> TlsSender {
        TlsSender {
            config: client_config(ca, alpn),
            port,
        }
    }

    pub fn send(&self, method: &str, target: &[u8], extra_headers: &str) -> Option<Reply> {
        let name = ServerName::try_from("localhost").ok()?;
        let conn = ClientConnection::new(self.config.clone(), name).ok()?;
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut tls = StreamOwned::new(conn, tcp);
        let host = format!("localhost:{}", self.port);
        tls.write_all(&request_bytes(method, target, &host, extra_headers))
            .ok()?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        // A peer that closes without close_notify ends the read with an error: keep what
        // arrived.
        while let Ok(n) = tls.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        parse(&raw)
    }
}

pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// One HTTP/2 connection to the gateway over TLS (ALPN h2), its driver spawned on the
/// current runtime; requests may share it concurrently.
pub async fn h2_connect(port: u16, ca: &Path) -> H2Sender {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(client_config(ca, &[b"h2"]))
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// One HTTP/2 connection to the gateway, requests sent one after another.
pub struct H2Client {
    rt: tokio::runtime::Runtime,
    sender: H2Sender,
    port: u16,
}

impl H2Client {
    pub fn connect(port: u16, ca: &Path) -> H2Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sender = rt.block_on(h2_connect(port, ca));
        H2Client { rt, sender, port }
    }

    /// `None` when `target` is not a valid `:path` (the client cannot even send it) or the
    /// stream failed.
    pub fn send(&mut self, method: &str, target: &[u8], authorization: &str) -> Option<Reply> {
        use http_body_util::BodyExt;
        if !target.starts_with(b"/") {
            return None;
        }
        let uri = http::Uri::builder()
            .scheme("https")
            .authority(format!("localhost:{}", self.port))
            .path_and_query(target)
            .build()
            .ok()?;
        let req = http::Request::builder()
            .method(http::Method::from_bytes(method.as_bytes()).ok()?)
            .uri(uri)
            .header("authorization", authorization)
            .body(http_body_util::Empty::new())
            .ok()?;
        let sender = &mut self.sender;
        self.rt.block_on(async move {
            sender.ready().await.ok()?;
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
            Some(Reply { status, body })
        })
    }
}
