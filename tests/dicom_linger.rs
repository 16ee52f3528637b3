//! A requestor still sending when the gateway refuses it reads the refusal instead of a
//! TCP reset (`server::linger`, the same lingering close as HTTP's): an oversized first
//! PDU gets its A-ABORT, an RQ followed by pipelined bytes its A-ASSOCIATE-RJ, and an
//! association the gateway aborts mid-stream its A-ABORT, on the TLS listener and on an
//! outbound tunnel alike. Abuse: the drain is bounded, so a requestor that never stops
//! sending is still cut off (here by bytes; by time: `server::linger` unit tests).

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::gateway::{read_pdu, Edge};
use support::pki::Ca;
use support::process::free_port;
use support::raw::{associate_rq, p_data};
use support::silent::SilentPeer;

const ECHO: &str = "1.2.840.10008.1.1";
const RJ: u8 = 0x03;
const ABORT: u8 = 0x07;
/// Sent after the refused PDU: under the drain bound (16 MiB), over what loopback's
/// socket buffers hold, so a close with unread data resets the connection mid-write.
const TRAILING: usize = 8 * 1024 * 1024;
/// Both listeners admit only the called AE "ORTHANC" / "REMOTE".
const DICOM: &str = "called_aet = \"ORTHANC\"";
const TUNNEL: &str = "remote_aets = [\"REMOTE\"]";

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

/// Each listener gets `first`, then megabytes more, and must answer with a PDU whose bytes
/// at `fields` are `expected`.
fn both_read_the_refusal(e: &Edge, first: &[u8], fields: [usize; 3], expected: [u8; 3]) {
    let pick = |pdu: &[u8]| fields.map(|i| pdu.get(i).copied().unwrap_or(0));
    let mut client = e.tls_client();
    send_and_keep_sending(|b| client.send(b), first);
    let pdu = client
        .read_pdu()
        .expect("inbound: the refusal, not a reset");
    assert_eq!(pick(&pdu), expected, "inbound: {pdu:?}");

    let mut local = e.tunnel_client();
    send_and_keep_sending(|b| local.write_all(b).expect("outbound: write"), first);
    let pdu = read_pdu(&mut local);
    assert_eq!(pick(&pdu), expected, "outbound: {pdu:?}");
}

#[test]
fn an_oversized_first_pdu_still_being_sent_gets_its_a_abort() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edge::start(
        dir.path(),
        free_port(),
        (free_port(), None),
        (DICOM, TUNNEL),
    );
    // PS3.8 §9.3.8: A-ABORT, source 2 (service provider), reason 6 (invalid parameter).
    both_read_the_refusal(&e, &oversized_rq_header(), [0, 8, 9], [ABORT, 2, 6]);
}

#[test]
fn a_refused_rq_followed_by_more_bytes_gets_its_a_associate_rj() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edge::start(
        dir.path(),
        free_port(),
        (free_port(), None),
        (DICOM, TUNNEL),
    );
    let rq = associate_rq(b"SCU", b"ELSEWHERE", &[ECHO]);
    // PS3.8 §9.3.4: rejected-permanent, service user, called AE title not recognised.
    both_read_the_refusal(&e, &rq, [0, 7, 9], [RJ, 1, 7]);
}

#[test]
fn an_association_aborted_mid_stream_while_the_requestor_sends_gets_its_a_abort() {
    let dir = tempfile::tempdir().unwrap();
    // Acceptors that never answer: the P-DATA-TF behind the RQ comes before any AC, which
    // PS3.8 §9.2 does not allow (A-ABORT, reason 2: unexpected PDU).
    let pacs = SilentPeer::tcp();
    let remote_ca = Ca::new(dir.path(), "Remote CA");
    let remote = SilentPeer::tls(&remote_ca.server(dir.path(), "remote"));
    let e = Edge::start(
        dir.path(),
        pacs.port,
        (remote.port, Some(&remote_ca.path)),
        (DICOM, TUNNEL),
    );
    let mut inbound = associate_rq(b"SCU", b"ORTHANC", &[ECHO]);
    let mut outbound = associate_rq(b"SCU", b"REMOTE", &[ECHO]);
    let early = p_data(&[(1, 0x03, &[0u8; 64])]);
    inbound.extend_from_slice(&early);
    outbound.extend_from_slice(&early);

    let mut client = e.tls_client();
    send_and_keep_sending(|b| client.send(b), &inbound);
    let pdu = client
        .read_pdu()
        .expect("inbound: the A-ABORT, not a reset");
    assert_eq!((pdu[0], pdu[9]), (ABORT, 2), "inbound: {pdu:?}");

    let mut local = e.tunnel_client();
    send_and_keep_sending(|b| local.write_all(b).expect("outbound: write"), &outbound);
    let pdu = read_pdu(&mut local);
    assert_eq!((pdu[0], pdu[9]), (ABORT, 2), "outbound: {pdu:?}");
    drop((pacs, remote));
}

#[test]
fn a_requestor_that_never_stops_sending_is_cut_off_at_the_drain_bound() {
    let dir = tempfile::tempdir().unwrap();
    let e = Edge::start(
        dir.path(),
        free_port(),
        (free_port(), None),
        (DICOM, TUNNEL),
    );
    let mut local = e.tunnel_client();
    local
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut sent = oversized_rq_header().len();
    local.write_all(&oversized_rq_header()).expect("header");
    let chunk = vec![0u8; 64 * 1024];
    // 64 MiB: four times the bound (16 MiB), far more than the socket buffers hold.
    let cut = loop {
        if sent > 64 << 20 {
            break None;
        }
        match local.write(&chunk) {
            Ok(n) => sent += n,
            Err(err) => break Some(err),
        }
    };
    let err = cut.expect("still accepted after 64 MiB: the drain is not bounded");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    // Measured: cut off after 20-22 MB (the 16 MiB bound plus the socket buffers).
    assert!(sent < 40 << 20, "cut off only after {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(10));
}
