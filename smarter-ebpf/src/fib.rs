//! The route of a pod's packet off the node ([`lookup`]: the FIB lookup as the node would
//! forward it from the bridge, with the MTU checked) and the way out ([`redirect`]: with the
//! next hop's MACs, through the kernel's neighbour resolution, or without an Ethernet header
//! on a layer-3 device).

use core::mem::size_of;

use aya_ebpf::{
    bindings::bpf_fib_lookup,
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use smarter_common::NetConfig;

use crate::parse::{ETH_LEN, Ipv4, PROTO_TCP, read};

const AF_INET: u8 = 2;
/// `BPF_FIB_LKUP_RET_SUCCESS`: a route and a known next hop.
pub const FIB_SUCCESS: i64 = 0;
/// `BPF_FIB_LKUP_RET_NOT_FWDED`: no route.
pub const FIB_NOT_FWDED: i64 = 4;
/// `BPF_FIB_LKUP_RET_NO_NEIGH`: a route, the next hop's MAC unknown.
pub const FIB_NO_NEIGH: i64 = 7;
/// `BPF_FIB_LKUP_RET_FRAG_NEEDED`: larger than the route's MTU.
pub const FIB_FRAG_NEEDED: i64 = 8;

/// Looks `ip` up as forwarded from the bridge with the pod's own source (policy routing sees
/// what it sees for the reference's forwarded packet), checking the MTU: one segment of a GSO
/// packet (headers plus `gso_size`), else the packet as it is. Fills `fib`; returns the
/// helper's `BPF_FIB_LKUP_RET_*`.
#[inline(always)]
pub fn lookup(ctx: &TcContext, ip: &Ipv4, cfg: &NetConfig, fib: &mut bpf_fib_lookup) -> i64 {
    fib.family = AF_INET;
    fib.l4_protocol = ip.proto();
    // SAFETY: reading `gso_segs`/`gso_size`/`ifindex` from a TC program's `__sk_buff` is
    // allowed.
    let (gso_segs, gso_size, in_ifindex) = unsafe {
        let skb = ctx.skb.skb;
        ((*skb).gso_segs, (*skb).gso_size, (*skb).ifindex)
    };
    fib.__bindgen_anon_1.tot_len = if gso_segs > 1 {
        segment_len(ctx, ip, gso_size)
    } else {
        ip.tot_len()
    };
    fib.ifindex = if cfg.bridge_ifindex != 0 {
        cfg.bridge_ifindex
    } else {
        in_ifindex
    };
    fib.__bindgen_anon_3.ipv4_src = ip.saddr();
    fib.__bindgen_anon_4.ipv4_dst = ip.daddr();
    // SAFETY: `fib` lives on the caller's stack for the duration of the call; size is its
    // real size.
    unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            fib,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    }
}

/// Redirects a translated packet out of the interface `fib` found (`ret` its lookup's
/// result): with the next hop's MACs when the kernel knows them, else through the kernel's
/// neighbour resolution; on a layer-3 device (`l3`) without a link-layer header (the kernel
/// strips the Ethernet header on the way in), and to an IPv6-only uplink's CLAT as it is (its
/// egress program writes the IPv6 and Ethernet headers, [`crate::clat::out`]). The TC action; `None` when the MACs could not
/// be written.
#[inline(always)]
pub fn redirect(ctx: &TcContext, ret: i64, fib: &bpf_fib_lookup, l3: bool) -> Option<i32> {
    let out = fib.ifindex;
    if l3 {
        // SAFETY: plain helper call.
        return Some(unsafe { bpf_redirect(out, 0) as i32 });
    }
    if ret == FIB_SUCCESS {
        if ctx.store(0, &fib.dmac, 0).is_err() || ctx.store(6, &fib.smac, 0).is_err() {
            return None;
        }
        // SAFETY: plain helper call.
        return Some(unsafe { bpf_redirect(out, 0) as i32 });
    }
    // SAFETY: plain helper call; NULL params = resolve the neighbour of the packet's route.
    Some(unsafe { bpf_redirect_neigh(out, core::ptr::null_mut(), 0, 0) as i32 })
}

/// The IPv4 length of one segment of a GSO packet of `gso_size` payload bytes: IP header, the
/// TCP header with its options (UDP: 8 bytes), and the payload.
#[inline(always)]
fn segment_len(ctx: &TcContext, ip: &Ipv4, gso_size: u32) -> u16 {
    let ip_hdr = (ip.l4_off() - ETH_LEN) as u32;
    let l4_hdr = if ip.proto() == PROTO_TCP {
        // The data offset's high nibble, in 32-bit words.
        read::<[u8; 13]>(ctx, ip.l4_off()).map_or(20, |t| u32::from(t[12] >> 4) * 4)
    } else {
        8
    };
    let len = ip_hdr + l4_hdr + gso_size;
    if len > 0xffff { 0xffff } else { len as u16 }
}
