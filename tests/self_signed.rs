//! First start without certificates: an ECDSA and an RSA self-signed pair are generated,
//! keys 0600, fingerprints printed and stable across restarts; each client gets the key
//! it can use (RSA for TLS 1.2 clients offering only ECDHE-RSA, e.g. dcmtk profiles);
//! `cert inspect` shows what an operator needs to pin.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::dicom::{dcmtk, StoreScp, ECHOSCU};
use support::gateway::{binary, Gateway};
use support::pki::fingerprint;
use support::process::free_port;

fn served_key_bits(port: u16, extra: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} {} </dev/null 2>/dev/null",
            extra.join(" ")
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Server public key is "))
        .unwrap_or("none")
        .to_string()
}

#[test]
fn generated_certificates_persist_and_suit_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scp = StoreScp::start(d, "ORTHANC", None);
    let (https, dicom) = (free_port(), free_port());
    let toml = format!(
        "[tls]\ncert = \"certs/server.crt\"\nkey = \"certs/server.key\"\nrsa_cert = \"certs/server-rsa.crt\"\nrsa_key = \"certs/server-rsa.key\"\nhostnames = [\"pacs.example.org\", \"10.0.0.5\"]\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\n[dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n",
        scp.port
    );
    let gw = Gateway::start(d, &toml);
    let certs = d.join("certs");
    for key in ["server.key", "server-rsa.key"] {
        let mode = std::fs::metadata(certs.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} has mode {mode:o}");
    }
    let ecdsa_fp = fingerprint(&certs.join("server.crt"));
    let rsa_fp = fingerprint(&certs.join("server-rsa.crt"));
    let log = gw.log();
    assert!(
        log.contains(&ecdsa_fp) && log.contains(&rsa_fp),
        "fingerprints not printed:\n{log}"
    );

    // Modern clients get ECDSA; a TLS 1.2 client offering only ECDHE-RSA gets RSA.
    assert_eq!(served_key_bits(https, &[]), "256 bit");
    assert_eq!(
        served_key_bits(
            dicom,
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]
        ),
        "2048 bit"
    );
    assert_eq!(
        served_key_bits(
            dicom,
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]
        ),
        "256 bit"
    );
    // dcmtk 3.6.7 under TLS 1.2 with an ECDHE-RSA suite, trusting only the RSA certificate.
    let args = [
        "-aec".to_string(),
        "ORTHANC".into(),
        "+tla".into(),
        "+cf".into(),
        certs.join("server-rsa.crt").display().to_string(),
        "+pn".into(),
        "+cs".into(),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
    ];
    let (status, out) = dcmtk(ECHOSCU, dicom, &args, &[]);
    assert!(status.success(), "{out}");

    // `cert inspect` shows the SANs and the same fingerprint.
    let out = Command::new(binary())
        .args(["cert", "inspect"])
        .arg(certs.join("server.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(&ecdsa_fp), "{text}");
    for san in ["pacs.example.org", "10.0.0.5", "localhost", "127.0.0.1"] {
        assert!(text.contains(san), "{san} missing:\n{text}");
    }

    // A restart reuses the pair: same fingerprints.
    gw.proc.signal("TERM");
    let mut gw = gw;
    assert!(gw.proc.wait_exit(Duration::from_secs(30)).success());
    let gw2 = Gateway::start(d, &toml);
    assert_eq!(fingerprint(&certs.join("server.crt")), ecdsa_fp);
    assert_eq!(fingerprint(&certs.join("server-rsa.crt")), rsa_fp);
    assert!(!gw2.log().contains("generated a self-signed certificate"));
}

#[test]
fn a_ca_issued_certificate_gets_no_self_signed_rsa_companion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = support::pki::Ca::new(d, "Real CA");
    let leaf = ca.server(d, "real");
    let https = free_port();
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nrsa_cert = \"rsa.crt\"\nrsa_key = \"rsa.key\"\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\n[dicom]\nenabled = false\n",
        leaf.cert.display().to_string(),
        leaf.key.display().to_string()
    );
    let gw = Gateway::start(d, &toml);
    assert!(
        !d.join("rsa.crt").exists(),
        "a self-signed RSA certificate was generated beside a CA-issued one"
    );
    assert!(gw.log().contains("serving tls.cert only"), "{}", gw.log());
}
