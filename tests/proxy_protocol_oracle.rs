//! Differential test of the PROXY header parser (`server::proxy`) against Debian's
//! HAProxy 2.6 as the oracle: generated v1 and v2 headers go to an HAProxy frontend with
//! `accept-proxy`, which re-sends what it understood as a v2 header to a backend this
//! test runs. Whatever pacsgate accepts, HAProxy must accept with the same client
//! address; where HAProxy accepts and pacsgate refuses, pacsgate is the stricter one
//! (allowed, and printed).
//!
//! Found this way (HAProxy 2.6.12): it resets `PROXY UNKNOWN` followed by fields and v2
//! `PROXY` over UNSPEC, which the spec tells receivers to accept (pacsgate now refuses
//! both too); and it accepts v1 lines pacsgate refuses, reading `256.1.1.1` as 0.1.1.1,
//! `1.2.3` as 1.2.3.0, `010.1.2.3` as 10.1.2.3, port `99999` as 34463 and an empty port
//! as 0.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use pacsgate::server::proxy::{parse, Header, Parsed};
use support::haproxy::Haproxy;
use support::process::free_port;
use support::rng::Rng;

/// What a side made of one header: `None` refused, `Some(None)` no client address
/// (LOCAL/UNKNOWN: the connection's own), `Some(Some(addr))` the client.
type Reading = Option<Option<SocketAddr>>;

fn ours(bytes: &[u8]) -> Reading {
    match parse(bytes) {
        Ok(Parsed::Done(Header::Proxied(a), _)) => Some(Some(a)),
        Ok(Parsed::Done(Header::Local, _)) => Some(None),
        _ => None,
    }
}

/// Accept HAProxy's connections and report the client its v2 header names.
fn backend(listener: TcpListener, tx: mpsc::Sender<Option<SocketAddr>>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut head = [0u8; 16];
        if conn.read_exact(&mut head).is_err() {
            continue;
        }
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        let mut rest = vec![0u8; len];
        if conn.read_exact(&mut rest).is_err() {
            continue;
        }
        let whole = [head.as_slice(), &rest].concat();
        let seen = match parse(&whole) {
            Ok(Parsed::Done(Header::Proxied(a), _)) => Some(a),
            _ => None,
        };
        let _ = tx.send(seen);
    }
}

/// HAProxy's reading of `bytes`: sent with trailing data, then the connection is read
/// until HAProxy closes it (refused, or after the backend took and closed it).
fn theirs(front: u16, bytes: &[u8], rx: &mpsc::Receiver<Option<SocketAddr>>) -> Reading {
    let mut c = TcpStream::connect(("127.0.0.1", front)).expect("connect to HAProxy");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(&[bytes, b"hello"].concat());
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    // The backend reports before it closes, and HAProxy closes us only after that.
    let own = c.local_addr().unwrap();
    match rx.recv_timeout(Duration::from_millis(20)) {
        // HAProxy re-sends the connection's own address when the header named none.
        Ok(Some(a)) if a == own => Some(None),
        Ok(a) => Some(a),
        Err(_) => None,
    }
}

fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[command, family]);
    h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    if rng.below(2) == 0 {
        let proto = rng.choose(&["TCP4", "TCP6", "UNKNOWN", "tcp4", "TCP5", "UDP4"]);
        let addr4 = [
            "10.1.2.3",
            "010.1.2.3",
            "1.2.3",
            "256.1.1.1",
            "0.0.0.0",
            "10.1.2.3 ",
        ];
        let addr6 = [
            "2001:db8::5",
            "::ffff:10.9.8.7",
            "fe80::1%lo",
            "::",
            "2001:db8::g",
        ];
        let any = [addr4.as_slice(), &addr6].concat();
        let src = if rng.below(4) == 0 {
            rng.choose(&any)
        } else if proto.ends_with('6') {
            rng.choose(&addr6[..2])
        } else {
            rng.choose(&addr4[..1])
        };
        let dst = if proto.ends_with('6') {
            "::1"
        } else {
            "127.0.0.1"
        };
        let ports = [
            "0", "1", "443", "65535", "65536", "01", "+1", "-1", "", "99999",
        ];
        let sport = if rng.below(3) == 0 {
            rng.choose(&ports)
        } else {
            "40000"
        };
        let sep = if rng.below(8) == 0 {
            rng.choose(&["  ", "\t", ""])
        } else {
            " "
        };
        let end = if rng.below(8) == 0 {
            rng.choose(&["\n", "\r", "\r\n\r\n"])
        } else {
            "\r\n"
        };
        format!("PROXY {proto}{sep}{src} {dst} {sport} 443{end}").into_bytes()
    } else {
        let command = rng.choose(&[0x21, 0x21, 0x21, 0x20, 0x22, 0x11]);
        let family = rng.choose(&[0x11, 0x11, 0x21, 0x00, 0x12, 0x31, 0x10]);
        let mut payload: Vec<u8> = match family {
            0x21 | 0x22 => {
                let mut p = [0u8; 36].to_vec();
                p[..16].copy_from_slice(
                    &"2001:db8::7"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets(),
                );
                p[32..34].copy_from_slice(&1234u16.to_be_bytes());
                p
            }
            0x31 => vec![0u8; 216],
            _ => vec![10, 4, 5, 6, 127, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb],
        };
        match rng.below(6) {
            0 => payload.truncate(rng.below(payload.len() + 1)),
            1 => payload.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']),
            2 => payload.extend_from_slice(&[0x01, 0x00, 0x09, b'h']),
            3 => payload.extend_from_slice(&[0x04, 0x00]),
            _ => {}
        }
        v2(command, family, &payload)
    }
}

#[test]
fn haproxy_accepts_everything_we_accept_with_the_same_client() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let back = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || backend(listener, tx));
    let front = free_port();
    let _lb = Haproxy::start(
        dir.path(),
        &format!(
            "frontend f\n    bind 127.0.0.1:{front} accept-proxy\n    timeout client 1s\n    \
             default_backend b\nbackend b\n    server s 127.0.0.1:{back} send-proxy-v2\n"
        ),
        &[front],
    );
    let mut rng = Rng::new(0x0dd_5eed);
    let (mut agree, mut accepted, mut stricter) = (0, 0, Vec::new());
    for _ in 0..1500 {
        let bytes = generate(&mut rng);
        let (mine, oracle) = (ours(&bytes), theirs(front, &bytes, &rx));
        match (mine, oracle) {
            (a, b) if a == b => {
                agree += 1;
                accepted += usize::from(a.is_some());
            }
            (None, Some(_)) => stricter.push(String::from_utf8_lossy(&bytes).into_owned()),
            (a, b) => panic!(
                "{:?}: pacsgate {a:?}, HAProxy {b:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    stricter.sort();
    stricter.dedup();
    eprintln!(
        "{agree} agree ({accepted} accepted by both); pacsgate refuses {} HAProxy accepts: {stricter:#?}",
        stricter.len()
    );
    assert!(accepted > 300 && agree > 1000, "{agree} {accepted}");
}
