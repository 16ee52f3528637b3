//! One ARTIM timer (`dicom.artim_timeout`, PS3.8 §9.1.5) for both directions of the edge:
//! the inbound listener and an outbound tunnel close a requestor that never sends its
//! A-ASSOCIATE-RQ, and abort an association whose acceptor (the PACS, the remote peer)
//! never answers the RQ, at that timeout, not at the tunnel's `connect_timeout` or either
//! idle timeout. Abuse: a silent client holding a slot; a stalled peer holding an
//! association (and the local SCU waiting on it) for the whole idle timeout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::gateway::{dicom_only, Gateway};
use support::pki::{Ca, Leaf};
use support::process::free_port;
use support::raw::{associate_rq, RawClient};
use support::silent::SilentPeer;

const ARTIM: Duration = Duration::from_secs(1);
/// Well above ARTIM, well below every other timeout in play (connect 20 s, idle 60 s,
/// pending 30 s).
const BOUND: Duration = Duration::from_secs(8);
const ECHO: &str = "1.2.840.10008.1.1";
const ABORT: u8 = 0x07;

struct Edge {
    inbound: u16,
    outbound: u16,
    ca: Ca,
    _gw: Gateway,
}

/// A gateway with the inbound listener in front of `pacs` and a tunnel to `remote` (whose
/// certificate `remote_ca` issued; the edge's own CA if none), every timeout but ARTIM
/// long.
fn edge(dir: &Path, pacs: u16, (remote, remote_ca): (u16, Option<&Path>)) -> Edge {
    let ca = Ca::new(dir, "Edge CA");
    let remote_ca = remote_ca.unwrap_or(&ca.path).display().to_string();
    let server = ca.server(dir, "localhost");
    let (inbound, outbound) = (free_port(), free_port());
    let dicom = format!(
        "artim_timeout = \"1s\"\nidle_timeout = \"60s\"\npending_timeout = \"30s\"\nhandshake_timeout = \"20s\"\n\
         [[dicom.outbound]]\nlisten = \"127.0.0.1:{outbound}\"\nremote = \"127.0.0.1:{remote}\"\n\
         server_name = \"localhost\"\nca = {remote_ca:?}\nconnect_timeout = \"20s\"\nidle_timeout = \"60s\"\n",
    );
    let gw = Gateway::start(dir, &dicom_only(&server, "", inbound, pacs, &dicom));
    Edge {
        inbound,
        outbound,
        ca,
        _gw: gw,
    }
}

fn plain(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    tcp
}

fn tls(port: u16, ca: &Ca) -> RawClient {
    let mut client = RawClient::connect(port, &ca.path, None::<&Leaf>);
    client.handshake().expect("handshake");
    client
}

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
    let e = edge(dir.path(), free_port(), (free_port(), None));

    let mut client = tls(e.inbound, &e.ca);
    let started = Instant::now();
    assert!(client.closed_by_server(), "inbound: still open");
    assert_artim("inbound", started.elapsed());

    let mut local = plain(e.outbound);
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
    let e = edge(dir.path(), pacs.port, (remote.port, Some(&remote_ca.path)));
    let rq = associate_rq(b"SCU", b"ORTHANC", &[ECHO]);

    let mut client = tls(e.inbound, &e.ca);
    client.send(&rq);
    let started = Instant::now();
    let answer = client
        .read_pdu()
        .expect("inbound: an A-ABORT, not a silent close");
    assert_eq!(answer[0], ABORT, "inbound: {answer:?}");
    assert_artim("inbound", started.elapsed());
    let seen = pacs.received();
    assert_eq!(&seen[..rq.len()], &rq[..], "the PACS got the RQ replayed");
    assert_eq!(
        seen[rq.len()..].first(),
        Some(&ABORT),
        "and then an A-ABORT"
    );

    let mut local = plain(e.outbound);
    local.write_all(&rq).expect("send the RQ");
    let started = Instant::now();
    let mut answer = [0u8; 10];
    local
        .read_exact(&mut answer)
        .expect("outbound: an A-ABORT, not a silent close");
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
