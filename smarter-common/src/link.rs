//! What a pod may say on the link beyond its IPv4 address, written once for the pod program and
//! the nftables rules: its link-local IPv6 address (the one its MAC gives it), the shape of the
//! neighbour discovery it may send, and the messages only routers and DHCP servers send (the
//! RA guard: router advertisements, redirects, DHCPv6 server messages).

/// IPv6 next-header numbers the pod program walks or inspects.
pub mod nexthdr {
    /// Hop-by-hop options (MLD reports carry one).
    pub const HOP_BY_HOP: u8 = 0;
    /// UDP.
    pub const UDP: u8 = 17;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
}

/// ICMPv6 Router Solicitation (RFC 4861).
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
/// ICMPv6 Router Advertisement: only routers send it.
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
/// ICMPv6 Neighbour Solicitation.
pub const ICMPV6_NEIGHBOUR_SOLICIT: u8 = 135;
/// ICMPv6 Neighbour Advertisement.
pub const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
/// ICMPv6 Redirect: only routers send it.
pub const ICMPV6_REDIRECT: u8 = 137;
/// ICMP (IPv4) Redirect: only routers send it.
pub const ICMP_REDIRECT: u8 = 5;
/// ICMP (IPv4) Router Advertisement (RFC 1256): only routers send it.
pub const ICMP_ROUTER_ADVERT: u8 = 9;
/// The UDP port DHCPv6 clients listen on: whatever is sent to it is a server's or a relay's
/// message to a client.
pub const DHCPV6_CLIENT_PORT: u16 = 546;

/// Neighbour discovery option: source link-layer address.
pub const ND_OPT_SOURCE_LINK_ADDR: u8 = 1;
/// Neighbour discovery option: target link-layer address.
pub const ND_OPT_TARGET_LINK_ADDR: u8 = 2;
/// The option bytes a pod's neighbour discovery message may carry: two 8-byte options (a
/// link-layer address and the DAD nonce Linux adds), in the slots [`ND_OPTION_SLOTS`].
pub const ND_MAX_OPTION_BYTES: usize = 16;
/// Offsets of the option slots after the fixed part of a neighbour discovery message.
pub const ND_OPTION_SLOTS: [usize; 2] = [0, 8];
/// Extension headers the pod program walks to reach the upper-layer header; IPv6 from a pod
/// with a longer chain is dropped (it could hide a router advertisement).
pub const MAX_EXT_HEADERS: usize = 3;

/// Whether ICMPv6 type `kind` is a router's message (router advertisement, redirect).
#[must_use]
pub const fn is_router_icmpv6(kind: u8) -> bool {
    kind == ICMPV6_ROUTER_ADVERT || kind == ICMPV6_REDIRECT
}

/// Whether ICMP (IPv4) type `kind` is a router's message (redirect, router advertisement).
#[must_use]
pub const fn is_router_icmp(kind: u8) -> bool {
    kind == ICMP_REDIRECT || kind == ICMP_ROUTER_ADVERT
}

/// Whether neighbour discovery option type `kind` carries a link-layer address.
#[must_use]
pub const fn is_link_addr_option(kind: u8) -> bool {
    kind == ND_OPT_SOURCE_LINK_ADDR || kind == ND_OPT_TARGET_LINK_ADDR
}

/// The length of the fixed part (ICMPv6 header included, options excluded) of the neighbour
/// discovery message `kind` a pod may send (router or neighbour solicitation, neighbour
/// advertisement); `None` for any other type.
#[must_use]
pub const fn nd_fixed_len(kind: u8) -> Option<usize> {
    match kind {
        ICMPV6_ROUTER_SOLICIT => Some(8),
        ICMPV6_NEIGHBOUR_SOLICIT | ICMPV6_NEIGHBOUR_ADVERT => Some(24),
        _ => None,
    }
}

/// The link-local address an interface with `mac` has: `fe80::/64` with the modified EUI-64
/// interface identifier (RFC 4291 appendix A), what Linux derives by default in a pod's
/// namespace (`addr_gen_mode` 0). The only IPv6 address a pod's neighbour discovery may claim.
#[must_use]
pub const fn link_local_of(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_the_kernels_eui64() {
        // `ip -6 addr` of an interface with MAC 02:00:00:00:00:03: fe80::ff:fe00:3.
        assert_eq!(
            link_local_of([0x02, 0, 0, 0, 0, 0x03]),
            [
                0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0x03
            ]
        );
        // The universal/local bit flips both ways: 52:54:00:12:34:56 → fe80::5054:ff:fe12:3456.
        let ll = link_local_of([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(&ll[8..], &[0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn router_messages_and_nd_shapes() {
        assert!(is_router_icmpv6(134) && is_router_icmpv6(137));
        assert!(!is_router_icmpv6(133) && !is_router_icmpv6(135) && !is_router_icmpv6(136));
        assert!(is_router_icmp(5) && is_router_icmp(9) && !is_router_icmp(8));
        assert_eq!(nd_fixed_len(133), Some(8));
        assert_eq!(nd_fixed_len(135), Some(24));
        assert_eq!(nd_fixed_len(136), Some(24));
        assert_eq!(nd_fixed_len(134), None);
        assert_eq!(ND_OPTION_SLOTS.len() * 8, ND_MAX_OPTION_BYTES);
        assert!(is_link_addr_option(1) && is_link_addr_option(2) && !is_link_addr_option(14));
    }
}
