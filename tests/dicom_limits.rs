//! Association limits: a modality at its concurrency limit and a source over its
//! association rate get a transient A-ASSOCIATE-RJ (2/3/2); the slot comes back when the
//! association ends.

mod support;

use std::time::Duration;

use support::dicom::{dcmtk, dcmtk_args, dcmtk_tls, ECHOSCU};
use support::gateway::{dicom_only, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::{free_port, wait_until};
use support::raw::{fixture, rq_with_titles, RawClient};

/// Orthanc behind a DICOM-only gateway with `dicom_extra` in its `[dicom]` table.
struct Setup {
    ca: Ca,
    port: u16,
    gateway: Gateway,
    _orthanc: Orthanc,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(dicom_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
        let ca = Ca::new(dir.path(), "Test CA");
        let server = ca.server(dir.path(), "server");
        let port = free_port();
        let toml = dicom_only(&server, "", port, orthanc.dicom_port, dicom_extra);
        let gateway = Gateway::start(dir.path(), &toml);
        Setup {
            ca,
            port,
            gateway,
            _orthanc: orthanc,
            _dir: dir,
        }
    }
}

#[test]
fn modality_concurrency_limit_gives_a_transient_rejection_until_released() {
    let s = Setup::start(
        "[dicom.modalities.ct]\naet = \"CT1\"\nallow = [\"echo\"]\nmax_associations = 1\n",
    );
    let (ca, port) = (&s.ca, s.port);
    let args = dcmtk_args("CT1", "ORTHANC", &ca.path, None);

    let mut held = RawClient::connect(port, &ca.path, None);
    held.send(&rq_with_titles(
        "pynetdicom-echo-A-ASSOCIATE-RQ.bin",
        "CT1",
        "ORTHANC",
    ));
    assert_eq!(
        held.read_pdu().map(|p| p[0]),
        Some(0x02),
        "{}",
        s.gateway.log()
    );
    let (status, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(
        !status.success() && out.contains("Rejected Transient"),
        "{out}"
    );
    // Another AE title is not affected.
    let mut other = args.clone();
    other[1] = "OTHER".into();
    let (status, out) = dcmtk(ECHOSCU, port, &other, &[]);
    assert!(status.success(), "{out}");

    held.send(&fixture("A-RELEASE-RQ.bin"));
    assert_eq!(held.read_pdu().map(|p| p[0]), Some(0x06));
    drop(held);
    wait_until("the slot to come back", Duration::from_secs(30), || {
        dcmtk(ECHOSCU, port, &args, &[]).0.success()
    });
}

#[test]
fn association_rate_per_ip_gives_a_transient_rejection() {
    let s = Setup::start("association_rate_per_ip = \"2/h\"\n");
    let (ca, port) = (&s.ca, s.port);
    let mut args = vec!["-aec".to_string(), "ORTHANC".into()];
    args.extend(dcmtk_tls(&ca.path, None));
    for _ in 0..2 {
        let (status, out) = dcmtk(ECHOSCU, port, &args, &[]);
        assert!(status.success(), "{out}");
    }
    let (status, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(
        !status.success() && out.contains("Rejected Transient"),
        "{out}"
    );
}
