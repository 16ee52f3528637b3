//! DICOM TLS through the gateway with real peers: dcmtk echoscu/storescu under TLS 1.3 and
//! TLS 1.2 (+pz), pynetdicom, to Orthanc 1.10.1 and to dcmtk's storescp; a transient
//! A-ASSOCIATE-RJ when the PACS is down.

mod support;

use std::path::Path;

use support::dicom::{dcmtk, dcmtk_tls, pynetdicom, StoreScp, ECHOSCU, STORESCU};
use support::gateway::{curl, dicom_only, Gateway};
use support::orthanc::Orthanc;
use support::pki::{Ca, Leaf};
use support::process::free_port;

struct Setup {
    ca: Ca,
    port: u16,
    _gateway: Gateway,
}

fn gateway(dir: &Path, upstream_port: u16) -> Setup {
    let ca = Ca::new(dir, "Test CA");
    let server: Leaf = ca.server(dir, "server");
    let port = free_port();
    let toml = dicom_only(&server, "", port, upstream_port, "");
    let gw = Gateway::start(dir, &toml);
    Setup {
        ca,
        port,
        _gateway: gw,
    }
}

fn instance_count(orthanc: &Orthanc) -> usize {
    let (status, body, _) = curl(&[&format!("http://127.0.0.1:{}/instances", orthanc.http_port)]);
    assert!(status.success());
    serde_json::from_str::<Vec<String>>(&body)
        .expect("instances")
        .len()
}

#[test]
fn dcmtk_and_pynetdicom_reach_orthanc_over_tls_13_and_12() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
    let s = gateway(dir.path(), orthanc.dicom_port);
    let client = s.ca.client(dir.path(), "MODALITY1");
    let tls = dcmtk_tls(&s.ca.path, Some(&client));
    let aec = [
        "-aet".to_string(),
        "MODALITY1".into(),
        "-aec".into(),
        "ORTHANC".into(),
    ];

    for profile in [None, Some("+pz")] {
        let mut args: Vec<String> = aec.to_vec();
        args.extend(tls.iter().cloned());
        args.extend(profile.map(String::from));
        let (status, out) = dcmtk(ECHOSCU, s.port, &args, &[]);
        assert!(
            status.success() && out.contains("Received Echo Response (Success)"),
            "{profile:?}: {out}"
        );
        let files = [
            support::pydicom_file("CT_small.dcm"),
            support::pydicom_file("MR_small.dcm"),
        ];
        let (status, out) = dcmtk(STORESCU, s.port, &args, &files);
        assert!(status.success(), "{profile:?}: {out}");
        assert_eq!(
            out.matches("Received Store Response (Success)").count(),
            2,
            "{out}"
        );
    }
    assert_eq!(instance_count(&orthanc), 2);

    let py = [
        "--ca".to_string(),
        s.ca.path.display().to_string(),
        "--cert".into(),
        client.cert.display().to_string(),
        "--key".into(),
        client.key.display().to_string(),
        "--calling".into(),
        "MODALITY1".into(),
    ];
    let (status, out) = pynetdicom(s.port, &py, "echo", &[]);
    assert!(status.success() && out.contains("ECHO 0x0000"), "{out}");
    let rt = support::pydicom_file("rtplan.dcm");
    let (status, out) = pynetdicom(s.port, &py, "store", &[rt]);
    assert!(status.success() && out.contains("STORE 0x0000"), "{out}");
    assert_eq!(instance_count(&orthanc), 3);
}

#[test]
fn storescp_receives_files_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(dir.path(), "STORESCP", None);
    let s = gateway(dir.path(), scp.port);
    let mut args = vec!["-aec".to_string(), "STORESCP".into()];
    args.extend(dcmtk_tls(&s.ca.path, None));
    args.push("+pz".into());
    let file = support::pydicom_file("CT_small.dcm");
    let (status, out) = dcmtk(STORESCU, s.port, &args, &[file]);
    assert!(status.success(), "{out}");
    assert_eq!(scp.received().len(), 1, "{}", scp.proc.output());
}

#[test]
fn pacs_down_gives_a_transient_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let s = gateway(dir.path(), dead);
    let mut args = vec!["-aec".to_string(), "ORTHANC".into()];
    args.extend(dcmtk_tls(&s.ca.path, None));
    let (status, out) = dcmtk(ECHOSCU, s.port, &args, &[]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("Association Rejected") && out.contains("Rejected Transient"),
        "{out}"
    );
    let py = ["--ca".to_string(), s.ca.path.display().to_string()];
    let (status, out) = pynetdicom(s.port, &py, "echo", &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("REJECTED 2 3 1"), "{out}");
}
