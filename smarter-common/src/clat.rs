//! The CLAT (the customer-side translator of 464XLAT, RFC 6877): on a node whose only way off is
//! an IPv6-only uplink, pods' IPv4 is source-NATed to [`CLAT_V4`] as on any uplink, then
//! translated statelessly to IPv6 (RFC 7915) from the node's CLAT address to the NAT64 prefix
//! (RFC 6052 `/96`) + the IPv4 destination; replies are translated back and reverse-NATed. The
//! operator's NAT64 (a carrier's PLAT) takes it from there.
//!
//! Here: the map value ([`ClatValue`]), the addresses, and the ICMPv6 → ICMPv4 mapping of
//! RFC 7915 section 5.2 as one pure function the program and its tests share.

use core::mem::size_of;

/// The IPv4 address pods are masqueraded to before translation: `192.0.0.1`, from the IPv4
/// Service Continuity Prefix `192.0.0.0/29` reserved for exactly this (RFC 7335). Network
/// byte order.
pub const CLAT_V4: u32 = u32::from_ne_bytes([192, 0, 0, 1]);

/// [`crate::maps::TAILS`] slot of `smarter_podclat` ([`crate::progs::POD_CLAT`]): a pod's
/// IPv4 with no IPv4 route off the node, NATed to [`CLAT_V4`] and redirected to the IPv6-only
/// uplink, tail-called by `smarter_pod` (so the pod program's verification does not carry a
/// second way out). One of the slots [`crate::v6::TAILS_MAX`] left room for: the map is
/// unchanged.
pub const TAIL_POD_CLAT: u32 = 6;

/// The IPv4 dummy address `192.0.0.8` (RFC 7600): the source of ICMPv6 errors translated to
/// ICMPv4 whose IPv6 source has no IPv4 address (a router of the IPv6 path). Network byte order.
pub const IPV4_DUMMY: u32 = u32::from_ne_bytes([192, 0, 0, 8]);

/// The well-known NAT64 prefix `64:ff9b::/96` (RFC 6052), the default PREF64.
pub const WELL_KNOWN_PREF64: [u8; 12] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/// Value of [`crate::maps::CLAT`] (key: the IPv6-only uplink's ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClatValue {
    /// The node's CLAT address on the uplink (it answers neighbour discovery for it): the
    /// source of every translated packet, the destination of every reply.
    pub src6: [u8; 16],
    /// The NAT64 prefix's first 96 bits (PREF64, RFC 6052 `/96`).
    pub pref64: [u8; 12],
    /// The IPv4 address translated packets were source-NATed to ([`CLAT_V4`]), network byte
    /// order.
    pub v4: u32,
}

impl ClatValue {
    /// The IPv6 address of IPv4 `addr` (network byte order) in the NAT64 prefix.
    #[must_use]
    #[inline(always)]
    pub const fn embed(&self, addr: u32) -> [u8; 16] {
        let p = self.pref64;
        let a = addr.to_ne_bytes();
        [
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], a[0], a[1],
            a[2], a[3],
        ]
    }

    /// The IPv4 address (network byte order) `addr` embeds, when it is in the NAT64 prefix.
    #[must_use]
    #[inline(always)]
    pub fn extract(&self, addr: &[u8; 16]) -> Option<u32> {
        (addr[..12] == self.pref64)
            .then(|| u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]))
    }
}

/// The per-CPU work space ([`crate::maps::CLAT_SCRATCH`]) of one ICMPv6 error's translation:
/// what its checksum loses and gains.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ClatScratch {
    /// Out: the pseudo header, the ICMPv6 header (checksum zero) and the quoted IPv6 header
    /// with its first 8 L4 bytes.
    pub old: [u8; 40 + 8 + 48],
    /// In: the ICMPv4 header and the quoted IPv4 header with the same 8 L4 bytes.
    pub head: [u8; 8 + 28],
}

/// ICMPv6 types the CLAT translates (RFC 4443).
pub mod icmp6 {
    /// Destination Unreachable.
    pub const DEST_UNREACH: u8 = 1;
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 129;
}

/// An ICMPv6 error's ICMPv4 translation (RFC 7915 section 5.2): `(type, code)`, or `None` for
/// what is silently dropped (and for what is not an error). Packet Too Big becomes
/// "fragmentation needed" (its MTU is translated by [`ptb_mtu`]).
#[must_use]
#[inline(always)]
pub const fn error_to_v4(kind: u8, code: u8) -> Option<(u8, u8)> {
    use crate::icmp;
    match (kind, code) {
        // No route, beyond scope, address unreachable → host unreachable.
        (icmp6::DEST_UNREACH, 0 | 2 | 3) => Some((icmp::DEST_UNREACH, 1)),
        // Administratively prohibited → communication administratively prohibited.
        (icmp6::DEST_UNREACH, 1) => Some((icmp::DEST_UNREACH, 10)),
        // Port unreachable.
        (icmp6::DEST_UNREACH, 4) => Some((icmp::DEST_UNREACH, 3)),
        (icmp6::PACKET_TOO_BIG, 0) => Some((icmp::DEST_UNREACH, 4)),
        // Hop limit / reassembly time exceeded keep their code.
        (icmp6::TIME_EXCEEDED, 0 | 1) => Some((icmp::TIME_EXCEEDED, code)),
        // Unrecognized next header → protocol unreachable.
        (icmp6::PARAM_PROBLEM, 1) => Some((icmp::DEST_UNREACH, 2)),
        _ => None,
    }
}

/// The IPv4 next-hop MTU of a Packet Too Big with IPv6 MTU `mtu6`: 20 bytes less (the IPv6
/// header is 20 bytes longer), at least 68 (the IPv4 minimum), at most 65535.
#[must_use]
#[inline(always)]
pub const fn ptb_mtu(mtu6: u32) -> u16 {
    let m = mtu6.saturating_sub(20);
    if m < 68 {
        68
    } else if m > 0xffff {
        0xffff
    } else {
        m as u16
    }
}

/// IPv6 header length.
pub const IPV6_LEN: usize = 40;
/// IPv6 fragment header length.
pub const FRAG_HDR_LEN: usize = 8;
/// IPv6 next-header value of the fragment header.
pub const NEXTHDR_FRAGMENT: u8 = 44;
/// IPv6 next-header value of ICMPv6.
pub const NEXTHDR_ICMPV6: u8 = 58;
/// How much bigger a translated packet is than its IPv4 original, at most (the IPv6 header is 20
/// bytes longer, a fragment gets an 8-byte fragment header): what `mtu: auto` takes off an
/// IPv6-only uplink's MTU for the pods.
pub const OVERHEAD: u32 = 28;

const _: () = {
    assert!(size_of::<ClatValue>() == 32);
    assert!(size_of::<ClatScratch>() == 132);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_and_extracts_in_the_well_known_prefix() {
        let c = ClatValue {
            pref64: WELL_KNOWN_PREF64,
            ..ClatValue::default()
        };
        let v4 = u32::from_ne_bytes([203, 0, 113, 1]);
        let v6 = c.embed(v4);
        // 64:ff9b::cb00:7101
        assert_eq!(&v6[..4], &[0, 0x64, 0xff, 0x9b]);
        assert_eq!(&v6[12..], &[203, 0, 113, 1]);
        assert_eq!(c.extract(&v6), Some(v4));
        let mut other = v6;
        other[3] = 0x9c;
        assert_eq!(c.extract(&other), None);
    }

    #[test]
    fn errors_map_as_rfc7915_says() {
        assert_eq!(error_to_v4(1, 4), Some((3, 3)));
        assert_eq!(error_to_v4(1, 0), Some((3, 1)));
        assert_eq!(error_to_v4(1, 1), Some((3, 10)));
        assert_eq!(error_to_v4(2, 0), Some((3, 4)));
        assert_eq!(error_to_v4(3, 1), Some((11, 1)));
        assert_eq!(error_to_v4(4, 1), Some((3, 2)));
        // Parameter problem pointing into the header, echo, neighbour discovery: not errors
        // the CLAT carries.
        assert_eq!(error_to_v4(4, 0), None);
        assert_eq!(error_to_v4(128, 0), None);
        assert_eq!(error_to_v4(135, 0), None);
    }

    #[test]
    fn packet_too_big_loses_twenty_bytes() {
        assert_eq!(ptb_mtu(1280), 1260);
        assert_eq!(ptb_mtu(1500), 1480);
        assert_eq!(ptb_mtu(40), 68);
        assert_eq!(ptb_mtu(u32::MAX), 0xffff);
    }
}
