//! Outbound tunnel (stunnel's client mode): plain storescu -> pacsgate -> storescp over TLS
//! with a required client certificate; without our certificate the remote refuses; with
//! the remote down the local SCU gets a transient rejection.

mod support;

use std::path::Path;

use support::dicom::{dcmtk, RemoteSite, StoreScp, ECHOSCU, STORESCU};
use support::gateway::Gateway;
use support::pki::{Ca, Leaf};
use support::process::free_port;

fn tunnel(dir: &Path, remote_port: u16, ca: &Ca, client: Option<&Leaf>) -> (u16, Gateway) {
    let port = free_port();
    let identity = client
        .map(|l| {
            format!(
                "client_cert = {:?}\nclient_key = {:?}\n",
                l.cert.display().to_string(),
                l.key.display().to_string()
            )
        })
        .unwrap_or_default();
    let toml = format!(
        "[http]\nenabled = false\n[dicom]\nenabled = false\n[[dicom.outbound]]\nlisten = \"127.0.0.1:{port}\"\nremote = \"127.0.0.1:{remote_port}\"\nserver_name = \"localhost\"\nca = {:?}\n{identity}",
        ca.path.display().to_string()
    );
    (port, Gateway::start(dir, &toml))
}

#[test]
fn plain_scu_reaches_a_tls_scp_that_requires_our_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let RemoteSite { ca, ours, scp, .. } = RemoteSite::start(d);

    let (port, _gw) = tunnel(d, scp.port, &ca, Some(&ours));
    let args = ["-aec".to_string(), "REMOTE".into()];
    let files = [
        support::pydicom_file("CT_small.dcm"),
        support::pydicom_file("MR_small.dcm"),
    ];
    let (status, out) = dcmtk(STORESCU, port, &args, &files);
    assert!(status.success(), "{out}\n{}", scp.proc.output());
    assert_eq!(scp.received().len(), 2);

    // Without our client certificate, the remote refuses the handshake.
    let dir2 = tempfile::tempdir().unwrap();
    let (port2, _gw2) = tunnel(dir2.path(), scp.port, &ca, None);
    let (status, out) = dcmtk(ECHOSCU, port2, &args, &[]);
    assert!(
        !status.success(),
        "echo succeeded without a client certificate: {out}"
    );
    assert_eq!(scp.received().len(), 2);
}

#[test]
fn remote_with_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let real_ca = Ca::new(d, "Remote site CA");
    let impostor_ca = Ca::new(d, "Impostor CA");
    let impostor = impostor_ca.server(d, "impostor");
    let ours = real_ca.client(d, "PACSGATE");
    let scp = StoreScp::start(d, "REMOTE", Some((&impostor, &real_ca.path)));
    let (port, gw) = tunnel(d, scp.port, &real_ca, Some(&ours));
    let (status, out) = dcmtk(ECHOSCU, port, &["-aec".to_string(), "REMOTE".into()], &[]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("Rejected Transient"), "{out}");
    assert!(
        gw.log().contains("remote DICOM TLS peer unreachable"),
        "{}",
        gw.log()
    );
}

#[test]
fn remote_down_gives_a_transient_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Remote site CA");
    let (port, _gw) = tunnel(dir.path(), free_port(), &ca, None);
    let (status, out) = dcmtk(ECHOSCU, port, &["-aec".to_string(), "REMOTE".into()], &[]);
    assert!(!status.success());
    assert!(out.contains("Rejected Transient"), "{out}");
}
