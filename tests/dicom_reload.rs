//! SIGHUP reloads the DICOM policy: a modality's permissions change for new associations
//! without a restart; a broken file changes nothing.

mod support;

use std::time::Duration;

use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{dicom_only, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::free_port;

#[test]
fn sighup_switches_modality_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let port = free_port();
    let config = |allow: &str| {
        dicom_only(
            &server,
            "watch = false",
            port,
            orthanc.dicom_port,
            &format!("always_allow_echo = false\n[dicom.modalities.ct]\naet = \"CT1\"\nallow = [{allow}]\n"),
        )
    };
    let mut gw = Gateway::start(dir.path(), &config("\"echo\""));
    let args = dcmtk_args("CT1", "ORTHANC", &ca.path, None);
    let (_, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(out.contains("Echo Response (Success)"), "{out}");

    std::fs::write(&gw.config, config("\"store\"")).unwrap();
    gw.proc.signal("HUP");
    gw.proc
        .wait_for_output("configuration reloaded", Duration::from_secs(30));
    let (_, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(out.contains("Unknown Status: 0x124"), "{out}");

    std::fs::write(&gw.config, config("\"teleport\"")).unwrap();
    gw.proc.signal("HUP");
    gw.proc
        .wait_for_output("configuration reload failed", Duration::from_secs(30));
    let (_, out) = dcmtk(ECHOSCU, port, &args, &[]);
    assert!(out.contains("Unknown Status: 0x124"), "{out}");
}
