//! Client certificates required: no certificate and a certificate from another CA are
//! refused on both listeners; a good one is accepted and its identity logged.

mod support;

use support::backend::Backend;
use support::dicom::{dcmtk, dcmtk_tls, StoreScp, ECHOSCU};
use support::gateway::{curl, http_status, tls_section, Gateway};
use support::pki::{fingerprint, Ca};
use support::process::free_port;

#[test]
fn required_client_certificates_on_https_and_dicom() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Clients CA");
    let server = ca.server(d, "server");
    let good = ca.client(d, "MODALITY1");
    let other_ca = Ca::new(d, "Other CA");
    let stranger = other_ca.client(d, "MODALITY1");
    let backend = Backend::start();
    let scp = StoreScp::start(d, "ORTHANC", None);
    let (https, dicom) = (free_port(), free_port());
    let tls = tls_section(
        &server,
        &format!(
            "client_ca = {:?}\nclient_auth = \"required\"",
            ca.path.display().to_string()
        ),
    );
    let toml = format!(
        "{tls}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{}\"\n",
        backend.port(),
        scp.port
    );
    let gw = Gateway::start(d, &toml);
    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{https}/1k");

    // HTTPS: refused without a certificate and with a stranger's; accepted with a good one.
    let (status, _, _) = curl(&["--cacert", &cacert, &url]);
    assert!(!status.success(), "no client certificate was accepted");
    let (status, _, _) = curl(&[
        "--cacert",
        &cacert,
        "--cert",
        stranger.cert.to_str().unwrap(),
        "--key",
        stranger.key.to_str().unwrap(),
        &url,
    ]);
    assert!(
        !status.success(),
        "a certificate from another CA was accepted"
    );
    assert_eq!(backend.request_count(), 0);
    let (status, out, err) = http_status(&[
        "--cacert",
        &cacert,
        "--cert",
        good.cert.to_str().unwrap(),
        "--key",
        good.key.to_str().unwrap(),
        &url,
    ]);
    assert!(status.success(), "{err}\n{}", gw.log());
    assert_eq!(out, "200");

    // DICOM: the same three cases with dcmtk.
    let aec = ["-aec".to_string(), "ORTHANC".into()];
    for (who, leaf, ok) in [
        ("anonymous", None, false),
        ("stranger", Some(&stranger), false),
        ("good", Some(&good), true),
    ] {
        let mut args = aec.to_vec();
        args.extend(dcmtk_tls(&ca.path, leaf));
        let (status, out) = dcmtk(ECHOSCU, dicom, &args, &[]);
        assert_eq!(status.success(), ok, "{who}: {out}");
    }

    let log = gw.log();
    let fp = fingerprint(&good.cert);
    assert!(log.contains("client certificate verified"), "{log}");
    assert!(log.contains(&fp), "fingerprint {fp} not logged:\n{log}");
    assert!(
        log.contains("tls.cn=MODALITY1") || log.contains("tls.cn=\"MODALITY1\""),
        "{log}"
    );
    assert!(
        log.contains("client certificate refused"),
        "refusals are not logged:\n{log}"
    );
}

#[test]
fn optional_client_certificates_accept_anonymous_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Clients CA");
    let server = ca.server(d, "server");
    let backend = Backend::start();
    let https = free_port();
    let tls = tls_section(
        &server,
        &format!(
            "client_ca = {:?}\nclient_auth = \"optional\"",
            ca.path.display().to_string()
        ),
    );
    let toml = format!("{tls}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n", backend.port());
    let _gw = Gateway::start(d, &toml);
    let (status, out, err) = http_status(&[
        "--cacert",
        &ca.path.display().to_string(),
        &format!("https://localhost:{https}/1k"),
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(out, "200");
}
