//! Raw PDUs through the policy relay to Orthanc 1.10.1: commands fragmented across PDVs and
//! PDUs are reassembled (and refused or passed as a whole); malformed PDUs built from the
//! captured vectors get an A-ABORT, and the gateway keeps serving other associations.

mod support;

use std::path::Path;

use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{tls_section, Gateway};
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::process::free_port;
use support::raw::{fixture, p_data, rq_with_titles, status_of, RawClient};

const RQ: &str = "pynetdicom-echo-A-ASSOCIATE-RQ.bin";
const ECHO: &str = "dcmtk-C-ECHO-RQ.P-DATA-TF.bin";
const PDU_AC: u8 = 0x02;
const PDU_P_DATA: u8 = 0x04;
const PDU_RELEASE_RP: u8 = 0x06;
const PDU_ABORT: u8 = 0x07;

struct Setup {
    ca: Ca,
    port: u16,
    gateway: Gateway,
    _orthanc: Orthanc,
}

/// RAW1 may echo, RAW2 may only store; nothing is always allowed.
fn setup(dir: &Path) -> Setup {
    let orthanc = Orthanc::start(dir, serde_json::json!({}));
    let ca = Ca::new(dir, "Test CA");
    let server = ca.server(dir, "server");
    let port = free_port();
    let toml = format!(
        r#"{}
[http]
enabled = false
[dicom]
listen = "127.0.0.1:{port}"
upstream = "127.0.0.1:{}"
called_aet = "ORTHANC"
always_allow_echo = false
always_allow_store = false
[dicom.modalities.raw1]
aet = "RAW1"
allow = ["echo"]
[dicom.modalities.raw2]
aet = "RAW2"
allow = ["store"]
"#,
        tls_section(&server, ""),
        orthanc.dicom_port
    );
    let gateway = Gateway::start(dir, &toml);
    Setup {
        ca,
        port,
        gateway,
        _orthanc: orthanc,
    }
}

fn associate(s: &Setup, calling: &str) -> RawClient {
    let mut c = RawClient::connect(s.port, &s.ca.path, None);
    c.send(&rq_with_titles(RQ, calling, "ORTHANC"));
    let ac = c.read_pdu().expect("an answer to the RQ");
    assert_eq!(ac[0], PDU_AC, "{ac:?}\n{}", s.gateway.log());
    c
}

/// The C-ECHO-RQ command set split into four fragments over three PDUs, the middle PDU
/// carrying two PDVs and written in two pieces that split a PDV header. `cuts` are the
/// three split offsets in the 68-byte command set. Orthanc (dcmtk's DIMSE layer) only
/// reassembles commands split between elements (at 12, 38, 48, 58); the gateway copes
/// with any even split and aborts on an odd fragment (dcmtk would parse only the
/// fragments before it).
fn fragmented_echo(c: &mut RawClient, cuts: [usize; 3]) {
    let echo = fixture(ECHO);
    let cmd = &echo[12..];
    let [x, y, z] = cuts;
    let (a, b, d, e) = (&cmd[..x], &cmd[x..y], &cmd[y..z], &cmd[z..]);
    c.send(&p_data(&[(1, 0x01, a)]));
    let middle = p_data(&[(1, 0x01, b), (1, 0x01, d)]);
    c.send(&middle[..middle.len() - d.len() - 3]);
    c.send(&middle[middle.len() - d.len() - 3..]);
    c.send(&p_data(&[(1, 0x03, e)]));
}

fn expect_status(s: &Setup, c: &mut RawClient, want: u16) {
    let rsp = c.read_pdu().expect("a response");
    assert_eq!(rsp[0], PDU_P_DATA, "{rsp:?}\n{}", s.gateway.log());
    assert_eq!(status_of(&rsp), Some(want), "{rsp:?}");
}

fn expect_abort(c: &mut RawClient, what: &str) {
    let pdu = c.read_pdu();
    assert_eq!(
        pdu.as_ref().map(|p| p[0]),
        Some(PDU_ABORT),
        "{what}: {pdu:?}"
    );
    assert!(
        c.read_pdu().is_none(),
        "{what}: the gateway closes after A-ABORT"
    );
}

#[test]
fn fragmented_commands_are_reassembled_passed_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    let mut allowed = associate(&s, "RAW1");
    fragmented_echo(&mut allowed, [12, 38, 48]);
    expect_status(&s, &mut allowed, 0x0000);
    allowed.send(&fixture("A-RELEASE-RQ.bin"));
    assert_eq!(allowed.read_pdu().map(|p| p[0]), Some(PDU_RELEASE_RP));

    let mut refused = associate(&s, "RAW2");
    fragmented_echo(&mut refused, [6, 30, 42]);
    expect_status(&s, &mut refused, 0x0124);
    // The association goes on: a second (whole) command is judged too, then a release.
    refused.send(&fixture(ECHO));
    expect_status(&s, &mut refused, 0x0124);
    refused.send(&fixture("A-RELEASE-RQ.bin"));
    assert_eq!(refused.read_pdu().map(|p| p[0]), Some(PDU_RELEASE_RP));

    // An odd first fragment is refused as soon as it arrives: the gateway aborts and
    // closes, so nothing more is written (a later write would race the close).
    let mut odd = associate(&s, "RAW1");
    let echo = fixture(ECHO);
    odd.send(&p_data(&[(1, 0x01, &echo[12..17])]));
    expect_abort(&mut odd, "command fragments of odd length");
}

#[test]
fn malformed_pdus_get_a_abort_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    let echo = fixture(ECHO);

    // A PDV whose item length overruns its P-DATA-TF (PS3.8 §9.3.5).
    let mut overrun = echo.clone();
    overrun[6..10].copy_from_slice(&0x1000u32.to_be_bytes());
    // A P-DATA-TF longer than the maximum the acceptor negotiated.
    let mut too_long = echo[..12].to_vec();
    too_long[2..6].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    // A command set that is not group 0000 (PS3.7 §6.3.1).
    let bad_command = p_data(&[(1, 0x03, &[8, 0, 0x10, 0, 0, 0, 0, 0])]);
    // An unrecognised PDU type, and a second A-ASSOCIATE-RQ inside the association.
    let unknown_type = vec![0x09, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    let second_rq = rq_with_titles(RQ, "RAW1", "ORTHANC");
    // A PDV item length below 2 (no room for pcid and control byte).
    let short_pdv = vec![4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3];
    for (what, bytes) in [
        ("PDV overrun", overrun),
        ("PDU above the negotiated maximum", too_long),
        ("command set outside group 0000", bad_command),
        ("unknown PDU type", unknown_type),
        ("A-ASSOCIATE-RQ inside the association", second_rq),
        ("PDV item length 1", short_pdv),
    ] {
        let mut c = associate(&s, "RAW1");
        c.send(&bytes);
        expect_abort(&mut c, what);
    }

    // Before the association: a P-DATA-TF first, and an RQ whose items overrun it.
    let mut c = RawClient::connect(s.port, &s.ca.path, None);
    c.send(&echo);
    expect_abort(&mut c, "P-DATA-TF instead of an RQ");
    let mut bad_rq = rq_with_titles(RQ, "RAW1", "ORTHANC");
    bad_rq[77] = 0xff;
    let mut c = RawClient::connect(s.port, &s.ca.path, None);
    c.send(&bad_rq);
    expect_abort(&mut c, "RQ item overrun");

    // Others are still served.
    let args = dcmtk_args("RAW1", "ORTHANC", &s.ca.path, None);
    let (status, out) = dcmtk(ECHOSCU, s.port, &args, &[]);
    assert!(
        status.success() && out.contains("Echo Response (Success)"),
        "{out}\n{}",
        s.gateway.log()
    );
}
