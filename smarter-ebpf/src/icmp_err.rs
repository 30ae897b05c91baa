//! ICMP errors (destination unreachable incl. fragmentation needed, time exceeded) arriving on
//! the uplink about a NATed flow: the outer destination and the quoted inner header (source
//! address and port, inner IPv4 checksum) are translated back to the pod, the ICMP checksum is
//! fixed, and the error is delivered into the pod, so path MTU discovery works through the NAT.

use aya_ebpf::{bindings::TC_ACT_REDIRECT, helpers::bpf_redirect_peer, programs::TcContext};
use smarter_common::{CtKey, EndpointKey, Verdict};

use crate::{
    maps::{CT_IN, ENDPOINTS},
    nat::{IP_CSUM, IP_DST, L4, dec_ttl},
    parse::{IP_LEN, read},
};

/// Offset of the quoted IPv4 header inside an ICMP error (after the 8-byte ICMP header).
const INNER: usize = L4 + 8;
const ICMP_CSUM: usize = L4 + 2;

/// `None`: not an ICMP error about one of our flows (host traffic).
#[inline(always)]
pub fn icmp_error(
    ctx: &TcContext,
    ip: &[u8; IP_LEN],
    bridge_mac: [u8; 6],
) -> Option<(Verdict, i32)> {
    let icmp = read::<[u8; 4]>(ctx, L4)?;
    if icmp[0] != 3 && icmp[0] != 11 {
        return None;
    }
    let inner = read::<[u8; 28]>(ctx, INNER)?;
    if inner[0] != 0x45 {
        return None;
    }
    let proto = inner[9];
    let inner_src = u32::from_ne_bytes([inner[12], inner[13], inner[14], inner[15]]);
    let inner_dst = u32::from_ne_bytes([inner[16], inner[17], inner[18], inner[19]]);
    // The quoted packet went out as uplink:nat_port → remote:remote_port.
    let (nat_port, remote_port, port_off) = match proto {
        6 | 17 => (
            u16::from_ne_bytes([inner[20], inner[21]]),
            u16::from_ne_bytes([inner[22], inner[23]]),
            INNER + IP_LEN,
        ),
        // An echo request: the identifier is the port.
        1 if inner[20] == 8 => (
            u16::from_ne_bytes([inner[24], inner[25]]),
            0,
            INNER + IP_LEN + 4,
        ),
        _ => return None,
    };
    let key = CtKey {
        a: inner_dst,
        b: 0,
        a_port: remote_port,
        b_port: nat_port,
        proto,
        pad: [0; 3],
    };
    // SAFETY: read-only lookup, copied at once.
    let (pod_ip, pod_port) = match unsafe { CT_IN.get(key) } {
        Some(v) => (v.addr, v.port),
        None => return None,
    };
    // SAFETY: as above.
    let (ifindex, mac) = match unsafe { ENDPOINTS.get(EndpointKey { addr: pod_ip }) } {
        Some(ep) => (ep.ifindex, ep.mac),
        None => return Some((Verdict::DropNodelocal, -1)),
    };
    let ttl = ip[8];
    if ttl <= 1 {
        return None;
    }
    let outer_dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let old_inner_csum = u16::from_ne_bytes([inner[10], inner[11]]);
    let eth_src = if bridge_mac == [0; 6] {
        read::<[u8; 6]>(ctx, 0)?
    } else {
        bridge_mac
    };
    // Inner header first (its checksum), then the ICMP checksum over every changed word.
    let ok = ctx
        .l3_csum_replace(INNER + 10, u64::from(inner_src), u64::from(pod_ip), 4)
        .is_ok()
        && ctx.store(INNER + 12, &pod_ip, 0).is_ok()
        && ctx.store(port_off, &pod_port, 0).is_ok();
    if !ok {
        return Some((Verdict::DropMalformed, -1));
    }
    let Some(new_inner_csum) = read::<u16>(ctx, INNER + 10) else {
        return Some((Verdict::DropMalformed, -1));
    };
    let ok = ctx
        .l4_csum_replace(ICMP_CSUM, u64::from(inner_src), u64::from(pod_ip), 4)
        .is_ok()
        && ctx
            .l4_csum_replace(
                ICMP_CSUM,
                u64::from(old_inner_csum),
                u64::from(new_inner_csum),
                2,
            )
            .is_ok()
        && ctx
            .l4_csum_replace(ICMP_CSUM, u64::from(nat_port), u64::from(pod_port), 2)
            .is_ok()
        && ctx
            .l3_csum_replace(IP_CSUM, u64::from(outer_dst), u64::from(pod_ip), 4)
            .is_ok()
        && ctx.store(IP_DST, &pod_ip, 0).is_ok()
        && dec_ttl(ctx, ttl, ip[9])
        && ctx.store(0, &mac, 0).is_ok()
        && ctx.store(6, &eth_src, 0).is_ok();
    if !ok {
        return Some((Verdict::DropMalformed, -1));
    }
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    if action != TC_ACT_REDIRECT {
        return Some((Verdict::DropNodelocal, -1));
    }
    Some((Verdict::IcmpErrorIn, action))
}
