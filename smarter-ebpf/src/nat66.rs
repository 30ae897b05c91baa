//! NAT66: pod ULA sources masqueraded to the global IPv6 address of the external interface
//! the route lookup picks ([`crate::maps::UPLINKS6`]), as the kernel's `ip6 masquerade` does
//! (TCP, UDP and ICMPv6 echo, ports preserved when free), with conntrack in
//! [`crate::maps::CT6_OUT`]/[`crate::maps::CT6_IN`] and the reverse path
//! ([`crate::in6::rnat6`]). Fragmented datagrams: the first fragment is translated by its
//! ports (the L4 checksum covers the whole datagram, so the incremental fix in the first
//! fragment is right); later ones only get the source address ([`crate::frag6`]). IPv6
//! has no header checksum: the address change is folded into the L4 checksum (a pseudo-header
//! field), and the hop limit is decremented as a router does.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns},
    programs::TcContext,
};
use smarter_common::{NetConfig, Verdict, link::nexthdr};

use crate::{
    ct6::nat_port_for6,
    fib::{self, FIB_NO_NEIGH, FIB_SUCCESS},
    frag6, icmp6_out,
    ip6::{
        HOP_OFF, ICMP6_ECHO_REQUEST, IP6_LEN, Ipv6, L4_OFF, L4Info6, PSEUDO, SRC_OFF, csum_diff16,
        l4,
    },
    maps::{NAT66_SCRATCH, UPLINKS, UPLINKS6},
    parse::{ETH_LEN, PROTO_TCP, read},
    verdict::Decision,
};

const AF_INET6: u8 = 10;

const _: () =
    assert!(size_of::<bpf_fib_lookup>() == 64 && core::mem::align_of::<bpf_fib_lookup>() <= 8);

/// The route lookup (as the node would forward the packet from the pod's host veth), then
/// SNAT of the pod's ULA source to the chosen interface's global address and the redirect out
/// of it. `PassHost`: hop limit expiring, or no route / too big / a local destination (the
/// host stack answers with the right ICMPv6 error; nothing was rewritten). `DropNoRoute`:
/// routed out of an interface without a NAT66 address. `DropUnnatable`: not TCP, UDP or an
/// echo request (behind at most [`smarter_common::link::MAX_EXT_HEADERS`] extension headers
/// and a fragment header, [`frag6::shape`]), nor an ICMPv6 error about one of the pod's flows
/// ([`crate::icmp6_out`]) right after the IPv6 header.
#[inline(always)]
pub fn snat(ctx: &TcContext, ip: &Ipv6, cfg: &NetConfig) -> Decision {
    let hop = ip.hop_limit();
    if hop <= 1 {
        return Verdict::PassHost.into();
    }
    let Some(sh) = frag6::shape(ctx, ip) else {
        return Verdict::DropMalformed.into();
    };
    let proto = sh.proto;
    // A later fragment has no L4 header: only its source changes, to the address its first
    // fragment got (the same route lookup picks the same interface).
    let what = if sh.later {
        Out::Later
    } else if let Some(l) = l4(ctx, proto, sh.l4, ICMP6_ECHO_REQUEST, true) {
        Out::Flow(l)
    } else if let Some(e) = (proto == nexthdr::ICMPV6 && sh.l4 == L4_OFF)
        .then(|| icmp6_out::flow_of(ctx, &ip.src()))
        .flatten()
    {
        Out::Error(e)
    } else {
        return Verdict::DropUnnatable.into();
    };
    let Some(scratch) = NAT66_SCRATCH.get_ptr_mut(0) else {
        return Verdict::DropMalformed.into();
    };
    // SAFETY: this CPU's slot of a per-CPU array, nobody else's while this program runs.
    let s = unsafe { &mut *scratch };
    // SAFETY: `fib` is 64 bytes, 8-aligned: the size and alignment of `bpf_fib_lookup`
    // (asserted below); all-zero is a valid request to fill in.
    let fib = unsafe { &mut *s.fib.as_mut_ptr().cast::<bpf_fib_lookup>() };
    // SAFETY: as above.
    *fib = unsafe { zeroed() };
    s.src = ip.src();
    s.dst = ip.dst();
    fib.family = AF_INET6;
    fib.l4_protocol = proto;
    fib.__bindgen_anon_1.tot_len = mtu_len(ctx, ip, &sh);
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
    fib.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    fib.__bindgen_anon_3.ipv6_src = as_words(&s.src);
    fib.__bindgen_anon_4.ipv6_dst = as_words(&s.dst);
    // SAFETY: `fib` lives on this stack for the call; size is its real size.
    let ret = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            core::ptr::from_mut(fib),
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if ret != FIB_SUCCESS && ret != FIB_NO_NEIGH {
        return Verdict::PassHost.into();
    }
    let out = fib.ifindex;
    // SAFETY: read-only lookups, copied at once.
    match unsafe { UPLINKS6.get(out) } {
        // Through the stack: a copy from one map value to another compiles to a `memmove`
        // call (the two might overlap, as far as the compiler knows), which the arm32 JIT
        // cannot take.
        // SAFETY: a valid map value, read once.
        Some(u) => s.nat = unsafe { core::ptr::read_volatile(&u.addr) },
        None => return Verdict::DropNoRoute.into(),
    }
    // SAFETY: as above.
    let (l3, egress) = match unsafe { UPLINKS.get(out) } {
        Some(u) => (u.is_l3(), u.is_egress()),
        None => (false, true),
    };
    if !egress {
        return Verdict::DropNoRoute.into();
    }
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let rewritten = match what {
        Out::Flow(l) => {
            let Some(nat_port) = nat_port_for6(s, &l, proto, cfg, now) else {
                return Verdict::DropNatPorts.into();
            };
            rewrite6(ctx, &l, SRC_OFF, &mut s.src, &mut s.nat, nat_port)
        }
        Out::Later => ctx.store(SRC_OFF, &s.nat, 0).is_ok(),
        // The flow's own address, not the route's (they differ only after a failover).
        Out::Error(mut e) => icmp6_out::rewrite(ctx, &mut e, &mut s.src),
    };
    if !rewritten || ctx.store(HOP_OFF, &(hop - 1), 0).is_err() {
        return Verdict::DropMalformed.into();
    }
    // SAFETY: as above (the work space is still this CPU's).
    let fib = unsafe { &*s.fib.as_ptr().cast::<bpf_fib_lookup>() };
    let Some(action) = fib::redirect(ctx, ret, fib, l3) else {
        return Verdict::DropMalformed.into();
    };
    Decision::redirected(Verdict::NatOut, action)
}

/// What [`snat`] translates.
enum Out {
    /// A TCP/UDP packet or an echo request (a first fragment included): by its ports.
    Flow(L4Info6),
    /// A later fragment: its source only.
    Later,
    /// The pod's ICMPv6 error about one of its flows.
    Error(icmp6_out::ErrorFlow),
}

/// Rewrites the address at `addr_off` from `old` to `new` and the port (or echo identifier)
/// to `new_port`, fixing the L4 checksum (the address is part of its pseudo header).
#[inline(always)]
pub fn rewrite6(
    ctx: &TcContext,
    l: &L4Info6,
    addr_off: usize,
    old: &mut [u8; 16],
    new: &mut [u8; 16],
    new_port: u16,
) -> bool {
    let Some(diff) = csum_diff16(old, new) else {
        return false;
    };
    ctx.l4_csum_replace(l.csum_off, 0, diff, PSEUDO | l.flags)
        .is_ok()
        && ctx
            .l4_csum_replace(
                l.csum_off,
                u64::from(l.port),
                u64::from(new_port),
                2 | l.flags,
            )
            .is_ok()
        && ctx.store(l.port_off, &new_port, 0).is_ok()
        && ctx.store(addr_off, new, 0).is_ok()
}

/// The address as the four native words the helpers take.
#[inline(always)]
fn as_words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// The IPv6 length the route's MTU is checked against: one segment of a GSO packet (the
/// headers up to L4, the TCP header with its options or UDP's 8 bytes, and `gso_size`; the
/// kernel segments it on the way out, as for IPv4 in [`fib::lookup`]), else the packet as it
/// is. Checking a pod's TSO super-packet whole would send it to the host stack as "too big".
#[inline(always)]
fn mtu_len(ctx: &TcContext, ip: &Ipv6, sh: &frag6::Shape) -> u16 {
    // SAFETY: reading `gso_segs`/`gso_size` from a TC program's `__sk_buff` is allowed.
    let (segs, size) = unsafe { ((*ctx.skb.skb).gso_segs, (*ctx.skb.skb).gso_size) };
    if segs <= 1 {
        return ip.payload_len().saturating_add(IP6_LEN as u16);
    }
    let l4_hdr = if sh.proto == PROTO_TCP {
        // The data offset's high nibble, in 32-bit words.
        read::<[u8; 13]>(ctx, sh.l4).map_or(20, |t| u32::from(t[12] >> 4) * 4)
    } else {
        8
    };
    let len = (sh.l4 - ETH_LEN) as u32 + l4_hdr + size;
    if len > 0xffff { 0xffff } else { len as u16 }
}
