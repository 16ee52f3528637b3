//! HTTPS through the gateway to Debian's Orthanc 1.10.1: the REST API answers, and a DICOM
//! file uploaded with POST /instances comes back byte-identical.

mod support;

use support::gateway::{curl, tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::free_port;

#[test]
fn orthanc_rest_api_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let port = free_port();
    let toml = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n[dicom]\nenabled = false\n",
        tls_section(&server, ""),
        orthanc.http_port
    );
    let _gateway = Gateway::start(dir.path(), &toml);
    let cacert = ca.path.display().to_string();
    let base = format!("https://localhost:{port}");

    let (status, body, err) = curl(&["--cacert", &cacert, &format!("{base}/system")]);
    assert!(status.success(), "{err}");
    let system: serde_json::Value = serde_json::from_str(&body).expect("JSON from /system");
    assert_eq!(system["Version"], "1.10.1", "{body}");

    let file = support::pydicom_file("CT_small.dcm");
    let upload = format!("@{}", file.display());
    let (status, body, err) = curl(&[
        "--cacert",
        &cacert,
        "-H",
        "Content-Type: application/dicom",
        "--data-binary",
        &upload,
        &format!("{base}/instances"),
    ]);
    assert!(status.success(), "{err}");
    let created: serde_json::Value =
        serde_json::from_str(&body).expect("JSON from POST /instances");
    let id = created["ID"].as_str().expect("instance ID").to_string();

    let back = dir.path().join("back.dcm");
    let (status, _, err) = curl(&[
        "--http2",
        "--cacert",
        &cacert,
        "-o",
        back.to_str().unwrap(),
        &format!("{base}/instances/{id}/file"),
    ]);
    assert!(status.success(), "{err}");
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&file).unwrap(),
        "file changed in transit"
    );
}
