//! `smarter_uplink6`: IPv6 arriving on an external interface, tail-called by
//! `smarter_uplink`/`smarter_l3_in` (after pushing an Ethernet header) for IPv6 the CLAT does not take. Replies of NAT66ed flows (to the
//! interface's [`crate::maps::UPLINKS6`] address, with a [`crate::maps::CT6_IN`] entry), new
//! flows to a hostPort on any node IPv6 address and their fragments are translated into their
//! pod ([`crate::in6::rnat6`]); IPv6 to the pods' ULA subnet is
//! dropped (node-local-only); everything else (neighbour discovery, the node's own
//! connections) is the host's, untouched and uncounted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, maps::CONFIG_INDEX};

use crate::{
    ct6::same,
    in6::{From, rnat6},
    ip6::Ipv6,
    maps::{CONFIG, NODE_ADDRS6, UPLINKS6},
    verdict::Decision,
};

#[classifier]
pub fn smarter_uplink6(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_uplink6(&ctx) {
        Some(decision) => decision.finish(&ctx, len),
        None => TC_ACT_OK,
    }
}

/// `Some(verdict)` for packets the datapath owns, `None` for host traffic.
#[inline(always)]
fn try_uplink6(ctx: &TcContext) -> Option<Decision> {
    let ip = Ipv6::read(ctx)?;
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    if !cfg.has_v6() {
        return None;
    }
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let dst = ip.dst();
    // SAFETY: read-only lookups, copied at once.
    let nat_addr = unsafe { UPLINKS6.get(ifindex) }.is_some_and(|u| same(&u.addr, &dst));
    // SAFETY: as above.
    if (nat_addr || unsafe { NODE_ADDRS6.get(dst) }.is_some())
        && let Some(d) = rnat6(ctx, &ip, cfg.bridge_mac, From::Wan)
    {
        return Some(d);
    }
    cfg.in_subnet6(&ip.dst())
        .then_some(Verdict::DropNodelocal.into())
}
