//! IPv6 and what rides on it: the header ([`Ipv6`]) and extension headers ([`ext8`]), ICMPv6
//! with neighbour discovery and router messages, UDP.

use std::net::Ipv6Addr;

use super::{ETH_P_IPV6, eth, ipv4::udp, with_l4_csum};

/// `ff02::1`, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// An IPv6 header to put in front of a payload: the addresses and the first next header, and
/// the hop limit (by default 255, as neighbour discovery requires). The payload length follows
/// from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6 {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop_limit: u8,
}

impl Ipv6 {
    /// A header from `src` to `dst` whose payload starts with next header `next`.
    #[must_use]
    pub fn new(src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>, next: u8) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            next,
            hop_limit: 255,
        }
    }

    /// The hop limit.
    #[must_use]
    pub fn hop_limit(mut self, hop_limit: u8) -> Self {
        self.hop_limit = hop_limit;
        self
    }

    /// The header, then `payload` (extension headers and the upper-layer message).
    #[must_use]
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len()).expect("no jumbograms");
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[self.next, self.hop_limit]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// [`Ipv6::packet`] in an Ethernet frame from `src_mac` to `dst_mac` (see [`eth_dst6`]).
    #[must_use]
    pub fn frame(&self, dst_mac: [u8; 6], src_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
        eth(dst_mac, src_mac, ETH_P_IPV6, &self.packet(payload))
    }
}

/// The Ethernet destination of a packet to `dst`: the group's `33:33:…` address for a
/// multicast `dst`, else `unicast`.
#[must_use]
pub fn eth_dst6(dst: impl Into<Ipv6Addr>, unicast: [u8; 6]) -> [u8; 6] {
    let d = dst.into().octets();
    if d[0] == 0xff {
        [0x33, 0x33, d[12], d[13], d[14], d[15]]
    } else {
        unicast
    }
}

/// An ICMPv6 message of `kind` (code 0) from `src` to `dst`: `body` after type, code and
/// checksum, with its checksum.
#[must_use]
pub fn icmp6(src: impl Into<Ipv6Addr>, dst: impl Into<Ipv6Addr>, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    with_l4_csum(src.into(), dst.into(), 58, m, 2)
}

/// A UDP datagram from `src` to `dst` with its checksum.
#[must_use]
pub fn udp6(
    src: impl Into<Ipv6Addr>,
    dst: impl Into<Ipv6Addr>,
    sport: u16,
    dport: u16,
    data: &[u8],
) -> Vec<u8> {
    with_l4_csum(src.into(), dst.into(), 17, udp(sport, dport, data), 6)
}

/// A neighbour discovery option of `kind` carrying a link-layer address (1: source,
/// 2: target).
#[must_use]
pub fn nd_opt(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// The body (after type, code, checksum) of a neighbour solicitation or advertisement for
/// `target` (`flags` in the first byte: 0x20 override, 0x40 solicited), then `opts`.
#[must_use]
pub fn nd_body(flags: u8, target: impl Into<Ipv6Addr>, opts: &[u8]) -> Vec<u8> {
    let mut b = vec![flags, 0, 0, 0];
    b.extend_from_slice(&target.into().octets());
    b.extend_from_slice(opts);
    b
}

/// A router advertisement body: hop limit 64, router lifetime 1800 s, the source link-layer
/// address option when `source` is given, and a prefix information option for `prefix`/64
/// (on-link, autonomous).
#[must_use]
pub fn ra_body(prefix: impl Into<Ipv6Addr>, source: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = vec![64, 0];
    b.extend_from_slice(&1800u16.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    if let Some(mac) = source {
        b.extend_from_slice(&nd_opt(1, mac));
    }
    b.extend_from_slice(&[3, 4, 64, 0xc0]);
    b.extend_from_slice(&86400u32.to_be_bytes());
    b.extend_from_slice(&14400u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&prefix.into().octets());
    b
}

/// A redirect body: `target` (with link-layer address `mac`) is a better first hop for
/// `destination`.
#[must_use]
pub fn redirect_body(
    target: impl Into<Ipv6Addr>,
    destination: impl Into<Ipv6Addr>,
    mac: [u8; 6],
) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&target.into().octets());
    b.extend_from_slice(&destination.into().octets());
    b.extend_from_slice(&nd_opt(2, mac));
    b
}

/// An 8-byte extension header (hop-by-hop, routing or destination options) whose next header
/// is `next`, padded with PadN.
#[must_use]
pub fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}
