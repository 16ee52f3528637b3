//! DICOM policy at the edge with real peers (dcmtk, pynetdicom over TLS; Orthanc 1.10.1
//! and storescp behind): AE-title refusals (A-ASSOCIATE-RJ reasons 3 and 7), certificate
//! to AE binding, per-command permissions answered with status 0x0124 while the
//! association goes on, C-MOVE destinations, and the audit records.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::dicom::{dcmtk, pynetdicom, StoreScp, ECHOSCU, FINDSCU, STORESCU};
use support::gateway::{tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::{fingerprint, Ca, Leaf};
use support::process::{free_port, wait_until};

struct Setup {
    ca: Ca,
    port: u16,
    audit: PathBuf,
    modality1: Leaf,
    ws1: Leaf,
    gateway: Gateway,
}

/// MODALITY1 (bound by fingerprint) may echo and store; WS1 (bound by CN) may echo, find
/// and move to WS1 only. Nothing is always allowed for unknown AE titles.
fn gateway(dir: &Path, upstream_port: u16, called: &str) -> Setup {
    let ca = Ca::new(dir, "Test CA");
    let server = ca.server(dir, "server");
    let modality1 = ca.client(dir, "MODALITY1");
    let ws1 = ca.client(dir, "WS1");
    let port = free_port();
    let audit = dir.join("audit.jsonl");
    let toml = format!(
        r#"{tls}
[http]
enabled = false
[audit]
path = {audit:?}
[dicom]
listen = "127.0.0.1:{port}"
upstream = "127.0.0.1:{upstream_port}"
called_aet = "{called}"
always_allow_echo = false
always_allow_store = false
[dicom.modalities.ct1]
aet = "MODALITY1"
certificate = "{fp}"
allow = ["echo", "store"]
[dicom.modalities.ws]
aet = "WS1"
certificate = "WS1"
allow = ["echo", "find", "move"]
move_destinations = ["WS1"]
"#,
        tls = tls_section(
            &server,
            &format!("client_ca = {:?}", ca.path.display().to_string())
        ),
        audit = audit.display().to_string(),
        fp = fingerprint(&modality1.cert),
    );
    let gateway = Gateway::start(dir, &toml);
    Setup {
        ca,
        port,
        audit,
        modality1,
        ws1,
        gateway,
    }
}

fn orthanc(dir: &Path) -> Orthanc {
    Orthanc::start(
        dir,
        serde_json::json!({
            "DicomModalities": {
                "ct1": ["MODALITY1", "127.0.0.1", free_port()],
                "ws1": ["WS1", "127.0.0.1", free_port()],
            }
        }),
    )
}

fn dcmtk_args(s: &Setup, calling: &str, called: &str, cert: Option<&Leaf>) -> Vec<String> {
    support::dicom::dcmtk_args(calling, called, &s.ca.path, cert)
}

fn py_args(s: &Setup, calling: &str, cert: Option<&Leaf>) -> Vec<String> {
    let mut args = vec![
        "--ca".to_string(),
        s.ca.path.display().to_string(),
        "--calling".into(),
        calling.into(),
    ];
    if let Some(leaf) = cert {
        args.extend([
            "--cert".to_string(),
            leaf.cert.display().to_string(),
            "--key".into(),
            leaf.key.display().to_string(),
        ]);
    }
    args
}

/// Audit records of `kind`, waiting until `pred` holds for one of them.
fn audit_record(
    s: &Setup,
    kind: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut found = None;
    wait_until(
        &format!("a {kind} audit record"),
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&s.audit).unwrap_or_default();
            found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|r| r["kind"] == kind && pred(r));
            found.is_some()
        },
    );
    found.unwrap_or_default()
}

#[test]
fn unknown_calling_ae_gets_reason_3_and_wrong_called_ae_reason_7() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = orthanc(dir.path());
    let s = gateway(dir.path(), orthanc.dicom_port, "ORTHANC");

    let (status, out) = dcmtk(
        ECHOSCU,
        s.port,
        &dcmtk_args(&s, "NOBODY", "ORTHANC", Some(&s.modality1)),
        &[],
    );
    assert!(
        !status.success() && out.contains("Calling AE Title Not Recognized"),
        "{out}"
    );
    let (status, out) = dcmtk(
        ECHOSCU,
        s.port,
        &dcmtk_args(&s, "MODALITY1", "NOTORTHANC", Some(&s.modality1)),
        &[],
    );
    assert!(
        !status.success() && out.contains("Called AE Title Not Recognized"),
        "{out}"
    );

    let (status, out) = pynetdicom(s.port, &py_args(&s, "NOBODY", None), "echo", &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("REJECTED 1 1 3"), "{out}");

    // The gateway keeps serving the legitimate modality.
    let (status, out) = dcmtk(
        ECHOSCU,
        s.port,
        &dcmtk_args(&s, "MODALITY1", "ORTHANC", Some(&s.modality1)),
        &[],
    );
    assert!(
        status.success() && out.contains("Echo Response (Success)"),
        "{out}"
    );
    let rj = audit_record(&s, "dicom.association", |r| r["called_ae"] == "NOTORTHANC");
    assert_eq!(rj["outcome"], "rejected");
    assert_eq!(rj["rejection"], serde_json::json!([1, 1, 7]));
    assert!(rj["tls_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

#[test]
fn an_ae_title_claimed_with_another_certificate_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = orthanc(dir.path());
    let s = gateway(dir.path(), orthanc.dicom_port, "ORTHANC");
    let other = s.ca.client(dir.path(), "ROGUE");
    // MODALITY1 with WS1's certificate, with an unrelated one, with none; and WS1's
    // certificate claiming an unknown title.
    for (calling, cert) in [
        ("MODALITY1", Some(&s.ws1)),
        ("MODALITY1", Some(&other)),
        ("MODALITY1", None),
        ("WS2", Some(&s.ws1)),
    ] {
        let (status, out) = dcmtk(
            ECHOSCU,
            s.port,
            &dcmtk_args(&s, calling, "ORTHANC", cert),
            &[],
        );
        assert!(
            !status.success() && out.contains("Calling AE Title Not Recognized"),
            "{calling}: {out}"
        );
    }
    let (status, out) = pynetdicom(s.port, &py_args(&s, "MODALITY1", Some(&s.ws1)), "echo", &[]);
    assert!(
        status.code() == Some(2) && out.contains("REJECTED 1 1 3"),
        "{out}"
    );
    // Each certificate works for its own title.
    for (calling, cert) in [("MODALITY1", &s.modality1), ("WS1", &s.ws1)] {
        let (status, out) = pynetdicom(s.port, &py_args(&s, calling, Some(cert)), "echo", &[]);
        assert!(
            status.success() && out.contains("ECHO 0x0000"),
            "{calling}: {out}"
        );
    }
    let r = audit_record(&s, "dicom.association", |r| {
        r["reason"] == "certificate_mismatch"
    });
    assert_eq!(r["calling_ae"], "MODALITY1");
}

#[test]
fn refused_find_gets_0124_and_the_association_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = orthanc(dir.path());
    let s = gateway(dir.path(), orthanc.dicom_port, "ORTHANC");
    let (ct, mr) = (
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
    );
    let steps = [
        format!("store:{}", ct.display()),
        "find".to_string(),
        format!("store:{}", mr.display()),
        "echo".to_string(),
    ];
    let steps: Vec<PathBuf> = steps.iter().map(PathBuf::from).collect();
    let (status, out) = pynetdicom(
        s.port,
        &py_args(&s, "MODALITY1", Some(&s.modality1)),
        "seq",
        &steps,
    );
    assert_eq!(status.code(), Some(4), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('W')).collect();
    assert!(lines.iter().any(|l| l.starts_with("FIND 0x0124")), "{out}");
    assert_eq!(out.matches("STORE 0x0000").count(), 2, "{out}");
    assert!(
        out.contains("ECHO 0x0000") && !out.contains("ABORTED"),
        "{out}"
    );

    // dcmtk: findscu exits 0 on 0x0124, so assert its -v output.
    let mut args = dcmtk_args(&s, "MODALITY1", "ORTHANC", Some(&s.modality1));
    args.extend(["-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID"].map(String::from));
    let (_, out) = dcmtk(FINDSCU, s.port, &args, &[]);
    assert!(
        out.contains("Received Final Find Response (Unknown Status: 0x124)"),
        "{out}"
    );
    // WS1 may find: Orthanc answers.
    let mut args = dcmtk_args(&s, "WS1", "ORTHANC", Some(&s.ws1));
    args.extend(["-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID"].map(String::from));
    let (status, out) = dcmtk(FINDSCU, s.port, &args, &[]);
    assert!(
        status.success() && out.contains("Received Final Find Response (Success)"),
        "{out}"
    );
    // WS1 may not store: storescu sees the refusal.
    let (status, out) = dcmtk(
        STORESCU,
        s.port,
        &dcmtk_args(&s, "WS1", "ORTHANC", Some(&s.ws1)),
        &[ct],
    );
    assert!(
        !status.success() && out.contains("Unknown Status: 0x124"),
        "{out}"
    );

    let refusal = audit_record(&s, "dicom.refusal", |r| r["command"] == "C-FIND");
    assert_eq!(refusal["status"], "0x0124");
    assert_eq!(refusal["modality"], "ct1");
    let assoc = audit_record(&s, "dicom.association", |r| {
        r["refused"] == 1 && r["calling_ae"] == "MODALITY1"
    });
    assert_eq!(assoc["outcome"], "accepted");
    assert_eq!(assoc["commands"]["C-STORE"], 2);
    assert_eq!(assoc["commands"]["C-FIND"], 1);
    assert!(assoc["sop_classes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == "1.2.840.10008.5.1.4.1.1.2"));
    assert!(assoc["bytes_from_requestor"].as_u64().unwrap() > 40_000);
}

#[test]
fn move_to_an_unlisted_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = orthanc(dir.path());
    let s = gateway(dir.path(), orthanc.dicom_port, "ORTHANC");
    let steps: Vec<PathBuf> = ["move:EVIL", "move:WS1", "echo"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let (_, out) = pynetdicom(s.port, &py_args(&s, "WS1", Some(&s.ws1)), "seq", &steps);
    assert!(out.contains("MOVE 0x0124 EVIL"), "{out}");
    // WS1 is listed: the request reaches Orthanc, which answers with its own status.
    let ws1 = out
        .lines()
        .find(|l| l.starts_with("MOVE 0x") && l.ends_with(" WS1"))
        .unwrap_or_else(|| panic!("no answer to the move to WS1: {out}"));
    assert!(!ws1.contains("0x0124"), "{out}");
    assert!(
        out.contains("ECHO 0x0000") && !out.contains("ABORTED"),
        "{out}"
    );
    let r = audit_record(&s, "dicom.refusal", |r| r["command"] == "C-MOVE");
    assert_eq!(r["move_destination"], "EVIL");
    assert_eq!(r["reason"], "move_destination_not_allowed");
}

#[test]
fn storescp_behind_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(dir.path(), "STORESCP", None);
    let s = gateway(dir.path(), scp.port, "STORESCP");
    let ct = support::pydicom_file("CT_small.dcm");
    let (status, out) = dcmtk(
        STORESCU,
        s.port,
        &dcmtk_args(&s, "MODALITY1", "STORESCP", Some(&s.modality1)),
        std::slice::from_ref(&ct),
    );
    assert!(
        status.success() && out.contains("Store Response (Success)"),
        "{out}"
    );
    assert_eq!(scp.received().len(), 1);
    // WS1 may echo but not store; the refused data set never reaches storescp.
    let (status, out) = dcmtk(
        ECHOSCU,
        s.port,
        &dcmtk_args(&s, "WS1", "STORESCP", Some(&s.ws1)),
        &[],
    );
    assert!(
        status.success() && out.contains("Echo Response (Success)"),
        "{out}"
    );
    let (status, out) = dcmtk(
        STORESCU,
        s.port,
        &dcmtk_args(&s, "WS1", "STORESCP", Some(&s.ws1)),
        &[ct],
    );
    assert!(
        !status.success() && out.contains("Unknown Status: 0x124"),
        "{out}"
    );
    assert_eq!(scp.received().len(), 1, "{}", s.gateway.log());
}
