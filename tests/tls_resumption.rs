//! Revocation holds on resumed TLS sessions. A client authenticates with its certificate
//! and resumes (TLS 1.2 session id, TLS 1.2 ticket, TLS 1.3 ticket): the resumption is
//! real (openssl prints "Reused", rustls reports a resumed handshake) and authenticated.
//! Then the CRL revoking it is reloaded: a full handshake fails, resuming a session from
//! before the revocation must not authenticate either, and connections established
//! before it are closed, on HTTPS (user by certificate) and on DICOM (modality bound to
//! the certificate).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::backend::Backend;
use support::gateway::{tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::{fingerprint, Ca, Leaf};
use support::process::free_port;
use support::raw::{client_config, fixture, rq_with_titles, RawClient};

struct Site {
    dir: tempfile::TempDir,
    ca: Ca,
    client: Leaf,
    crl: std::path::PathBuf,
    tls: String,
    gateway: Gateway,
}

impl Site {
    /// Client certificates required, a CRL revoking nothing yet, and `listeners` (the
    /// `[http]`/`[dicom]` tables, given the client's fingerprint).
    fn start(listeners: impl Fn(&str) -> String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::new(d, "Clients CA");
        let server = ca.server(d, "server");
        let client = ca.client(d, "SITEB");
        let crl = d.join("clients.crl");
        ca.write_crl(&crl, &[]);
        let tls = tls_section(
            &server,
            &format!(
                "client_ca = {:?}\nclient_crl = [{:?}]\nclient_auth = \"required\"\nwatch = false",
                ca.path.display().to_string(),
                crl.display().to_string()
            ),
        );
        let toml = format!("{tls}{}", listeners(&fingerprint(&client.cert)));
        let gateway = Gateway::start(d, &toml);
        Site {
            dir,
            ca,
            client,
            crl,
            tls,
            gateway,
        }
    }

    /// Replace the listener tables and reload (SIGHUP), waiting until it applies.
    fn reconfigure(&mut self, listeners: &str) {
        std::fs::write(&self.gateway.config, format!("{}{listeners}", self.tls)).unwrap();
        self.gateway.proc.signal("HUP");
        self.gateway
            .proc
            .wait_for_output("configuration reloaded", Duration::from_secs(30));
    }

    /// Revoke the client's certificate and reload (SIGHUP), waiting until it applies.
    fn revoke(&mut self) {
        self.ca.write_crl(&self.crl, &[&self.client]);
        self.gateway.proc.signal("HUP");
        self.gateway
            .proc
            .wait_for_output("TLS material reloaded", Duration::from_secs(30));
    }
}

/// One HTTP/1.1 GET through `openssl s_client` with the client certificate, saving the
/// session to `sess` (or resuming it with `resume`); returns s_client's output.
fn s_client(site: &Site, port: u16, version: &[&str], sess: &Path, resume: bool) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-ign_eof"])
        .arg("-CAfile")
        .arg(&site.ca.path)
        .arg("-cert")
        .arg(&site.client.cert)
        .arg("-key")
        .arg(&site.client.key)
        .args(version)
        .arg(if resume { "-sess_in" } else { "-sess_out" })
        .arg(sess)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("openssl is needed; run tests/run.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /1k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write request");
    let out = child.wait_with_output().expect("s_client output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const OK: &str = "HTTP/1.1 200";

#[test]
fn https_sessions_resumed_from_before_a_revocation_do_not_authenticate() {
    let backend = Backend::start();
    let port = free_port();
    let mut site = Site::start(|fp| {
        format!(
            "[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\nheader_timeout = \"300s\"\nidle_timeout = \"300s\"\n[users.site-b]\ncertificate = \"{fp}\"\n[[http.rules]]\nusers = [\"site-b\"]\nmethods = [\"GET\"]\npaths = [\"/**\"]\n",
            backend.port()
        )
    });
    let kinds: [(&str, &[&str]); 3] = [
        ("TLS 1.2 session id", &["-tls1_2", "-no_ticket"]),
        ("TLS 1.2 ticket", &["-tls1_2"]),
        ("TLS 1.3 ticket", &["-tls1_3"]),
    ];
    for (i, (kind, version)) in kinds.iter().enumerate() {
        let sess = site.dir.path().join(format!("sess-{i}.pem"));
        let full = s_client(&site, port, version, &sess, false);
        assert!(full.contains(OK) && full.contains("New,"), "{kind}: {full}");
        let resumed = s_client(&site, port, version, &sess, true);
        assert!(
            resumed.contains(OK) && resumed.contains("Reused,"),
            "{kind}: {resumed}"
        );
    }
    // A keep-alive connection authenticated before the revocation (the gateway's own
    // timeouts are longer than the client's 30 s read timeout).
    let h1 = client_config(
        &site.ca.path,
        Some(&site.client),
        rustls::DEFAULT_VERSIONS,
        &[b"http/1.1"],
    );
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut kept = RawClient::over(tcp, h1);
    kept.send(b"GET /1k HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = kept.read_some().expect("a response");
    assert!(
        head.starts_with(OK.as_bytes()),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let served = backend.request_count();
    assert_eq!(served, 7);

    site.revoke();
    // It is closed by the reload, however busy it is kept.
    assert!(kept.closed_by_server(), "{}", site.gateway.log());
    for (i, (kind, version)) in kinds.iter().enumerate() {
        let sess = site.dir.path().join(format!("sess-{i}.pem"));
        let resumed = s_client(&site, port, version, &sess, true);
        assert!(
            !resumed.contains(OK),
            "{kind}: revoked but served: {resumed}"
        );
        // Not resumed (new session stores), or resumed and refused by the re-check.
        let rechecked = site
            .gateway
            .log()
            .contains("client certificate of a resumed session refused");
        assert!(
            !resumed.contains("Reused,") || rechecked,
            "{kind}: {resumed}"
        );
        let fresh = site.dir.path().join("fresh.pem");
        let full = s_client(&site, port, version, &fresh, false);
        assert!(!full.contains(OK), "{kind}: revoked but served: {full}");
    }
    assert_eq!(backend.request_count(), served, "{}", site.gateway.log());
}

#[test]
fn dicom_sessions_resumed_from_before_a_revocation_do_not_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    // Neither side closes an idle association within the client's 30 s read timeout.
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({"DicomScpTimeout": 300}));
    let port = free_port();
    let mut site = Site::start(|fp| {
        format!(
            "[http]\nenabled = false\n[dicom]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{}\"\nalways_allow_echo = false\n[dicom.modalities.siteb]\naet = \"SITEB\"\ncertificate = \"{fp}\"\nallow = [\"echo\"]\n",
            orthanc.dicom_port
        )
    });
    let rq = rq_with_titles("pynetdicom-echo-A-ASSOCIATE-RQ.bin", "SITEB", "ORTHANC");
    // The first PDU type the gateway answers the RQ with, and whether TLS resumed;
    // `None`: the connection closed (during or after the handshake).
    let associate = |config: &std::sync::Arc<rustls::ClientConfig>| {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut c = RawClient::over(tcp, config.clone());
        c.handshake().ok()?;
        c.send(&rq);
        let answer = c.read_pdu()?[0];
        if answer == 0x02 {
            c.send(&fixture("A-RELEASE-RQ.bin"));
            c.read_pdu();
        }
        Some((answer, c.resumed()))
    };
    let versions: [&[&rustls::SupportedProtocolVersion]; 2] =
        [&[&rustls::version::TLS12], &[&rustls::version::TLS13]];
    let configs: Vec<_> = versions
        .iter()
        .map(|v| client_config(&site.ca.path, Some(&site.client), v, &[]))
        .collect();
    for config in &configs {
        assert_eq!(
            associate(config),
            Some((0x02, false)),
            "{}",
            site.gateway.log()
        );
        assert_eq!(
            associate(config),
            Some((0x02, true)),
            "{}",
            site.gateway.log()
        );
    }
    // An association established before the revocation.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut held = RawClient::over(tcp, configs[0].clone());
    held.send(&rq);
    assert_eq!(held.read_pdu().map(|p| p[0]), Some(0x02));

    site.revoke();
    // It ends with the reload: the relay's reads and writes on it fail.
    assert!(held.closed_by_server(), "{}", site.gateway.log());
    for config in &configs {
        let answer = associate(config);
        assert!(
            !matches!(answer, Some((0x02, _))),
            "revoked but associated: {answer:?}\n{}",
            site.gateway.log()
        );
    }
    let fresh = client_config(
        &site.ca.path,
        Some(&site.client),
        rustls::DEFAULT_VERSIONS,
        &[],
    );
    assert_eq!(
        associate(&fresh),
        None,
        "a full handshake with a revoked certificate"
    );
}

#[test]
fn a_removed_certificate_user_does_not_authenticate_resumed_sessions() {
    let backend = Backend::start();
    let port = free_port();
    let http = |fp: &str| {
        format!(
            "[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n[users.site-b]\ncertificate = \"{fp}\"\n[[http.rules]]\nusers = [\"site-b\"]\nmethods = [\"GET\"]\npaths = [\"/**\"]\n",
            backend.port()
        )
    };
    let mut site = Site::start(http);
    let sess = site.dir.path().join("sess.pem");
    let full = s_client(&site, port, &["-tls1_3"], &sess, false);
    assert!(full.contains(OK), "{full}");
    // site-b is bound to another certificate now: the same trust, so sessions resume,
    // but the resumed one is no longer site-b.
    let other = fingerprint(&site.ca.path);
    site.reconfigure(&http(&other));
    let resumed = s_client(&site, port, &["-tls1_3"], &sess, true);
    assert!(resumed.contains("Reused,"), "{resumed}");
    assert!(resumed.contains("HTTP/1.1 40"), "{resumed}");
    assert_eq!(backend.request_count(), 1);
}
