//! A raw DICOM-over-TLS client (rustls, blocking) that writes arbitrary bytes and reads
//! whole PDUs, to feed the gateway fragmented and malformed input built from the captured
//! vectors in tests/fixtures/pdu.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::pki::Leaf;

pub struct RawClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

/// A rustls client configuration trusting `ca`, presenting `client` (or none), limited to
/// `versions` and offering `alpn`. Reusing one configuration resumes sessions (its
/// in-memory session store keeps TLS 1.2 ids and tickets and TLS 1.3 tickets).
pub fn client_config(
    ca: &Path,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf.cert)
                .expect("client cert")
                .map(|c| c.expect("client cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from` (127.0.0.2 is
/// another client as far as per-address limits are concerned).
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((from, 0).into())?;
        socket.connect(([127, 0, 0, 1], port).into()).await
    });
    let std = stream
        .and_then(|s| s.into_std())
        .expect("connect from another loopback address");
    std.set_nonblocking(false).expect("blocking");
    std
}

impl RawClient {
    pub fn connect(port: u16, ca: &Path, client: Option<&Leaf>) -> RawClient {
        let config = client_config(ca, client, rustls::DEFAULT_VERSIONS, &[]);
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        RawClient::over(tcp, config)
    }

    /// A client on an established TCP connection; the handshake runs on first use (or
    /// with [`RawClient::handshake`]).
    pub fn over(tcp: TcpStream, config: Arc<ClientConfig>) -> RawClient {
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(config, name).expect("TLS client");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
        RawClient {
            stream: StreamOwned::new(conn, tcp),
        }
    }

    /// Complete the TLS handshake now; `Err` if the server refused or closed.
    pub fn handshake(&mut self) -> std::io::Result<()> {
        while self.stream.conn.is_handshaking() {
            self.stream.conn.complete_io(&mut self.stream.sock)?;
        }
        Ok(())
    }

    /// Whether this connection resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Read and discard until the server closes: `true` once it has (EOF, with or without
    /// close_notify, or a reset), `false` if the 30 s read timeout passed first.
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    /// Read whatever arrives next (at least one byte); `None` on EOF or error.
    pub fn read_some(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(buf[..n].to_vec()),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    /// The next whole PDU, or `None` on EOF / error.
    pub fn read_pdu(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 6];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let mut pdu = header.to_vec();
        pdu.resize(6 + len, 0);
        self.stream.read_exact(&mut pdu[6..]).ok()?;
        Some(pdu)
    }
}

/// A fixture PDU from tests/fixtures/pdu.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pdu")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An A-ASSOCIATE-RQ fixture with its AE titles replaced (PS3.8 Table 9-11: called AE
/// at offset 10, calling AE at 26, 16 bytes each, space-padded).
pub fn rq_with_titles(name: &str, calling: &str, called: &str) -> Vec<u8> {
    let mut rq = fixture(name);
    for (at, ae) in [(10, called), (26, calling)] {
        let mut padded = [b' '; 16];
        padded[..ae.len()].copy_from_slice(ae.as_bytes());
        rq[at..at + 16].copy_from_slice(&padded);
    }
    rq
}

/// P-DATA-TF carrying `pdvs`, each `(pcid, control, fragment)` (PS3.8 §9.3.5).
pub fn p_data(pdvs: &[(u8, u8, &[u8])]) -> Vec<u8> {
    let body: usize = pdvs.iter().map(|(_, _, f)| 6 + f.len()).sum();
    let mut out = vec![4, 0];
    out.extend_from_slice(&(body as u32).to_be_bytes());
    for (pcid, control, frag) in pdvs {
        out.extend_from_slice(&(frag.len() as u32 + 2).to_be_bytes());
        out.push(*pcid);
        out.push(*control);
        out.extend_from_slice(frag);
    }
    out
}

/// Status (0000,0900) of a one-PDV response PDU, from its implicit-VR command set.
pub fn status_of(pdu: &[u8]) -> Option<u16> {
    let cmd = pdu.get(12..)?;
    let mut pos = 0;
    while pos + 8 <= cmd.len() {
        let elem = u16::from_le_bytes([cmd[pos + 2], cmd[pos + 3]]);
        let len =
            u32::from_le_bytes([cmd[pos + 4], cmd[pos + 5], cmd[pos + 6], cmd[pos + 7]]) as usize;
        if elem == 0x0900 && len == 2 {
            return Some(u16::from_le_bytes([*cmd.get(pos + 8)?, *cmd.get(pos + 9)?]));
        }
        pos += 8 + len;
    }
    None
}

/// An A-ASSOCIATE-RQ (PS3.8 §9.3.2) with raw AE title fields (space-padded to 16 bytes,
/// taken as they are otherwise, NULs included), proposing each abstract syntax with
/// Implicit VR Little Endian on context ids 1, 3, 5, ...
pub fn associate_rq(calling: &[u8], called: &[u8], abstract_syntaxes: &[&str]) -> Vec<u8> {
    fn item(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 0];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }
    fn field(ae: &[u8]) -> [u8; 16] {
        let mut f = [b' '; 16];
        f[..ae.len()].copy_from_slice(ae);
        f
    }
    let mut body = vec![0, 1, 0, 0];
    body.extend_from_slice(&field(called));
    body.extend_from_slice(&field(calling));
    body.extend_from_slice(&[0; 32]);
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    for (i, syntax) in abstract_syntaxes.iter().enumerate() {
        let mut pc = vec![(2 * i + 1) as u8, 0, 0, 0];
        pc.extend(item(0x30, syntax.as_bytes()));
        pc.extend(item(0x40, b"1.2.840.10008.1.2"));
        body.extend(item(0x20, &pc));
    }
    let mut user = item(0x51, &16384u32.to_be_bytes());
    user.extend(item(0x52, b"1.2.826.0.1.3680043.9.7433.1"));
    body.extend(item(0x50, &user));
    let mut pdu = vec![1, 0];
    pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pdu.extend(body);
    pdu
}

/// Command Field (0000,0100) of a P-DATA-TF whose first PDV is a command fragment holding
/// a whole command set.
pub fn command_field_of(pdu: &[u8]) -> Option<u16> {
    if pdu.first() != Some(&4) || pdu.get(11).is_none_or(|c| c & 1 == 0) {
        return None;
    }
    let cmd = pdu.get(12..)?;
    let mut pos = 0;
    while pos + 8 <= cmd.len() {
        let elem = u16::from_le_bytes([cmd[pos + 2], cmd[pos + 3]]);
        let len =
            u32::from_le_bytes([cmd[pos + 4], cmd[pos + 5], cmd[pos + 6], cmd[pos + 7]]) as usize;
        if elem == 0x0100 && len == 2 {
            return Some(u16::from_le_bytes([*cmd.get(pos + 8)?, *cmd.get(pos + 9)?]));
        }
        pos += 8 + len;
    }
    None
}
