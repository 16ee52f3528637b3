//! Resumed sessions against reloads, with a real rustls client over an in-memory pipe:
//! a session resumes (TLS 1.2 and 1.3) and keeps its identity; reloading the same trust
//! keeps sessions; a revoked certificate fails the re-check of a resumed session and,
//! after a reload with the CRL, cannot resume at all.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::tls::material::ServedKey;
use crate::tls::recheck::{recheck, TTL};

struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_serial: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let leaf = |name: &str, serial: u8| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.serial_number = Some(vec![serial].into());
        let cert = p.signed_by(&key, &issuer).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.der().clone(), der)
    };
    Pki {
        server: leaf("localhost", 1),
        client: leaf("client.test", 2),
        client_serial: vec![2],
        ca: ca.der().clone(),
        issuer,
    }
}

fn material(pki: &Pki, provider: &Arc<CryptoProvider>, revoked: &[&[u8]]) -> Material {
    let (cert, key) = &pki.server;
    let certified = CertifiedKey::from_der(vec![cert.clone()], key.clone_key(), provider).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: vec![1].into(),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: s.to_vec().into(),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&pki.issuer)
    .unwrap();
    Material {
        keys: vec![ServedKey {
            algorithm: certified.key.algorithm(),
            fingerprint: crate::tls::Fingerprint::of(cert.as_ref()),
            certified: Arc::new(certified),
            cert_path: "server.crt".into(),
        }],
        client_roots: Some(Arc::new(roots)),
        crls: vec![CertificateRevocationListDer::from(crl.der().to_vec())],
    }
}

fn client(pki: &Pki, version: &'static SupportedProtocolVersion) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let (cert, key) = &pki.client;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.clone()], key.clone_key())
        .unwrap();
    Arc::new(config)
}

/// One connection: the server's result (identity CN or error) and whether it resumed.
async fn connect(
    server: &ReloadableServer,
    client: &Arc<ClientConfig>,
) -> (Result<bool, String>, bool) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = ServerName::try_from("localhost").unwrap();
    let client_side = async move {
        let mut tls = connector.connect(name, c).await.ok()?;
        // Reading the server's byte also takes in the session tickets sent before it.
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.ok()?;
        Some(())
    };
    let server_side = async {
        let accepted = server.accept(s).await.map_err(|e| e.to_string())?;
        let (mut tls, identity) = (accepted.stream, accepted.identity);
        let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((identity.is_some(), resumed))
    };
    let (_, server_result) = tokio::join!(client_side, server_side);
    match server_result {
        Ok((identified, resumed)) => (Ok(identified), resumed),
        Err(e) => (Err(e), false),
    }
}

fn profile() -> Profile {
    Profile {
        name: "test",
        alpn: Vec::new(),
        client_auth: ClientAuth::Required,
        min_version: TlsVersion::V1_2,
    }
}

#[tokio::test]
async fn resumed_sessions_are_verified_again_and_dropped_when_trust_changes() {
    let pki = pki();
    let provider = provider();
    for version in [&TLS12, &TLS13] {
        let trusting = material(&pki, &provider, &[]);
        let server = ReloadableServer::new(profile(), provider.clone(), &trusting).unwrap();
        let client = client(&pki, version);
        assert_eq!(connect(&server, &client).await, (Ok(true), false));
        assert_eq!(
            connect(&server, &client).await,
            (Ok(true), true),
            "{version:?}"
        );

        // The same trust again (the same files re-read, a server certificate renewed):
        // sessions survive.
        server.reload(&trusting).unwrap();
        assert_eq!(
            connect(&server, &client).await,
            (Ok(true), true),
            "{version:?}"
        );

        // The re-check alone refuses a resumed session once the certificate is revoked.
        let revoked = material(&pki, &provider, &[&pki.client_serial]);
        let (c, s) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        let name = ServerName::try_from("localhost").unwrap();
        let acceptor = TlsAcceptor::from(server.current.load().config.clone());
        let (_, accepted) = tokio::join!(connector.connect(name, c), acceptor.accept(s));
        let accepted = accepted.unwrap();
        let conn = accepted.get_ref().1;
        assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Resumed));
        let stricter = build(&profile(), &provider, &revoked, Sessions::new().unwrap()).unwrap();
        assert!(recheck(conn, &*server.current.load().verifier).is_ok());
        assert!(matches!(
            recheck(conn, &*stricter.verifier),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ));
        // A passed re-check is remembered per chain for a while, then done again (in
        // use, a trust change comes with a new, empty cache).
        let cache = Rechecked::default();
        let t0 = std::time::Instant::now();
        assert!(cache
            .check(conn, &*server.current.load().verifier, t0)
            .is_ok());
        let soon = t0 + std::time::Duration::from_secs(1);
        assert!(cache.check(conn, &*stricter.verifier, soon).is_ok());
        assert!(cache.check(conn, &*stricter.verifier, t0 + TTL).is_err());

        // After the reload, neither resuming nor a full handshake gets through.
        server.reload(&revoked).unwrap();
        let (result, resumed) = connect(&server, &client).await;
        assert!(result.is_err() && !resumed, "{version:?}: {result:?}");
    }
}

#[tokio::test]
async fn established_connections_learn_of_a_revocation() {
    use futures_util::FutureExt;
    let pki = pki();
    let provider = provider();
    let trusting = material(&pki, &provider, &[]);
    let server = ReloadableServer::new(profile(), provider.clone(), &trusting).unwrap();
    let client = client(&pki, &TLS13);
    let (c, s) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    let (_client, accepted) = tokio::join!(connector.connect(name, c), server.accept(s));
    let mut revoked = Box::pin(accepted.unwrap().revocation.revoked());
    // Reloading the same trust is no change; another CRL that still trusts is one, but
    // the certificate verifies.
    server.reload(&trusting).unwrap();
    assert!(revoked.as_mut().now_or_never().is_none());
    server.reload(&material(&pki, &provider, &[&[99]])).unwrap();
    assert!(revoked.as_mut().now_or_never().is_none());
    server
        .reload(&material(&pki, &provider, &[&pki.client_serial]))
        .unwrap();
    assert!(revoked.as_mut().now_or_never().is_some());
}
