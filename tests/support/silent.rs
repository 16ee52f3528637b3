//! Acceptors that never answer: a plain TCP one (a stalled PACS) and a TLS one (a remote
//! DICOM peer that completes the handshake, then stalls). Each accepts one connection,
//! reads until the gateway closes it and hands back what it received.

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::pki::Leaf;

pub struct SilentPeer {
    pub port: u16,
    received: JoinHandle<Vec<u8>>,
}

impl SilentPeer {
    /// Plain TCP on 127.0.0.1.
    pub fn tcp() -> SilentPeer {
        Self::spawn(|tcp| tcp)
    }

    /// TLS on 127.0.0.1 serving `server` (no client certificate asked for).
    pub fn tls(server: &Leaf) -> SilentPeer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&server.cert)
            .expect("server cert")
            .map(|c| c.expect("server cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&server.key).expect("server key");
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        Self::spawn(move |tcp| {
            let conn = ServerConnection::new(config).expect("TLS server");
            StreamOwned::new(conn, tcp)
        })
    }

    fn spawn<S, F>(wrap: F) -> SilentPeer
    where
        S: Read,
        F: FnOnce(std::net::TcpStream) -> S + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = std::thread::spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return Vec::new();
            };
            let mut stream = wrap(tcp);
            let mut all = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            // EOF, a reset or the TLS peer's close_notify all end the read.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        SilentPeer { port, received }
    }

    /// Everything the gateway sent, once it closed the connection.
    pub fn received(self) -> Vec<u8> {
        self.received.join().expect("silent peer")
    }
}
