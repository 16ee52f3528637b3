use super::*;

fn done(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Done(h, n)) => (h, n),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn addr(s: &str) -> Header {
    Header::Proxied(s.parse().unwrap())
}

/// A v2 header as HAProxy's `send-proxy-v2` writes it, with optional TLVs.
fn v2_header(command: u8, family: u8, block: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(command);
    h.push(family);
    let len = u16::try_from(block.len() + tlvs.len()).unwrap();
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(block);
    h.extend_from_slice(tlvs);
    h
}

fn inet4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

#[test]
fn v1_headers_name_the_client_and_end_at_the_crlf() {
    let line = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n\x16\x03\x01";
    assert_eq!(done(line), (addr("127.0.0.2:40000"), line.len() - 3));
    let line = b"PROXY TCP6 2001:db8::1 ::1 65535 11112\r\n";
    assert_eq!(done(line).0, addr("[2001:db8::1]:65535"));
    // An IPv4-mapped client is the IPv4 client (as `client_key::unmap`).
    let line = b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n";
    assert_eq!(done(line).0, addr("192.0.2.7:1"));
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (Header::Local, 15));
    // The spec says ignore what follows UNKNOWN; HAProxy 2.6 refuses it, so do we.
    let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_eq!(parse(line), Err(HeaderError::V1("fields after UNKNOWN")));
}

#[test]
fn the_longest_v1_line_fits_and_one_byte_more_does_not() {
    // Spec 2.1's worst case: UNKNOWN followed by two full IPv6 addresses and ports.
    let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(done(tcp6).1, V1_MAX - 3);
    let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX);
    assert!(
        matches!(parse(longest), Err(HeaderError::V1(_))),
        "see UNKNOWN above"
    );
    let mut padded = b"PROXY UNKNOWN ".to_vec();
    padded.resize(V1_MAX - 1, b'x');
    assert_eq!(parse(&padded), Ok(Parsed::Incomplete(1)));
    padded.push(b'x');
    assert!(parse(&padded).is_err());
}

#[test]
fn malformed_v1_lines_are_refused() {
    for bad in [
        &b"PROXY TCP4 127.0.0.2 127.0.0.1 40000  443\r\n"[..],
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000\r\n",
        b"PROXY TCP4 127.0.0.02 127.0.0.1 40000 443\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 040000 443\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 65536 443\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 1 443\r\n",
        b"PROXY TCP6 127.0.0.2 ::1 1 443\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 443\r\n",
        b"PROXY UDP4 127.0.0.2 127.0.0.1 1 443\r\n",
        b"PROXY tcp4 127.0.0.2 127.0.0.1 1 443\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 1 443\n",
        b"PROXY TCP4 127.0.0.2\t127.0.0.1 1 443\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 +1 443\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY \r\n",
    ] {
        assert!(
            matches!(parse(bad), Err(HeaderError::V1(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(HeaderError::NotProxy));
    assert_eq!(parse(b"PROXz"), Err(HeaderError::NotProxy));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::NotProxy));
}

#[test]
fn v2_proxy_local_and_unspec() {
    let h = v2_header(0x21, 0x11, &inet4([127, 0, 0, 3], 5555), &[]);
    assert_eq!(done(&h), (addr("127.0.0.3:5555"), 28));
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&[0x12, 0x34, 0x01, 0xbb]);
    let h = v2_header(0x21, 0x21, &block, &[]);
    assert_eq!(done(&h), (addr("[2001:db8::7]:4660"), 52));
    // HAProxy's health checks: LOCAL with an empty block; anything in it is discarded.
    assert_eq!(done(&v2_header(0x20, 0x00, &[], &[])), (Header::Local, 16));
    assert_eq!(
        done(&v2_header(0x20, 0x31, &[0; 216], &[])).0,
        Header::Local
    );
    // PROXY over UNSPEC: HAProxy 2.6 refuses it, so do we.
    assert!(parse(&v2_header(0x21, 0x00, &[], &[])).is_err());
}

#[test]
fn v2_tlvs_are_skipped_when_well_framed_and_refused_otherwise() {
    let block = inet4([10, 1, 2, 3], 1);
    // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP of 0 bytes.
    let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00];
    assert_eq!(
        done(&v2_header(0x21, 0x11, &block, &tlvs)).0,
        addr("10.1.2.3:1")
    );
    for bad in [&[0x01, 0x00][..], &[0x01, 0x00, 0x03, b'h', b'2'], &[0x00]] {
        let h = v2_header(0x21, 0x11, &block, bad);
        assert!(matches!(parse(&h), Err(HeaderError::V2(_))), "{bad:?}");
    }
}

#[test]
fn v2_crc32c_is_checked() {
    let block = inet4([10, 1, 2, 3], 1);
    let mut h = v2_header(0x21, 0x11, &block, &[0x03, 0x00, 0x04, 0, 0, 0, 0]);
    let at = h.len() - 4..h.len();
    let crc = crc32c_zeroed(&h, at.clone());
    h[at.clone()].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(done(&h).0, addr("10.1.2.3:1"));
    h[19] ^= 1;
    assert_eq!(parse(&h), Err(HeaderError::V2("CRC32c mismatch")));
    // The CRC-32C check value of "123456789" (RFC 3720 B.4).
    assert_eq!(crc32c_zeroed(b"123456789", 0..0), 0xE306_9283);
}

#[test]
fn malformed_v2_headers_are_refused() {
    let block = inet4([10, 1, 2, 3], 1);
    for (command, family, block) in [
        (0x11, 0x11, &block[..]),
        (0x22, 0x11, &block[..]),
        (0x21, 0x12, &block[..]),
        (0x21, 0x31, &[0u8; 216][..]),
        (0x21, 0x11, &block[..11]),
        (0x21, 0x21, &block[..]),
    ] {
        let h = v2_header(command, family, block, &[]);
        assert!(matches!(parse(&h), Err(HeaderError::V2(_))), "{h:?}");
    }
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x04, 0x01]);
    assert_eq!(
        parse(&h),
        Err(HeaderError::V2("declared length over 1024 bytes"))
    );
}

/// Feed `stream` to `parse` the way the reader does: never more than it asks for, in
/// chunks of `chunk` bytes at most. Returns the outcome and how much was consumed.
fn feed(stream: &[u8], chunk: usize) -> (Result<Header, HeaderError>, usize) {
    let mut have = 0;
    loop {
        match parse(&stream[..have]) {
            Ok(Parsed::Done(h, n)) => {
                assert_eq!(n, have, "done exactly at the end of what was read");
                return (Ok(h), have);
            }
            Ok(Parsed::Incomplete(n)) => {
                assert!(n > 0);
                if have == stream.len() {
                    return (Err(HeaderError::NotProxy), have);
                }
                have += n.min(chunk).min(stream.len() - have);
            }
            Err(e) => return (Err(e), have),
        }
    }
}

#[test]
fn the_reader_never_consumes_a_byte_after_the_header() {
    let tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
    let mut headers = vec![
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2_header(0x20, 0x00, &[], &[]),
        v2_header(0x21, 0x11, &inet4([1, 2, 3, 4], 5), &[0x04, 0x00, 0x01, 0]),
    ];
    headers.push(v2_header(0x21, 0x11, &inet4([1, 2, 3, 4], 5), &[0; 0]));
    for h in headers {
        for chunk in [1, 2, 3, 7, 1000] {
            let mut stream = h.clone();
            stream.extend_from_slice(tls);
            let (res, used) = feed(&stream, chunk);
            assert!(res.is_ok(), "{h:?}");
            assert_eq!(used, h.len());
        }
    }
}

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Thousands of mutated headers (bytes flipped, cut, inserted, lengths changed): no
/// panic, never more read than the bounds, and whatever is accepted re-parses the same.
#[test]
fn generated_malformed_headers_never_panic_or_overread() {
    let seeds: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 ::1 65535 11112\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2_header(0x20, 0x00, &[], &[]),
        v2_header(
            0x21,
            0x11,
            &inet4([127, 0, 0, 3], 5555),
            &[0x01, 0x00, 0x02, b'h', b'2'],
        ),
        v2_header(0x21, 0x21, &[7; 36], &[0x03, 0x00, 0x04, 1, 2, 3, 4]),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut m = seeds[round % seeds.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(m.len() + 1);
            match rng.below(5) {
                0 if at < m.len() => m[at] = rng.next() as u8,
                1 => m.truncate(at),
                2 => m.insert(at, [b' ', b'\r', b'\n', b'0', 0xff][rng.below(5)]),
                3 if m.len() > 15 => {
                    let v = rng.next() as u8;
                    m[14 + rng.below(2)] = v;
                }
                _ => m.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
            }
        }
        let (res, used) = feed(&m, 1 + rng.below(64));
        assert!(
            used <= 16 + V2_MAX_PAYLOAD,
            "seed round {round}: read {used}"
        );
        if m.starts_with(V1_PREFIX) {
            assert!(used <= V1_MAX, "round {round}: v1 read {used}");
        }
        if let Ok(h) = res {
            accepted += 1;
            assert_eq!(done(&m[..used]).0, h);
        }
    }
    assert!(
        accepted > 100,
        "the mutations also keep some valid: {accepted}"
    );
}

#[test]
fn an_unsupported_v2_family_is_refused_before_its_payload() {
    let h = b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\x0c";
    assert_eq!(parse(&h[..15]), Ok(Parsed::Incomplete(1)));
    assert!(matches!(parse(h), Err(HeaderError::V2(_))));
}
