//! The PROXY protocol header a load balancer sends before the client's bytes (HAProxy's
//! doc/proxy-protocol.txt, versions 1 and 2), parsed sans-IO: [`parse`] looks at the
//! bytes read so far and says how many more may be read without reading past the header
//! (the TLS stream follows it on the same socket), or what the header says.
//!
//! Strict where the spec allows choices: single spaces, no leading zeros, TCP over IPv4
//! or IPv6 only, a v2 address block that fits its family, TLVs that exactly fill the
//! declared length, a CRC32c TLV that matches. Anything else is refused rather than
//! guessed at: a wrong guess would hand one client's address to another.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::client_key::unmap;

/// v2 signature (spec 2.2: "\r\n\r\n\0\r\nQUIT\n", 12 bytes).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1 starts with "PROXY" and one space (spec 2.1).
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Spec 2.1: "a 108-byte buffer is always enough to store all the line and a trailing
/// zero": the longest v1 line, CRLF included.
pub const V1_MAX: usize = 107;
/// The shortest v1 line: "PROXY UNKNOWN\r\n".
const V1_MIN: usize = 15;
/// Spec 2.2: 12-byte signature, version/command, family/transport, 2-byte length.
const V2_FIXED: usize = 16;
/// Our bound on a v2 header's declared length (address block + TLVs). The spec allows
/// 65535; HAProxy's TCPv6 block is 36 bytes and its optional TLVs (ALPN, authority,
/// unique id up to 128, SSL details) stay well under this. nginx caps the whole header
/// at 4096; we are stricter because nothing we use needs more.
pub const V2_MAX_PAYLOAD: usize = 1024;

/// What the load balancer says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's address and port (TCP4/TCP6, v2 PROXY over INET/INET6).
    Proxied(SocketAddr),
    /// v2 LOCAL (the LB's own health checks) and the bare v1 `PROXY UNKNOWN`: no client
    /// address is given, so the LB's own address is the client (spec 2.1 and 2.2: "use
    /// the real connection endpoints").
    Local,
}

/// Where parsing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The header is incomplete: at least this many more bytes belong to it, so reading
    /// up to this many cannot consume a byte of what follows.
    Incomplete(usize),
    /// The header and its length in bytes.
    Done(Header, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Parse the start of a connection. `Ok(Incomplete(n))` with `n > 0` on a valid prefix.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.starts_with(V1_PREFIX) {
        return v1(buf);
    }
    if buf.starts_with(&V2_SIGNATURE) {
        return v2(buf);
    }
    if V1_PREFIX.starts_with(buf) || V2_SIGNATURE.starts_with(buf) {
        // Still a prefix of either; no header of either version is shorter than V1_MIN.
        return Ok(Parsed::Incomplete(V1_MIN - buf.len()));
    }
    Err(HeaderError::NotProxy)
}

// === v1 (spec 2.1) ===

fn v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::V1("no CRLF within 107 bytes"));
        }
        if buf.contains(&b'\n') {
            return Err(HeaderError::V1("LF without CR"));
        }
        // The line ends with CRLF: after a CR one byte is missing, else at least two.
        let more = if buf.len() < V1_MIN {
            V1_MIN - buf.len()
        } else if buf.ends_with(b"\r") {
            1
        } else {
            2
        };
        return Ok(Parsed::Incomplete(more.min(V1_MAX - buf.len())));
    };
    if end + 2 > V1_MAX {
        return Err(HeaderError::V1("no CRLF within 107 bytes"));
    }
    let line = buf.get(V1_PREFIX.len()..end).unwrap_or_default();
    let header = v1_fields(line)?;
    Ok(Parsed::Done(header, end + 2))
}

fn v1_fields(line: &[u8]) -> Result<Header, HeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| HeaderError::V1("not ASCII"))?;
    if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control()) {
        return Err(HeaderError::V1("control characters"));
    }
    // Spec 2.1 tells receivers to ignore anything between "UNKNOWN" and the CRLF, but
    // HAProxy 2.6 (the LB we test against) resets such a line and itself sends the bare
    // form only (tests/proxy_protocol_oracle.rs): where readings differ, refuse.
    if text == "UNKNOWN" {
        return Ok(Header::Local);
    }
    if text.starts_with("UNKNOWN ") {
        return Err(HeaderError::V1("fields after UNKNOWN"));
    }
    let fields: Vec<&str> = text.split(' ').collect();
    let [proto, src, dst, sport, dport] = fields[..] else {
        return Err(HeaderError::V1(
            "expected 5 fields separated by single spaces",
        ));
    };
    let ip = match proto {
        "TCP4" => v1_ipv4(src).map(IpAddr::V4),
        "TCP6" => src.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => return Err(HeaderError::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    }
    .ok_or(HeaderError::V1(
        "source address does not match the protocol",
    ))?;
    // The destination is checked as strictly, though it is not used.
    let dst_ok = match proto {
        "TCP4" => v1_ipv4(dst).is_some(),
        _ => dst.parse::<Ipv6Addr>().is_ok(),
    };
    if !dst_ok {
        return Err(HeaderError::V1(
            "destination address does not match the protocol",
        ));
    }
    let port = v1_port(sport).ok_or(HeaderError::V1("bad source port"))?;
    v1_port(dport).ok_or(HeaderError::V1("bad destination port"))?;
    Ok(Header::Proxied(SocketAddr::new(unmap(ip), port)))
}

/// Dotted quad of decimal octets without leading zeros (some parsers read "010" as octal).
fn v1_ipv4(s: &str) -> Option<Ipv4Addr> {
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 || octets.iter().any(|o| !decimal(o, 3)) {
        return None;
    }
    s.parse().ok()
}

/// Spec 2.1: a decimal number 0..=65535; we refuse leading zeros as for octets.
fn v1_port(s: &str) -> Option<u16> {
    decimal(s, 5).then(|| s.parse().ok()).flatten()
}

fn decimal(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

// === v2 (spec 2.2) ===

fn v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete(V2_FIXED - buf.len()));
    }
    // Byte 12: version (high nibble, must be 2) and command (0 LOCAL, 1 PROXY).
    let command = match buf[12] {
        0x20 => Command::Local,
        0x21 => Command::Proxy,
        b if b >> 4 != 2 => return Err(HeaderError::V2("version is not 2")),
        _ => return Err(HeaderError::V2("unknown command")),
    };
    // Byte 13: address family (high nibble) and transport (low nibble), judged before
    // the payload is read, so an unsupported one is refused at once.
    let addr_len = match (command, buf[13]) {
        // LOCAL: "the receiver must accept this connection as valid and must use the
        // real connection endpoints and discard the protocol block including the family".
        (Command::Local, _) => 0,
        // PROXY over UNSPEC: the spec says use the real endpoints, HAProxy 2.6 resets it
        // (tests/proxy_protocol_oracle.rs); where readings differ, refuse.
        // TCP over IPv4: src addr 4, dst addr 4, src port 2, dst port 2.
        (Command::Proxy, 0x11) => 12,
        // TCP over IPv6: src addr 16, dst addr 16, src port 2, dst port 2.
        (Command::Proxy, 0x21) => 36,
        _ => {
            return Err(HeaderError::V2(
                "family/transport is not TCP over IPv4 or IPv6",
            ))
        }
    };
    // Bytes 14-15: length of what follows, network byte order.
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(HeaderError::V2("declared length over 1024 bytes"));
    }
    if len < addr_len {
        return Err(HeaderError::V2(
            "address block shorter than its family needs",
        ));
    }
    let total = V2_FIXED + len;
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total - buf.len()));
    }
    let payload = &buf[V2_FIXED..total];
    let client = match addr_len {
        0 => None,
        12 => Some(inet(payload, 4)?),
        _ => Some(inet(payload, 16)?),
    };
    if command == Command::Proxy {
        tlvs(buf, total, V2_FIXED + addr_len)?;
    }
    let header = client.map_or(Header::Local, Header::Proxied);
    Ok(Parsed::Done(header, total))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Local,
    Proxy,
}

fn inet(payload: &[u8], width: usize) -> Result<SocketAddr, HeaderError> {
    let block = payload.get(..2 * width + 4).ok_or(HeaderError::V2(
        "address block shorter than its family needs",
    ))?;
    let (src, rest) = block.split_at(width);
    let port_at = width; // after the destination address
    let port = u16::from_be_bytes([rest[port_at], rest[port_at + 1]]);
    let ip = match width {
        4 => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        _ => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(src);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    Ok(SocketAddr::new(unmap(ip), port))
}

/// Spec 2.2.x: type (1), length (2, network order), value. They must exactly fill the
/// header; a PP2_TYPE_CRC32C (0x03) value is checked over the whole header with the
/// checksum field zeroed (spec 2.2.5).
fn tlvs(header: &[u8], total: usize, mut at: usize) -> Result<(), HeaderError> {
    while at < total {
        let head = header
            .get(at..at + 3)
            .ok_or(HeaderError::V2("truncated TLV"))?;
        let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
        let value = at + 3..at + 3 + len;
        if value.end > total {
            return Err(HeaderError::V2("TLV longer than the header"));
        }
        if head[0] == 0x03 {
            if len != 4 {
                return Err(HeaderError::V2("CRC32c TLV is not 4 bytes"));
            }
            let stated = u32::from_be_bytes(
                header[value.clone()]
                    .try_into()
                    .map_err(|_| HeaderError::V2("CRC32c TLV is not 4 bytes"))?,
            );
            if crc32c_zeroed(&header[..total], value.clone()) != stated {
                return Err(HeaderError::V2("CRC32c mismatch"));
            }
        }
        at = value.end;
    }
    Ok(())
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data` with `zeroed` read as
/// zeros. Bitwise: headers are a few dozen bytes and rarely carry the TLV.
fn crc32c_zeroed(data: &[u8], zeroed: std::ops::Range<usize>) -> u32 {
    let mut crc = !0u32;
    for (i, &b) in data.iter().enumerate() {
        crc ^= u32::from(if zeroed.contains(&i) { 0 } else { b });
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
