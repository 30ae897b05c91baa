//! `smarter_local`: TC classifier on the node's loopback ingress. The node's own TCP/UDP
//! connections to a hostPort on any of its addresses are DNATed into the pod holding it, exactly
//! like a pod's hairpin ([`crate::hairpin::dnat`]); the pod's replies are translated back by
//! `smarter_pod` and delivered locally. Every other loopback packet is untouched and uncounted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::maps::CONFIG_INDEX;

use crate::{
    hairpin,
    maps::{CONFIG, NODE_ADDRS},
    parse::{ETH_P_IP, ETH_TYPE, Ipv4, read},
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
    let ethertype = read::<[u8; 2]>(ctx, ETH_TYPE)?;
    if u16::from_be_bytes(ethertype) != ETH_P_IP {
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
