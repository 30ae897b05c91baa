//! `smarter_podclat`: the pod side of the CLAT, tail-called by `smarter_pod` when a pod's IPv4
//! has no IPv4 route off the node (not to a local-scope address) and the node has an
//! IPv6-only uplink with the CLAT ([`smarter_common::NetConfig::clat_ifindex`]). The packet is
//! source-NATed to that uplink's address ([`smarter_common::clat::CLAT_V4`]) as on any uplink
//! and redirected to it as it is; its egress program translates it to IPv6
//! ([`crate::clat::out`]). Its own program, so `smarter_pod`'s verification walks one way out,
//! not two. Everything is read again from the packet (a tail call keeps only the skb); the
//! pod's counters and checks are `smarter_pod`'s, done before.

use core::mem::zeroed;

use aya_ebpf::{bindings::bpf_fib_lookup, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, maps::CONFIG_INDEX};

use crate::{
    fib::FIB_NO_NEIGH,
    maps::CONFIG,
    nat::{nat_out, plan},
    parse::Ipv4,
    verdict::Decision,
};

#[classifier]
pub fn smarter_podclat(ctx: TcContext) -> i32 {
    let len = ctx.len();
    try_pod_clat(&ctx).finish(&ctx, len)
}

/// The verdict for a pod's IPv4 that `smarter_pod` found without an IPv4 route.
#[inline(always)]
fn try_pod_clat(ctx: &TcContext) -> Decision {
    let Some(cfg) = CONFIG.get(CONFIG_INDEX) else {
        return Verdict::DropNoRoute.into();
    };
    // The CLAT went away meanwhile: nowhere to go, and never out un-NATed.
    if cfg.clat_ifindex == 0 {
        return Verdict::DropNoRoute.into();
    }
    let Some(ip) = Ipv4::read(ctx) else {
        return Verdict::DropMalformed.into();
    };
    let plan = match plan(ctx, &ip) {
        Ok(plan) => plan,
        Err(d) => return d,
    };
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid value.
    let mut fib: bpf_fib_lookup = unsafe { zeroed() };
    // Out of the CLAT's uplink; its egress program finds the next hop ("no neighbour").
    fib.ifindex = cfg.clat_ifindex;
    nat_out(ctx, &ip, cfg, plan, FIB_NO_NEIGH, &fib)
}
