//! ACME against Debian's pebble (RFC 8555 test CA) on loopback, with real HTTP-01
//! validation of the gateway's responder: the first-start self-signed certificate is
//! replaced by an issued one and served without a restart, and a certificate inside
//! `renew_before` is renewed and hot swapped again. The account is kept 0600.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::gateway::Gateway;
use support::pki::Ca;
use support::process::{free_port, wait_for_port, wait_until, Proc};

const PEBBLE: &str = "/usr/bin/pebble";

/// The DER of the certificate served on `port` for SNI `name` (openssl s_client).
fn served(port: u16, name: &str) -> Vec<u8> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -outform DER"
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    assert!(out.status.success(), "no certificate served on {port}");
    out.stdout
}

fn file_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("PEM certificate")
        .as_ref()
        .to_vec()
}

fn issuer(path: &Path) -> String {
    use x509_parser::prelude::FromDer;
    let der = file_der(path);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).expect("x509");
    cert.issuer().to_string()
}

fn issued(gateway: &Gateway) -> usize {
    gateway.log().matches("ACME certificate issued").count()
}

#[test]
fn pebble_issues_renews_and_the_gateway_hot_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Pebble TLS CA");
    let pebble_tls = ca.server(d, "pebble");
    let (acme_port, mgmt_port, http01, tlsalpn) =
        (free_port(), free_port(), free_port(), free_port());
    let pebble_config = d.join("pebble.json");
    std::fs::write(
        &pebble_config,
        serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": pebble_tls.cert,
            "privateKey": pebble_tls.key,
            "httpPort": http01,
            "tlsPort": tlsalpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }})
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new(PEBBLE);
    cmd.arg("-config")
        .arg(&pebble_config)
        .env("PEBBLE_VA_NOSLEEP", "1");
    let _pebble = Proc::spawn("pebble", cmd, &d.join("pebble.log"));
    wait_for_port(acme_port, Duration::from_secs(30));

    let (https, admin) = (free_port(), free_port());
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let cert = certs.join("server.crt");
    // Pebble's certificates are valid for years: a renew_before longer than that makes
    // every check renew, so the test sees a renewal without waiting for one.
    let toml = format!(
        r#"[tls]
cert = {cert:?}
key = {key:?}
hostnames = ["localhost"]
[tls.acme]
directory = "https://127.0.0.1:{acme_port}/dir"
ca = {ca:?}
contact = ["mailto:pacs-admin@example.org"]
domains = ["localhost"]
http01_listen = "127.0.0.1:{http01}"
renew_before = "3650d"
check_interval = "3s"
[http]
listen = "127.0.0.1:{https}"
authentication = "none"
[dicom]
enabled = false
[admin]
listen = "127.0.0.1:{admin}"
"#,
        cert = cert.display().to_string(),
        key = certs.join("server.key").display().to_string(),
        ca = ca.path.display().to_string(),
    );
    let gateway = Gateway::start(d, &toml);
    wait_until(
        "the first ACME certificate",
        Duration::from_secs(60),
        || issued(&gateway) >= 1,
    );
    let first = file_der(&cert);
    assert!(issuer(&cert).contains("Pebble"), "{}", issuer(&cert));
    wait_until(
        "the issued certificate to be served",
        Duration::from_secs(20),
        || served(https, "localhost") == file_der(&cert),
    );

    wait_until("a renewal", Duration::from_secs(60), || {
        issued(&gateway) >= 2
    });
    wait_until(
        "the renewed certificate to be served",
        Duration::from_secs(20),
        || {
            let now = file_der(&cert);
            now != first && served(https, "localhost") == now
        },
    );

    // The HTTP-01 responder answers pending tokens only: no guessing, no other paths,
    // no methods but GET.
    for (method, path) in [
        ("GET", "/.well-known/acme-challenge/not-a-token"),
        ("GET", "/.well-known/acme-challenge/../../etc/passwd"),
        ("GET", "/"),
        ("POST", "/.well-known/acme-challenge/x"),
    ] {
        let url = format!("http://127.0.0.1:{http01}{path}");
        let (_, code, _) = support::gateway::http_status(&["--path-as-is", "-X", method, &url]);
        assert_eq!(code, "404", "{method} {path}");
    }

    let account = certs.join("acme-account.json");
    let mode = std::fs::metadata(&account).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "account file mode");
    let key_mode = std::fs::metadata(certs.join("server.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600, "key file mode");
    let (_, body) = support::http_get(admin, "/metrics").expect("metrics");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("pacsgate_reloads_total{what=\"tls\",result=\"ok\"}"),
        "{text}"
    );
    assert!(
        !gateway.log().contains("ACME issuance failed"),
        "{}",
        gateway.log()
    );
}

#[test]
fn acme_config_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:8443\"\n[dicom]\nenabled = false\n[tls.acme]\n";
    for (body, key) in [
        ("directory = \"http://x/dir\"\ndomains = [\"a\"]\nhttp01_listen = \"127.0.0.1:80\"\n", "tls.acme.directory"),
        ("directory = \"https://x/dir\"\ndomains = []\nhttp01_listen = \"127.0.0.1:80\"\n", "tls.acme.domains"),
        ("directory = \"https://x/dir\"\ndomains = [\"a\"]\nhttp01_listen = \"127.0.0.1:80\"\nrenew_before = \"soon\"\n", "tls.acme.renew_before"),
    ] {
        let toml = format!("{base}{body}");
        let (code, out) = support::gateway::run_expecting_exit(dir.path(), &toml, "check");
        assert_eq!(code, Some(64), "{out}");
        assert!(out.contains(key), "{key}: {out}");
    }
}
