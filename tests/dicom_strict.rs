//! Issue 9, findings 3 and 4, end to end through the real gateway in front of Orthanc
//! 1.10.1 (which reads with dcmtk: the first of two equal tags wins, a NUL ends an AE
//! title): a repeated Command Field or Move Destination, `CT1\0SPOOF` as calling AE, and
//! a Move Destination `\0WS1`. Each is refused at the gateway; nothing reaches Orthanc's
//! C-FIND or C-MOVE, and no file reaches the storescp the attacker named.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::dicom::{pynetdicom, StoreScp};
use support::gateway::{tls_section, Gateway};
use support::mutate::{self, el, us};
use support::orthanc::Orthanc;
use support::pki::{Ca, Leaf};
use support::process::{free_port, wait_until};
use support::raw::{associate_rq, command_field_of, p_data, status_of, RawClient};

const FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
const MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
/// The same UIDs as command-set values: NUL-padded to even length (PS3.5 §9.1).
const FIND_VALUE: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.1\0";
const MOVE_VALUE: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.2\0";
const VERIFICATION: &str = "1.2.840.10008.1.1";
const PDU_AC: u8 = 2;
const PDU_RJ: u8 = 3;
const PDU_P_DATA: u8 = 4;
const PDU_ABORT: u8 = 7;
const C_FIND_RSP: u16 = 0x8020;
const C_MOVE_RSP: u16 = 0x8021;
/// CT_small.dcm's Patient ID, the study the moves ask for.
const PATIENT: &[u8] = b"1CT1";

struct Setup {
    ca: Ca,
    ct1: Leaf,
    port: u16,
    audit: PathBuf,
    gateway: Gateway,
    evil: StoreScp,
    ws1: StoreScp,
    _orthanc: Orthanc,
}

/// ECHO1 may only echo; WS1 may move, to WS1 only; CT1 is bound to its certificate.
/// Unknown AE titles may echo and store. Orthanc knows all of them and EVIL (a storescp),
/// and holds CT_small.dcm.
fn setup(dir: &Path) -> Setup {
    let evil = StoreScp::start(dir, "EVIL", None);
    let ws1 = StoreScp::start(dir, "WS1", None);
    let orthanc = Orthanc::start(
        dir,
        serde_json::json!({ "DicomModalities": {
            "echo1": ["ECHO1", "127.0.0.1", free_port()],
            "ct1": ["CT1", "127.0.0.1", free_port()],
            "ws1": ["WS1", "127.0.0.1", ws1.port],
            "evil": ["EVIL", "127.0.0.1", evil.port],
        }}),
    );
    let ct = support::pydicom_file("CT_small.dcm");
    let (status, out, _) = support::gateway::curl(&[
        "-sS",
        "--data-binary",
        &format!("@{}", ct.display()),
        &format!("http://127.0.0.1:{}/instances", orthanc.http_port),
    ]);
    assert!(status.success() && out.contains("\"Status\""), "{out}");

    let ca = Ca::new(dir, "Test CA");
    let server = ca.server(dir, "server");
    let ct1 = ca.client(dir, "CT1");
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
upstream = "127.0.0.1:{upstream}"
called_aet = "ORTHANC"
always_allow_echo = true
always_allow_store = true
[dicom.modalities.echo1]
aet = "ECHO1"
allow = ["echo"]
[dicom.modalities.ct1]
aet = "CT1"
certificate = "CT1"
allow = ["echo", "store", "find", "move", "get"]
[dicom.modalities.ws1]
aet = "WS1"
allow = ["echo", "move"]
move_destinations = ["WS1"]
"#,
        tls = tls_section(
            &server,
            &format!("client_ca = {:?}", ca.path.display().to_string())
        ),
        audit = audit.display().to_string(),
        upstream = orthanc.dicom_port,
    );
    let gateway = Gateway::start(dir, &toml);
    Setup {
        ca,
        ct1,
        port,
        audit,
        gateway,
        evil,
        ws1,
        _orthanc: orthanc,
    }
}

/// Associate through the gateway proposing `syntaxes` (context ids 1, 3, ...).
fn associate(s: &Setup, calling: &[u8], syntaxes: &[&str]) -> RawClient {
    let mut c = RawClient::connect(s.port, &s.ca.path, None);
    c.send(&associate_rq(calling, b"ORTHANC", syntaxes));
    let ac = c.read_pdu().expect("an answer to the RQ");
    assert_eq!(ac[0], PDU_AC, "{ac:?}\n{}", s.gateway.log());
    c
}

/// Implicit-VR identifier: Query/Retrieve Level PATIENT and a Patient ID (PS3.4 C.6.1).
fn identifier(patient: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (group, element, value) in [
        (0x0008u16, 0x0052u16, &b"PATIENT "[..]),
        (0x0010, 0x0020, patient),
    ] {
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// A command set on context `pcid` followed by its identifier.
fn send_request(c: &mut RawClient, pcid: u8, command: &[u8], patient: &[u8]) {
    c.send(&p_data(&[(pcid, 0x03, command)]));
    c.send(&p_data(&[(pcid, 0x02, &identifier(patient))]));
}

/// Every PDU until the final response to a request, an A-ABORT or the end.
fn answers(c: &mut RawClient) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(pdu) = c.read_pdu() {
        let last = pdu[0] != PDU_P_DATA || status_of(&pdu).is_some_and(|s| s != 0xff00);
        out.push(pdu);
        if last {
            break;
        }
    }
    out
}

fn c_move(destinations: &[&[u8]]) -> Vec<u8> {
    let mut elements = vec![el(0x0002, MOVE_VALUE), us(0x0100, 0x0021), us(0x0110, 1)];
    elements.extend(destinations.iter().map(|d| el(0x0600, d)));
    elements.extend([us(0x0700, 0), us(0x0800, 0x0001)]);
    mutate::build(&elements, &[])
}

fn audit_line(s: &Setup, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut found = None;
    wait_until("an audit record", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&s.audit).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| pred(r));
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn a_repeated_command_field_is_aborted_and_orthanc_never_answers_the_find() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    // C-FIND first (what dcmtk keeps), then C-ECHO (what pacsgate kept): from ECHO1,
    // which may only echo.
    let command = mutate::build(
        &[
            el(0x0002, FIND_VALUE),
            us(0x0100, 0x0020),
            us(0x0100, 0x0030),
            us(0x0110, 1),
            us(0x0700, 0),
            us(0x0800, 0x0001),
        ],
        &[],
    );
    let mut c = associate(&s, b"ECHO1", &[FIND, VERIFICATION]);
    send_request(&mut c, 1, &command, b"");
    let got = answers(&mut c);
    assert!(
        !got.iter().any(|p| command_field_of(p) == Some(C_FIND_RSP)),
        "Orthanc answered the C-FIND: {got:?}"
    );
    assert_eq!(got.last().map(|p| p[0]), Some(PDU_ABORT), "{got:?}");
    drop(c);
    let r = audit_line(&s, |r| {
        r["kind"] == "dicom.association" && r["calling_ae"] == "ECHO1"
    });
    assert_eq!(r["outcome"], "aborted", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("(0000,0100) is repeated"),
        "{r}"
    );
    assert!(r["commands"].get("C-ECHO").is_none(), "{r}");

    // The same command without the repeat is refused with 0x0124 as before, and a plain
    // echo still works: the gateway is strict, not broken.
    let single = mutate::build(
        &[
            el(0x0002, FIND_VALUE),
            us(0x0100, 0x0020),
            us(0x0110, 2),
            us(0x0700, 0),
            us(0x0800, 0x0001),
        ],
        &[],
    );
    let mut c = associate(&s, b"ECHO1", &[FIND, VERIFICATION]);
    send_request(&mut c, 1, &single, b"");
    let got = answers(&mut c);
    assert_eq!(
        got.last().and_then(|p| status_of(p)),
        Some(0x0124),
        "{got:?}"
    );
}

#[test]
fn a_repeated_move_destination_never_reaches_the_first_destination() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    // Control: a move to WS1 (allowed) delivers the study to the WS1 storescp, so an
    // empty EVIL below means the gateway stopped it.
    let mut c = associate(&s, b"WS1", &[MOVE]);
    send_request(&mut c, 1, &c_move(&[b"WS1 "]), PATIENT);
    let got = answers(&mut c);
    assert!(
        got.iter().any(|p| command_field_of(p) == Some(C_MOVE_RSP)),
        "{got:?}\n{}",
        s.gateway.log()
    );
    wait_until("the study at WS1", Duration::from_secs(30), || {
        !s.ws1.received().is_empty()
    });

    // EVIL first (what dcmtk keeps), WS1 second (what pacsgate kept).
    let mut c = associate(&s, b"WS1", &[MOVE]);
    send_request(&mut c, 1, &c_move(&[b"EVIL", b"WS1 "]), PATIENT);
    let got = answers(&mut c);
    assert!(
        !got.iter().any(|p| command_field_of(p) == Some(C_MOVE_RSP)),
        "Orthanc ran the C-MOVE: {got:?}"
    );
    assert_eq!(got.last().map(|p| p[0]), Some(PDU_ABORT), "{got:?}");
    assert!(s.evil.received().is_empty(), "the study went to EVIL");
    drop(c);
    let r = audit_line(&s, |r| {
        r["outcome"] == "aborted" && r["calling_ae"] == "WS1"
    });
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("(0000,0600) is repeated"),
        "{r}"
    );
}

#[test]
fn a_move_destination_with_a_nul_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    // pacsgate used to trim `\0WS1` to WS1 (allowed); dcmtk reads an empty title.
    for dest in [&b"\0WS1"[..], b"WS1\0", b"WS1\0EVIL"] {
        let mut c = associate(&s, b"WS1", &[MOVE]);
        send_request(&mut c, 1, &c_move(&[dest]), PATIENT);
        let got = answers(&mut c);
        assert!(
            !got.iter().any(|p| command_field_of(p) == Some(C_MOVE_RSP)),
            "{dest:?} reached Orthanc: {got:?}"
        );
        assert_eq!(
            got.last().map(|p| p[0]),
            Some(PDU_ABORT),
            "{dest:?}: {got:?}"
        );
    }
    assert!(s.evil.received().is_empty() && s.ws1.received().is_empty());
    // The gateway refused them (not Orthanc, which aborts on an empty destination too).
    let text = || std::fs::read_to_string(&s.audit).unwrap_or_default();
    wait_until("three audit records", Duration::from_secs(30), || {
        text().matches("\"kind\":\"dicom.association\"").count() >= 3
    });
    assert_eq!(
        text().matches("Move Destination (0000,0600)").count(),
        3,
        "{}",
        text()
    );
}

#[test]
fn ae_titles_with_a_nul_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    // `CT1\0SPOOF` without a certificate: Orthanc reads CT1, whose certificate binding
    // this would defeat. Calling AE -> reason 3, called AE -> reason 7 (PS3.8 §9.3.4).
    for (calling, called, reason) in [
        (&b"CT1\0SPOOF"[..], &b"ORTHANC"[..], 3u8),
        (b"CT1\0", b"ORTHANC", 3),
        (b" CT1", b"ORTHANC", 3),
        (b"CT1\\X", b"ORTHANC", 3),
        (b"ECHO1", b"\0ORTHANC", 7),
        (b"ECHO1", b"ORTHANC\x01", 7),
    ] {
        let mut c = RawClient::connect(s.port, &s.ca.path, None);
        c.send(&associate_rq(calling, called, &[VERIFICATION]));
        let rj = c.read_pdu().expect("an answer to the RQ");
        assert_eq!(
            (rj[0], rj[7], rj[8], rj[9]),
            (PDU_RJ, 1, 1, reason),
            "{calling:?} / {called:?}: {rj:?}"
        );
    }
    let r = audit_line(&s, |r| r["reason"] == "calling_ae_invalid");
    assert_eq!(r["calling_ae"], "CT1\\x00SPOOF");
    assert_eq!(r["rejection"], serde_json::json!([1, 1, 3]));
    // CT1 with its certificate is still admitted.
    let mut c = RawClient::connect(s.port, &s.ca.path, Some(&s.ct1));
    c.send(&associate_rq(b"CT1", b"ORTHANC", &[VERIFICATION]));
    assert_eq!(c.read_pdu().map(|p| p[0]), Some(PDU_AC));
}

#[test]
fn well_formed_traffic_still_passes_the_strict_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    // A C-GET: the requestor's C-STORE-RSPs (pynetdicom's encoding) are command sets the
    // gateway decodes too; the instance comes back through the gateway.
    let args: Vec<String> = [
        "--ca",
        &s.ca.path.display().to_string(),
        "--calling",
        "CT1",
        "--cert",
        &s.ct1.cert.display().to_string(),
        "--key",
        &s.ct1.key.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (status, out) = pynetdicom(s.port, &args, "get", &[PathBuf::from("1CT1")]);
    assert!(
        status.success() && out.contains("GET 0x0000 1"),
        "{out}\n{}",
        s.gateway.log()
    );
    // Titles with inner spaces and trailing padding are fine; case is not significant.
    let mut c = RawClient::connect(s.port, &s.ca.path, None);
    c.send(&associate_rq(b"MY SCU ", b"orthanc", &[VERIFICATION]));
    assert_eq!(c.read_pdu().map(|p| p[0]), Some(PDU_AC));
}
