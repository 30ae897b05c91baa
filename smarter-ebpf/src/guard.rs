//! What a pod may say on the link besides IPv4 and ARP (which [`crate::pod`] checks against
//! its endpoint): IPv6 only with its own MAC, from its link-local address or `::`; no router
//! messages (router advertisements and redirects, DHCPv6 server messages, and what could hide
//! one: fragments — unless from a dual-stack pod's own ULA to a unicast destination beyond the
//! link —, long extension-header chains) — the RA guard; and neighbour discovery that
//! claims only its own link-local address and MAC. A dual-stack pod ([`crate::pod6`]) may also
//! send from and claim its own IPv6 (ULA) address ([`rules`] with its port, [`is_own6`]). The
//! rules' constants and the link-local derivation are `smarter_common::link`'s, shared with the
//! nftables rules.

use aya_ebpf::programs::TcContext;
use smarter_common::{
    EndpointKey, Verdict,
    link::{
        DHCPV6_CLIENT_PORT, ICMPV6_NEIGHBOUR_ADVERT, ICMPV6_NEIGHBOUR_SOLICIT, MAX_EXT_HEADERS,
        ND_MAX_OPTION_BYTES, ND_OPTION_SLOTS, is_link_addr_option, is_router_icmpv6, link_local_of,
        nd_fixed_len, nexthdr,
    },
    v6::Endpoint6Key,
};

use crate::{
    maps::{ENDPOINTS, ENDPOINTS6, EP_IFACES},
    parse::{ETH_LEN, read},
};

/// Offset of the header after the IPv6 header (40 bytes).
pub const L4: usize = ETH_LEN + 40;

/// Whether `mac` is the MAC of the endpoint behind host veth `ifindex` (the `ep_ifaces` entry
/// names the endpoint, whose own entry must agree on the interface).
#[inline(always)]
pub fn owns_mac(ifindex: u32, mac: [u8; 6]) -> bool {
    // SAFETY: read-only lookups; values are copied before the next helper call.
    let Some(key) = (unsafe { EP_IFACES.get(ifindex) }).copied() else {
        return false;
    };
    // SAFETY: as above.
    match unsafe { ENDPOINTS.get(EndpointKey { addr: key.addr }) } {
        Some(ep) => ep.ifindex == ifindex && ep.mac == mac,
        None => false,
    }
}

/// The verdict on an IPv6 frame from the pod behind `ifindex` (source MAC `eth_src`).
#[inline(always)]
pub fn ipv6(ctx: &TcContext, ifindex: u32, eth_src: [u8; 6]) -> Verdict {
    if !owns_mac(ifindex, eth_src) {
        return Verdict::DropSpoof;
    }
    // Up to the first bytes of the destination, in one read (separate reads let the compiler
    // merge their bounds checks in a way the verifier cannot follow).
    let Some(h) = read::<[u8; 26]>(ctx, ETH_LEN) else {
        return Verdict::DropMalformed;
    };
    // The source as two words (compared without a `memcmp` call, which BPF has not).
    let src = (word(&h, 8), word(&h, 16));
    let (d0, d1) = (h[24], h[25]);
    // Pods hold no IPv6 address but their link-local one.
    let link_local = h[8] == 0xfe && h[9] & 0xc0 == 0x80;
    let unspecified = !link_local && src == (0, 0);
    if !link_local && !unspecified {
        return Verdict::DropSpoof;
    }
    // Pods have no IPv6 network: only link-local and multicast destinations (neighbour
    // discovery, link-local between pods and with the node) go on, through the bridge.
    // Anything else would be routed off the node by a node that forwards IPv6.
    if d0 != 0xff && !(d0 == 0xfe && d1 & 0xc0 == 0x80) {
        return Verdict::DropIpv6;
    }
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    rules(ctx, h[6], len, src, eth_src, 0, false)
}

/// The RA guard and neighbour discovery claims of an IPv6 packet from the pod with MAC `mac`
/// whose header says next header `next`, payload length `len`, source `src` (as [`word`]s):
/// `PassL2` when it says nothing a pod may not. `ula_ifindex` (0: none) is the host veth of a
/// dual-stack pod: its own IPv6 (ULA) address ([`is_own6`]) may then be claimed too.
/// `fragments`: the packet cannot be a router message whatever it hides (a dual-stack pod's
/// own ULA source to a global or ULA unicast destination: router messages are link-local
/// sourced, RFC 4861), so a fragment passes; otherwise fragments are dropped, as the
/// nftables datapath's guard does.
#[inline(always)]
pub fn rules(
    ctx: &TcContext,
    next: u8,
    len: usize,
    src: (u64, u64),
    mac: [u8; 6],
    ula_ifindex: u32,
    fragments: bool,
) -> Verdict {
    // The upper-layer header, behind at most MAX_EXT_HEADERS extension headers.
    let (mut next, mut off) = (next, L4);
    for _ in 0..MAX_EXT_HEADERS {
        if !matches!(
            next,
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS
        ) {
            break;
        }
        let Some(ext) = read::<[u8; 2]>(ctx, off) else {
            return Verdict::DropMalformed;
        };
        next = ext[0];
        off += (usize::from(ext[1]) + 1) * 8;
    }
    match next {
        nexthdr::FRAGMENT if fragments => Verdict::PassL2,
        // A fragment, or a chain longer than we walk, could hide a router advertisement.
        nexthdr::FRAGMENT | nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
            Verdict::DropRaGuard
        }
        nexthdr::ICMPV6 => {
            // Type and code: a one-byte read at a variable offset compiles to a bound the
            // verifier cannot use.
            let Some([kind, _]) = read::<[u8; 2]>(ctx, off) else {
                return Verdict::DropMalformed;
            };
            if is_router_icmpv6(kind) {
                return Verdict::DropRaGuard;
            }
            match nd_fixed_len(kind) {
                // Neighbour discovery never comes behind extension headers.
                Some(_) if off != L4 => Verdict::DropSpoof,
                Some(fixed) => neighbour_discovery(ctx, src, len, kind, fixed, mac, ula_ifindex),
                None => Verdict::PassL2,
            }
        }
        nexthdr::UDP => match read::<[u8; 4]>(ctx, off) {
            Some(udp) if u16::from_be_bytes([udp[2], udp[3]]) == DHCPV6_CLIENT_PORT => {
                Verdict::DropRaGuard
            }
            Some(_) => Verdict::PassL2,
            None => Verdict::DropMalformed,
        },
        _ => Verdict::PassL2,
    }
}

/// A router or neighbour solicitation or a neighbour advertisement (`kind`, fixed part `fixed`
/// bytes, payload `len` bytes) right after an IPv6 header with source `src` (as [`word`]s): it
/// may come only from the pod's link-local address (or `::`, or with `ula_ifindex` its own
/// IPv6 address), advertise only those addresses, probe only them from `::` (DAD), carry at
/// most [`ND_MAX_OPTION_BYTES`] of options, and any link-layer address option must be `mac`.
#[inline(always)]
fn neighbour_discovery(
    ctx: &TcContext,
    src: (u64, u64),
    len: usize,
    kind: u8,
    fixed: usize,
    mac: [u8; 6],
    ula_ifindex: u32,
) -> Verdict {
    let ll = link_local_of(mac);
    let own = (word(&ll, 0), word(&ll, 8));
    let unspecified = src == (0, 0);
    if !unspecified && src != own && !(ula_ifindex != 0 && is_own6(src, ula_ifindex, mac)) {
        return Verdict::DropSpoof;
    }
    if len < fixed {
        return Verdict::DropMalformed;
    }
    if len > fixed + ND_MAX_OPTION_BYTES {
        return Verdict::DropSpoof;
    }
    if kind == ICMPV6_NEIGHBOUR_ADVERT || (kind == ICMPV6_NEIGHBOUR_SOLICIT && unspecified) {
        // The target address follows the 8-byte ICMPv6 header.
        let Some(target) = read::<[u8; 16]>(ctx, L4 + 8) else {
            return Verdict::DropMalformed;
        };
        let target = (word(&target, 0), word(&target, 8));
        if target != own && !(ula_ifindex != 0 && is_own6(target, ula_ifindex, mac)) {
            return Verdict::DropSpoof;
        }
    }
    // The option slots one by one (a loop over them would read its offsets from `.rodata`).
    let [first, second] = ND_OPTION_SLOTS;
    match option(ctx, len, fixed + first, mac) {
        Verdict::PassL2 => option(ctx, len, fixed + second, mac),
        other => other,
    }
}

/// The option slot `at` bytes into a neighbour discovery message of `len` bytes: nothing when
/// the message ends before it; a link-layer address option in it must carry `mac`.
#[inline(always)]
fn option(ctx: &TcContext, len: usize, at: usize, mac: [u8; 6]) -> Verdict {
    if len < at + 8 {
        return Verdict::PassL2;
    }
    let Some(opt) = read::<[u8; 8]>(ctx, L4 + at) else {
        return Verdict::DropMalformed;
    };
    if is_link_addr_option(opt[0]) && [opt[2], opt[3], opt[4], opt[5], opt[6], opt[7]] != mac {
        return Verdict::DropSpoof;
    }
    Verdict::PassL2
}

/// Whether the IPv6 address `addr` (as [`word`]s) is the endpoint on `ifindex` with MAC `mac`
/// ([`ENDPOINTS6`]).
#[inline(always)]
pub fn is_own6(addr: (u64, u64), ifindex: u32, mac: [u8; 6]) -> bool {
    let (a, b) = (addr.0.to_ne_bytes(), addr.1.to_ne_bytes());
    let key = Endpoint6Key {
        addr: [
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5],
            b[6], b[7],
        ],
    };
    // SAFETY: read-only lookup, the value is copied out at once.
    match unsafe { ENDPOINTS6.get(key) } {
        Some(ep) => ep.ifindex == ifindex && ep.mac == mac,
        None => false,
    }
}

/// The eight bytes of `a` at `at` as a native word.
#[inline(always)]
pub fn word<const N: usize>(a: &[u8; N], at: usize) -> u64 {
    u64::from_ne_bytes([
        a[at],
        a[at + 1],
        a[at + 2],
        a[at + 3],
        a[at + 4],
        a[at + 5],
        a[at + 6],
        a[at + 7],
    ])
}
