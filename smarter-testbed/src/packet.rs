//! The one packet builder of the tests (as Cilium's `pktgen.h`): Ethernet frames, ARP,
//! IPv4 headers with options and fragment fields ([`Ipv4`]), UDP, TCP and ICMP
//! ([`udp`], [`tcp`], [`icmp4`]) with their checksums over the pseudo header
//! ([`with_l4_csum`]), IPv6 with extension headers, ICMPv6 and neighbour discovery
//! ([`Ipv6`], [`icmp6`], [`nd_body`], [`ra_body`]...), and the reads the tests make on what a
//! program or a kernel returns ([`ipv4_ok`], [`l4_ok`], [`ipv4_src`], [`be16`]).
//!
//! Checksums are real (the receiving kernels verify them) except where a function says it
//! leaves one zero. Addresses are taken as anything that converts into
//! [`std::net::Ipv4Addr`]/[`std::net::Ipv6Addr`], octet arrays included.

mod ipv4;
mod ipv6;

use std::net::IpAddr;

pub use ipv4::{Ipv4, icmp4, id_seq, tcp, udp};
pub use ipv6::{
    ALL_NODES, Ipv6, eth_dst6, ext8, icmp6, nd_body, nd_opt, ra_body, redirect_body, udp6,
};

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// The Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// Length of an Ethernet header: where the network header of a frame starts.
pub const ETH_HLEN: usize = 14;

/// The Internet checksum (RFC 1071) of `bytes`: the ones' complement of the ones'-complement
/// sum of its 16-bit words, an odd last byte padded with zero (0 when `bytes` include a valid
/// checksum).
#[must_use]
pub fn inet_csum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo header an L4 checksum of protocol `proto` from `src` to `dst` covers: IPv4's
/// (none for ICMP, `proto` 1) or IPv6's.
///
/// # Panics
/// When `src` and `dst` are of different families.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) if proto == 1 => Vec::new(),
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut over = s.octets().to_vec();
            over.extend_from_slice(&d.octets());
            over.extend_from_slice(&[0, proto]);
            over.extend_from_slice(&u16::try_from(len).expect("an L4 length").to_be_bytes());
            over
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut over = s.octets().to_vec();
            over.extend_from_slice(&d.octets());
            over.extend_from_slice(&u32::try_from(len).expect("an L4 length").to_be_bytes());
            over.extend_from_slice(&[0, 0, 0, proto]);
            over
        }
        _ => panic!("a pseudo header from {src} to {dst}: two families"),
    }
}

/// `l4` (protocol or next header `proto`, from `src` to `dst`) with its checksum at `at`
/// computed over the pseudo header of the addresses' family (IPv4's, none for ICMP; IPv6's)
/// and itself.
///
/// # Panics
/// When `src` and `dst` are of different families, or `l4` has no field at `at`.
#[must_use]
pub fn with_l4_csum(
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    proto: u8,
    l4: Vec<u8>,
    at: usize,
) -> Vec<u8> {
    let over = pseudo_header(src.into(), dst.into(), proto, l4.len());
    fill_csum(over, l4, at)
}

/// `l4` with the checksum of `over` (a pseudo header, or nothing) then `l4` written at `at`,
/// the field zeroed first.
fn fill_csum(mut over: Vec<u8>, mut l4: Vec<u8>, at: usize) -> Vec<u8> {
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    over.extend_from_slice(&l4);
    let c = inet_csum(&over);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

/// An Ethernet frame: `dst`, `src`, `ethertype`, then `payload`.
#[must_use]
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP message for IPv4 over Ethernet (`op` 1: request, 2: reply): `spa` is at `sha`,
/// about `tpa` (at `tha`).
#[must_use]
pub fn arp(
    op: u16,
    sha: [u8; 6],
    spa: impl Into<std::net::Ipv4Addr>,
    tha: [u8; 6],
    tpa: impl Into<std::net::Ipv4Addr>,
) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.into().octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.into().octets());
    a
}

/// The big-endian 16-bit field of `p` at `at` (a port, an ICMP identifier).
#[must_use]
pub fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

/// Whether the Ethernet frame `f` carries IPv4 (EtherType and version), with a whole header.
#[must_use]
pub fn is_ipv4(f: &[u8]) -> bool {
    f.len() >= ETH_HLEN + 20 && be16(f, 12) == ETH_P_IP && f[ETH_HLEN] >> 4 == 4
}

/// The IPv4 source address of the Ethernet frame `f`.
#[must_use]
pub fn ipv4_src(f: &[u8]) -> [u8; 4] {
    f[26..30].try_into().expect("an IPv4 header")
}

/// The IPv4 destination address of the Ethernet frame `f`.
#[must_use]
pub fn ipv4_dst(f: &[u8]) -> [u8; 4] {
    f[30..34].try_into().expect("an IPv4 header")
}

/// The IPv4 header length of the Ethernet frame `f` and whether its header checksum holds.
#[must_use]
pub fn ipv4_ok(f: &[u8]) -> (usize, bool) {
    let hl = usize::from(f[ETH_HLEN] & 0x0f) * 4;
    (hl, inet_csum(&f[ETH_HLEN..ETH_HLEN + hl]) == 0)
}

/// Whether the L4 checksum (at `at` inside the L4 header) of the whole, unfragmented IPv4
/// frame `f` holds; a UDP checksum of 0 (none) counts as valid.
#[must_use]
pub fn l4_ok(f: &[u8], at: usize) -> bool {
    let (hl, _) = ipv4_ok(f);
    let (ip, l4) = (&f[ETH_HLEN..ETH_HLEN + hl], &f[ETH_HLEN + hl..]);
    let proto = ip[9];
    if proto == 17 && l4[at..at + 2] == [0, 0] {
        return true;
    }
    let src: [u8; 4] = ip[12..16].try_into().expect("IPv4 source");
    let dst: [u8; 4] = ip[16..20].try_into().expect("IPv4 destination");
    let mut over = pseudo_header(src.into(), dst.into(), proto, l4.len());
    over.extend_from_slice(l4);
    inet_csum(&over) == 0
}

#[cfg(test)]
mod tests;
