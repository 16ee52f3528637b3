//! One ARTIM timer (`dicom.artim_timeout`, PS3.8 §9.1.5) for both directions of the edge:
//! the inbound listener and an outbound tunnel close a requestor that never sends its
//! A-ASSOCIATE-RQ, and abort an association whose acceptor (the PACS, the remote peer)
//! never answers the RQ, at that timeout, not at the tunnel's `connect_timeout` or either
//! idle timeout. Abuse: a silent client holding a slot; a stalled peer holding an
//! association (and the local SCU waiting on it) for the whole idle timeout.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{read_pdu, Edge};
use support::pki::Ca;
use support::process::free_port;
use support::raw::associate_rq;
use support::silent::SilentPeer;

const ARTIM: Duration = Duration::from_secs(1);
/// Well above ARTIM, well below every other timeout in play (connect and handshake 20 s,
/// idle 60 s, pending 30 s).
const BOUND: Duration = Duration::from_secs(8);
const ECHO: &str = "1.2.840.10008.1.1";
const ABORT: u8 = 0x07;
const DICOM: &str = "artim_timeout = \"1s\"\nidle_timeout = \"60s\"\npending_timeout = \"30s\"\nhandshake_timeout = \"20s\"";
const TUNNEL: &str = "connect_timeout = \"20s\"\nidle_timeout = \"60s\"";

fn assert_artim(what: &str, elapsed: Duration) {
    assert!(
        elapsed >= ARTIM - Duration::from_millis(100) && elapsed < BOUND,
        "{what}: ended after {elapsed:?}, expected about {ARTIM:?}"
    );
}

#[test]
fn a_requestor_that_never_sends_the_rq_is_closed_at_artim_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    // Neither acceptor is reached: the RQ never comes.
    let e = Edge::start(
        dir.path(),
        free_port(),
        (free_port(), None),
        (DICOM, TUNNEL),
    );

    let mut client = e.tls_client();
    let started = Instant::now();
    assert!(client.closed_by_server(), "inbound: still open");
    assert_artim("inbound", started.elapsed());

    let mut local = e.tunnel_client();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = local
        .read(&mut buf)
        .expect("outbound: closed, not timed out");
    assert_eq!(n, 0, "outbound: the gateway sent {:?}", &buf[..n]);
    assert_artim("outbound", started.elapsed());
}

#[test]
fn an_acceptor_that_never_answers_the_rq_is_aborted_at_artim_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let pacs = SilentPeer::tcp();
    let remote_ca = Ca::new(dir.path(), "Remote CA");
    let remote = SilentPeer::tls(&remote_ca.server(dir.path(), "remote"));
    let e = Edge::start(
        dir.path(),
        pacs.port,
        (remote.port, Some(&remote_ca.path)),
        (DICOM, TUNNEL),
    );
    let rq = associate_rq(b"SCU", b"ORTHANC", &[ECHO]);

    let mut client = e.tls_client();
    client.send(&rq);
    let started = Instant::now();
    let answer = client.read_pdu().expect("inbound: an A-ABORT, not a close");
    assert_eq!(answer[0], ABORT, "inbound: {answer:?}");
    assert_artim("inbound", started.elapsed());
    let seen = pacs.received();
    assert_eq!(&seen[..rq.len()], &rq[..], "the PACS got the RQ replayed");
    assert_eq!(
        seen[rq.len()..].first(),
        Some(&ABORT),
        "and then an A-ABORT"
    );

    let mut local = e.tunnel_client();
    local.write_all(&rq).expect("send the RQ");
    let started = Instant::now();
    let answer = read_pdu(&mut local);
    assert_eq!(answer[0], ABORT, "outbound: {answer:?}");
    assert_artim("outbound", started.elapsed());
    let seen = remote.received();
    assert_eq!(&seen[..rq.len()], &rq[..], "the remote got the RQ replayed");
    assert_eq!(
        seen[rq.len()..].first(),
        Some(&ABORT),
        "and then an A-ABORT"
    );
}

/// The oracle: a real SCU (dcmtk's echoscu, whose own ACSE timeout is 30 s) on both
/// listeners gets the A-ABORT at ARTIM and reports the association aborted by its peer.
#[test]
fn real_scus_see_the_abort_of_a_silent_acceptor_at_artim() {
    let dir = tempfile::tempdir().unwrap();
    let pacs = SilentPeer::tcp();
    let remote_ca = Ca::new(dir.path(), "Remote CA");
    let remote = SilentPeer::tls(&remote_ca.server(dir.path(), "remote"));
    let e = Edge::start(
        dir.path(),
        pacs.port,
        (remote.port, Some(&remote_ca.path)),
        (DICOM, TUNNEL),
    );

    let started = Instant::now();
    let args = dcmtk_args("SCU", "ORTHANC", &e.ca.path, None);
    let (status, out) = dcmtk(ECHOSCU, e.inbound, &args, &[]);
    assert!(!status.success(), "inbound: {out}");
    assert!(out.contains("Peer aborted Association"), "inbound: {out}");
    assert_artim("inbound echoscu", started.elapsed());

    let started = Instant::now();
    let args = [
        "-aet".to_string(),
        "SCU".into(),
        "-aec".into(),
        "REMOTE".into(),
    ];
    let (status, out) = dcmtk(ECHOSCU, e.outbound, &args, &[]);
    assert!(!status.success(), "outbound: {out}");
    assert!(out.contains("Peer aborted Association"), "outbound: {out}");
    assert_artim("outbound echoscu", started.elapsed());
    drop((pacs, remote));
}
