//! Client keys for per-client limits and budgets.

use std::net::IpAddr;

/// `::ffff:127.0.0.1` (a dual-stack listener's view of an IPv4 client) is 127.0.0.1.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// IPv4 address, or the /64 of an IPv6 address (one subscriber usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4(u32),
    V6Net(u64),
}

impl IpKey {
    pub fn of(ip: IpAddr) -> Self {
        match unmap(ip) {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => IpKey::V6Net((u128::from(v6) >> 64) as u64),
        }
    }

    /// The key as bytes (family tag, then the address or /64 prefix), for stores keyed by
    /// bytes such as the shared limits in Redis.
    pub fn id_bytes(&self) -> Vec<u8> {
        match self {
            IpKey::V4(a) => [&[4u8][..], &a.to_be_bytes()].concat(),
            IpKey::V6Net(n) => [&[6u8][..], &n.to_be_bytes()].concat(),
        }
    }
}
