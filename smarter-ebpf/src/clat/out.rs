//! IPv4 → IPv6 on the way out ([`out`]; see [`super`]).

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, bpf_adj_room_mode::BPF_ADJ_ROOM_NET,
    },
    helpers::{bpf_redirect_neigh, bpf_skb_adjust_room, bpf_skb_change_proto},
    programs::TcContext,
};
use smarter_common::{
    ClatValue, Verdict,
    clat::{FRAG_HDR_LEN, IPV6_LEN, NEXTHDR_FRAGMENT, NEXTHDR_ICMPV6, icmp6},
    icmp,
};

use super::{csum_diff, pseudo6};
use crate::{
    parse::{ETH_P_IPV6, ETH_TYPE, IP_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, read},
    verdict::Decision,
};

/// Translates the IPv4 packet at `l2` (source [`CLAT_V4`], from the pod program's NAT) to IPv6
/// and sends it out of `ifindex` (the uplink whose egress this is). `l3`: no Ethernet header.
#[inline(always)]
pub fn out(ctx: &TcContext, l2: usize, ifindex: u32, c: &ClatValue, l3: bool) -> Decision {
    match try_out(ctx, l2, ifindex, c, l3) {
        Some(d) => d,
        None => Verdict::DropUnnatable.into(),
    }
}

#[inline(always)]
fn try_out(ctx: &TcContext, l2: usize, ifindex: u32, c: &ClatValue, l3: bool) -> Option<Decision> {
    let h = read::<[u8; IP_LEN]>(ctx, l2)?;
    // Options are not translated (RFC 7915 ignores them; pods do not send them).
    if h[0] != 0x45 {
        return None;
    }
    let tot_len = u16::from_be_bytes([h[2], h[3]]);
    let frag_field = u16::from_be_bytes([h[6], h[7]]);
    let offset = frag_field & 0x1fff;
    let more = frag_field & 0x2000 != 0;
    let fragmented = more || offset != 0;
    let proto = h[9];
    if tot_len < IP_LEN as u16 || !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP) {
        return None;
    }
    let daddr = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    let src6 = c.src6;
    let dst6 = c.embed(daddr);
    let next = if proto == PROTO_ICMP {
        NEXTHDR_ICMPV6
    } else {
        proto
    };
    let payload = tot_len - IP_LEN as u16 + if fragmented { FRAG_HDR_LEN as u16 } else { 0 };

    let l4 = l2 + IP_LEN;
    if offset == 0 {
        l4_checksums(ctx, &h, l4, &src6, &dst6, tot_len - IP_LEN as u16)?;
    }
    // SAFETY: plain helper calls on the program's own context.
    if unsafe { bpf_skb_change_proto(ctx.skb.skb, ETH_P_IPV6.to_be(), 0) } != 0 {
        return None;
    }
    if fragmented
        // SAFETY: as above.
        && unsafe { bpf_skb_adjust_room(ctx.skb.skb, FRAG_HDR_LEN as i32, BPF_ADJ_ROOM_NET, 0) }
            != 0
    {
        return None;
    }
    let p = payload.to_be_bytes();
    let mut v6 = [0u8; IPV6_LEN];
    v6[0] = 0x60 | (h[1] >> 4);
    v6[1] = h[1] << 4;
    v6[4] = p[0];
    v6[5] = p[1];
    v6[6] = if fragmented { NEXTHDR_FRAGMENT } else { next };
    v6[7] = h[8];
    v6[8..24].copy_from_slice(&src6);
    v6[24..40].copy_from_slice(&dst6);
    ctx.store(l2, &v6, 0).ok()?;
    if fragmented {
        let o = ((offset << 3) | u16::from(more)).to_be_bytes();
        let fh: [u8; FRAG_HDR_LEN] = [next, 0, o[0], o[1], 0, 0, h[4], h[5]];
        ctx.store(l2 + IPV6_LEN, &fh, 0).ok()?;
    }
    if l3 {
        return Some(Decision::redirected(Verdict::ClatOut, TC_ACT_OK));
    }
    ctx.store(ETH_TYPE, &ETH_P_IPV6.to_be_bytes(), 0).ok()?;
    // The next hop's MAC: the kernel's route and neighbour lookup for the IPv6 packet (a FIB
    // lookup helper would need IPv6 forwarding on the uplink, which would make the node stop
    // taking its default route from router advertisements). Back through this egress hook,
    // where the backstop knows the CLAT's source.
    // SAFETY: plain helper call; NULL params = resolve the neighbour of the packet's route.
    let act = unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) } as i32;
    Some(Decision::redirected(Verdict::ClatOut, act))
}

/// Fixes the L4 checksum of the IPv4 packet `h` (first fragment or whole) for its IPv6 form:
/// TCP/UDP by the pseudo-header difference, ICMP echo by the type and the pseudo header ICMPv6
/// adds. `len`: the L4 length of the whole datagram (the IPv4 payload).
#[inline(always)]
fn l4_checksums(
    ctx: &TcContext,
    h: &[u8; IP_LEN],
    l4: usize,
    src6: &[u8; 16],
    dst6: &[u8; 16],
    len: u16,
) -> Option<()> {
    match h[9] {
        PROTO_TCP | PROTO_UDP => {
            let (csum_off, flags) = if h[9] == PROTO_TCP {
                (l4 + 16, BPF_F_PSEUDO_HDR)
            } else {
                // IPv6 has no "no checksum" UDP: a pod's zero checksum cannot be translated.
                if read::<[u8; 2]>(ctx, l4 + 6)? == [0, 0] {
                    return None;
                }
                (l4 + 6, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0)
            };
            let mut from = [h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]];
            let mut to = [0u8; 32];
            to[..16].copy_from_slice(src6);
            to[16..].copy_from_slice(dst6);
            let diff = csum_diff(&mut from, &mut to, 0);
            ctx.l4_csum_replace(csum_off, 0, diff as u64, u64::from(flags))
                .ok()
        }
        _ => {
            let [kind, code] = read::<[u8; 2]>(ctx, l4)?;
            if kind != icmp::ECHO_REQUEST {
                return None;
            }
            let mut from = [kind, code, 0, 0];
            let mut to = [0u8; 44];
            to[..40].copy_from_slice(&pseudo6(src6, dst6, u32::from(len)));
            to[40] = icmp6::ECHO_REQUEST;
            to[41] = code;
            let diff = csum_diff(&mut from, &mut to, 0);
            ctx.l4_csum_replace(l4 + 2, 0, diff as u64, 0).ok()?;
            ctx.store(l4, &icmp6::ECHO_REQUEST, 0).ok()
        }
    }
}
