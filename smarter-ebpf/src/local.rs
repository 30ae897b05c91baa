//! `smarter_local`: TC classifier on the node's loopback ingress. The node's own TCP/UDP
//! connections to a hostPort on the uplink address are DNATed into the pod holding it, exactly
//! like a pod's hairpin ([`crate::hairpin::dnat`]); the pod's replies are translated back by
//! `smarter_pod` and delivered locally. Every other loopback packet is untouched and uncounted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::maps::CONFIG_INDEX;

use crate::{
    hairpin,
    maps::CONFIG,
    parse::{ETH_LEN, ETH_P_IP, ETH_TYPE, IP_LEN, read},
    verdict::{action, record},
};

#[classifier]
pub fn smarter_local(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_smarter_local(&ctx) {
        Some((verdict, helper_action)) => {
            record(&ctx, verdict, len);
            action(verdict, helper_action)
        }
        None => TC_ACT_OK,
    }
}

#[inline(always)]
fn try_smarter_local(ctx: &TcContext) -> Option<(smarter_common::Verdict, i32)> {
    let ethertype = read::<[u8; 2]>(ctx, ETH_TYPE)?;
    if u16::from_be_bytes(ethertype) != ETH_P_IP {
        return None;
    }
    let ip = read::<[u8; IP_LEN]>(ctx, ETH_LEN)?;
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    let daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    if cfg.uplink_addr == 0 || daddr != cfg.uplink_addr || ip[0] != 0x45 || frag != 0 {
        return None;
    }
    hairpin::dnat(ctx, &ip, cfg.bridge_mac)
}
