//! `smarter_local`: TC classifier on the node's loopback ingress. The node's own TCP/UDP
//! connections to a hostPort on any of its addresses are DNATed into the pod holding it, exactly
//! like a pod's hairpin ([`crate::hairpin::dnat`]); the pod's replies are translated back by
//! `smarter_pod` and delivered locally. Every other loopback packet is untouched and uncounted.
//! IPv6 goes to `smarter_local6` by tail call: the same for the node's IPv6 addresses
//! ([`crate::in6::rnat6`]; replies translated back by `smarter_pod6`).

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::{maps::CONFIG_INDEX, v6::TAIL_LOCAL6};

use crate::{
    hairpin,
    in6::{From, rnat6},
    ip6::Ipv6,
    maps::{CONFIG, NODE_ADDRS, NODE_ADDRS6, TAILS},
    parse::{ETH_P_IP, ETH_P_IPV6, ETH_TYPE, Ipv4, read},
    verdict::Decision,
};

#[classifier]
pub fn smarter_local(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_smarter_local(&ctx) {
        Some(decision) => decision.finish(&ctx, len),
        None => TC_ACT_OK,
    }
}

#[inline(always)]
fn try_smarter_local(ctx: &TcContext) -> Option<Decision> {
    let ethertype = u16::from_be_bytes(read::<[u8; 2]>(ctx, ETH_TYPE)?);
    if ethertype == ETH_P_IPV6 {
        // SAFETY: a tail call on the program's own context; it only returns on failure (an
        // empty slot: the host's).
        unsafe { TAILS.tail_call(ctx, TAIL_LOCAL6) };
        return None;
    }
    if ethertype != ETH_P_IP {
        return None;
    }
    let ip = Ipv4::read(ctx)?;
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    // SAFETY: read-only lookup, nothing kept.
    if unsafe { NODE_ADDRS.get(ip.daddr()) }.is_none() || !ip.is_simple() {
        return None;
    }
    hairpin::dnat(ctx, &ip, cfg.bridge_mac)
}

#[classifier]
pub fn smarter_local6(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_local6(&ctx) {
        Some(decision) => decision.finish(&ctx, len),
        None => TC_ACT_OK,
    }
}

/// The node's own IPv6 to one of its addresses: a hostPort flow into its pod.
#[inline(always)]
fn try_local6(ctx: &TcContext) -> Option<Decision> {
    let ip = Ipv6::read(ctx)?;
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    // SAFETY: read-only lookup, nothing kept.
    if !cfg.has_v6() || unsafe { NODE_ADDRS6.get(ip.dst()) }.is_none() {
        return None;
    }
    rnat6(ctx, &ip, cfg.bridge_mac, From::Node)
}
