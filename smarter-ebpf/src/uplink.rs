//! `smarter_uplink`: TC classifier on the uplink's ingress. Replies to NATed flows (to the uplink
//! address, conntrack hit; with options, fragmented, any protocol) are reverse-NATed into the pod; IPv4 to a pod-subnet address is
//! dropped (node-local-only); everything else (host traffic) passes untouched.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, maps::CONFIG_INDEX};

use crate::{
    maps::CONFIG,
    nat::rnat,
    parse::{ETH_P_IP, ETH_TYPE, Ipv4, read},
    verdict::{action, record},
};

#[classifier]
pub fn smarter_uplink(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_smarter_uplink(&ctx) {
        Some((verdict, helper_action)) => {
            record(&ctx, verdict, len);
            action(verdict, helper_action)
        }
        // Host traffic: not counted, never touched.
        None => TC_ACT_OK,
    }
}

/// `Some(verdict)` for packets the datapath owns, `None` for host traffic.
#[inline(always)]
fn try_smarter_uplink(ctx: &TcContext) -> Option<(Verdict, i32)> {
    let ethertype = read::<[u8; 2]>(ctx, ETH_TYPE)?;
    if u16::from_be_bytes(ethertype) != ETH_P_IP {
        return None;
    }
    // Truncated IPv4 is the host stack's to drop.
    let ip = Ipv4::read(ctx)?;
    let daddr = ip.daddr();
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    if cfg.uplink_addr != 0 && daddr == cfg.uplink_addr {
        // Not a NATed flow's reply (nor a fragment of one, nor a hostPort flow): host traffic.
        return rnat(ctx, &ip, cfg.bridge_mac);
    }
    if cfg.prefix_len != 0 && cfg.in_subnet(daddr) {
        return Some((Verdict::DropNodelocal, -1));
    }
    None
}
