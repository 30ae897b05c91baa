//! Packet rewriting shared by the NAT directions: address and port with checksum fixes, the
//! TTL, and delivery of a translated packet into its pod.

use aya_ebpf::{bindings::TC_ACT_REDIRECT, helpers::bpf_redirect_peer, programs::TcContext};
use smarter_common::{EndpointKey, Verdict, uplink::DIR_IN};

use crate::{
    l4::L4Info,
    maps::ENDPOINTS,
    parse::{ETH_LEN, Ipv4, read},
    stats,
    verdict::Decision,
};

pub const IP_CSUM: usize = ETH_LEN + 10;
const IP_TTL: usize = ETH_LEN + 8;
pub const IP_SRC: usize = ETH_LEN + 12;
pub const IP_DST: usize = ETH_LEN + 16;

/// Rewrites address (at `addr_off`) and, when there is one, the port, fixing IPv4 and L4
/// checksums.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    l: &L4Info,
    addr_off: usize,
    old: u32,
    new: u32,
    new_port: u16,
) -> bool {
    let l4_ok = !l.ports
        || ((l.addr_flags == 0
            || ctx
                .l4_csum_replace(l.csum_off, u64::from(old), u64::from(new), l.addr_flags)
                .is_ok())
            && ctx
                .l4_csum_replace(
                    l.csum_off,
                    u64::from(l.port),
                    u64::from(new_port),
                    l.port_flags,
                )
                .is_ok()
            && ctx.store(l.port_off, &new_port, 0).is_ok());
    l4_ok
        && ctx
            .l3_csum_replace(IP_CSUM, u64::from(old), u64::from(new), 4)
            .is_ok()
        && ctx.store(addr_off, &new, 0).is_ok()
}

/// Decrements the TTL (caller checked it is > 1) and fixes the IPv4 checksum.
#[inline(always)]
pub fn dec_ttl(ctx: &TcContext, ttl: u8, proto: u8) -> bool {
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl - 1, proto]);
    ctx.l3_csum_replace(IP_CSUM, u64::from(old), u64::from(new), 2)
        .is_ok()
        && ctx.store(IP_TTL, &(ttl - 1), 0).is_ok()
}

/// Delivers a translated packet into the pod `pod_ip` (destination already rewritten; the
/// caller checked TTL > 1): TTL, MACs, redirect into the pod's namespace. `DropNodelocal` when
/// the pod is gone.
#[inline(always)]
pub fn deliver(
    ctx: &TcContext,
    ip: &Ipv4,
    pod_ip: u32,
    bridge_mac: [u8; 6],
    v: Verdict,
) -> Decision {
    // SAFETY: read-only lookup, copied at once.
    let (ifindex, mac) = match unsafe { ENDPOINTS.get(EndpointKey { addr: pod_ip }) } {
        Some(ep) => (ep.ifindex, ep.mac),
        None => return Verdict::DropNodelocal.into(),
    };
    // The pod sees the bridge (its gateway) as the sender; the uplink's MAC when unknown.
    let eth_src = if bridge_mac == [0; 6] {
        match read::<[u8; 6]>(ctx, 0) {
            Some(m) => m,
            None => return Verdict::DropMalformed.into(),
        }
    } else {
        bridge_mac
    };
    if !dec_ttl(ctx, ip.ttl(), ip.proto())
        || ctx.store(0, &mac, 0).is_err()
        || ctx.store(6, &eth_src, 0).is_err()
    {
        return Verdict::DropMalformed.into();
    }
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed: the external
    // interface the packet arrived on.
    let via = unsafe { (*ctx.skb.skb).ifindex };
    stats::pod_iface(pod_ip, via, DIR_IN, ctx.len());
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    if action != TC_ACT_REDIRECT {
        return Verdict::DropNodelocal.into();
    }
    Decision::redirected(v, action)
}
