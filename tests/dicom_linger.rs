//! A requestor still sending when the gateway refuses it reads the refusal instead of a
//! TCP reset (`server::linger`, the same lingering close as HTTP's): an oversized first
//! PDU gets its A-ABORT, an RQ followed by pipelined bytes its A-ASSOCIATE-RJ, on the TLS
//! listener and on an outbound tunnel alike. Abuse: the drain is bounded, so a requestor
//! that never stops sending is still cut off (bytes: `server::linger` unit tests).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::gateway::{dicom_only, Gateway};
use support::pki::{Ca, Leaf};
use support::process::free_port;
use support::raw::{associate_rq, RawClient};

const ECHO: &str = "1.2.840.10008.1.1";
const RJ: u8 = 0x03;
const ABORT: u8 = 0x07;
/// Sent after the refused first PDU: under the drain bound (16 MiB), over what loopback's
/// socket buffers hold, so a close with unread data resets the connection mid-write.
const TRAILING: usize = 8 * 1024 * 1024;

struct Edge {
    inbound: u16,
    outbound: u16,
    ca: Ca,
    _gw: Gateway,
}

/// Both listeners admit only the called AE "ORTHANC" / "REMOTE"; nothing behind them is
/// ever reached.
fn edge(dir: &Path) -> Edge {
    let ca = Ca::new(dir, "Edge CA");
    let server = ca.server(dir, "localhost");
    let (inbound, outbound) = (free_port(), free_port());
    let dicom = format!(
        "called_aet = \"ORTHANC\"\n[[dicom.outbound]]\nlisten = \"127.0.0.1:{outbound}\"\n\
         remote = \"127.0.0.1:{}\"\nserver_name = \"localhost\"\nca = {:?}\nremote_aets = [\"REMOTE\"]\n",
        free_port(),
        ca.path.display().to_string()
    );
    let gw = Gateway::start(dir, &dicom_only(&server, "", inbound, free_port(), &dicom));
    Edge {
        inbound,
        outbound,
        ca,
        _gw: gw,
    }
}

/// An A-ASSOCIATE-RQ header announcing 4 MiB (over the 64 KiB bound on control PDUs).
fn oversized_rq_header() -> Vec<u8> {
    let mut header = vec![0x01, 0];
    header.extend_from_slice(&(4u32 << 20).to_be_bytes());
    header
}

/// Send `first`, then `TRAILING` more bytes; every write must succeed (no reset).
fn send_and_keep_sending(mut write: impl FnMut(&[u8]), first: &[u8]) {
    write(first);
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..TRAILING / chunk.len() {
        write(&chunk);
    }
}

fn tls(e: &Edge) -> RawClient {
    let mut client = RawClient::connect(e.inbound, &e.ca.path, None::<&Leaf>);
    client.handshake().expect("handshake");
    client
}

fn plain(e: &Edge) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", e.outbound)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    tcp
}

fn read_pdu(tcp: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 6];
    tcp.read_exact(&mut header).expect("a PDU, not a reset");
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    let mut pdu = header.to_vec();
    pdu.resize(6 + len, 0);
    tcp.read_exact(&mut pdu[6..]).expect("the whole PDU");
    pdu
}

#[test]
fn an_oversized_first_pdu_still_being_sent_gets_its_a_abort() {
    let dir = tempfile::tempdir().unwrap();
    let e = edge(dir.path());

    let mut client = tls(&e);
    send_and_keep_sending(|b| client.send(b), &oversized_rq_header());
    let pdu = client
        .read_pdu()
        .expect("inbound: the A-ABORT, not a reset");
    // PS3.8 §9.3.8: source 2 (service provider), reason 6 (invalid parameter value).
    assert_eq!((pdu[0], pdu[8], pdu[9]), (ABORT, 2, 6), "inbound: {pdu:?}");

    let mut local = plain(&e);
    send_and_keep_sending(
        |b| local.write_all(b).expect("outbound: write"),
        &oversized_rq_header(),
    );
    let pdu = read_pdu(&mut local);
    assert_eq!((pdu[0], pdu[8], pdu[9]), (ABORT, 2, 6), "outbound: {pdu:?}");
}

#[test]
fn a_refused_rq_followed_by_more_bytes_gets_its_a_associate_rj() {
    let dir = tempfile::tempdir().unwrap();
    let e = edge(dir.path());
    let rq = associate_rq(b"SCU", b"ELSEWHERE", &[ECHO]);

    let mut client = tls(&e);
    send_and_keep_sending(|b| client.send(b), &rq);
    let pdu = client.read_pdu().expect("inbound: the RJ, not a reset");
    // PS3.8 §9.3.4: rejected-permanent, service user, called AE title not recognised.
    assert_eq!(
        (pdu[0], pdu[7], pdu[8], pdu[9]),
        (RJ, 1, 1, 7),
        "inbound: {pdu:?}"
    );

    let mut local = plain(&e);
    send_and_keep_sending(|b| local.write_all(b).expect("outbound: write"), &rq);
    let pdu = read_pdu(&mut local);
    assert_eq!(
        (pdu[0], pdu[7], pdu[8], pdu[9]),
        (RJ, 1, 1, 7),
        "outbound: {pdu:?}"
    );
}
