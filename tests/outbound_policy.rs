//! Outbound tunnels under policy: only the listed remote AE titles may be called (others
//! get A-ASSOCIATE-RJ reason 7), and each association gets the same audit record as an
//! inbound one (command counts, remote certificate fingerprint).

mod support;

use std::time::Duration;

use support::dicom::{dcmtk, RemoteSite, ECHOSCU, STORESCU};
use support::gateway::Gateway;
use support::pki::fingerprint;
use support::process::{free_port, wait_until};

#[test]
fn only_listed_remote_aets_are_reachable_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let RemoteSite {
        ca,
        server: remote_server,
        ours,
        scp,
    } = RemoteSite::start(d);
    let port = free_port();
    let audit = d.join("audit.jsonl");
    let toml = format!(
        r#"[http]
enabled = false
[audit]
path = {audit:?}
[dicom]
enabled = false
[[dicom.outbound]]
listen = "127.0.0.1:{port}"
remote = "127.0.0.1:{}"
server_name = "localhost"
ca = {:?}
client_cert = {:?}
client_key = {:?}
remote_aets = ["REMOTE"]
"#,
        scp.port,
        ca.path.display().to_string(),
        ours.cert.display().to_string(),
        ours.key.display().to_string(),
        audit = audit.display().to_string(),
    );
    let _gw = Gateway::start(d, &toml);

    let (status, out) = dcmtk(
        ECHOSCU,
        port,
        &["-aec".to_string(), "ELSEWHERE".into()],
        &[],
    );
    assert!(
        !status.success() && out.contains("Called AE Title Not Recognized"),
        "{out}"
    );
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
    ];
    let (status, out) = dcmtk(
        STORESCU,
        port,
        &["-aec".to_string(), "remote".into()],
        &files,
    );
    assert!(status.success(), "{out}");
    assert_eq!(scp.received().len(), 2);

    let mut records = Vec::new();
    wait_until("two association records", Duration::from_secs(30), || {
        records = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["kind"] == "dicom.association")
            .collect();
        records.len() >= 2
    });
    let rejected = records.iter().find(|r| r["outcome"] == "rejected").unwrap();
    assert_eq!(rejected["called_ae"], "ELSEWHERE");
    assert_eq!(rejected["listener"], "dicom.outbound[0]");
    let stored = records.iter().find(|r| r["outcome"] == "accepted").unwrap();
    assert_eq!(stored["commands"]["C-STORE"], 2);
    assert_eq!(stored["tls_fingerprint"], fingerprint(&remote_server.cert));
}
