//! `smarter_hp6`: a dual-stack pod's IPv6 TCP, UDP or fragment from its own ULA to another
//! pod's ULA or to a node address, tail-called by `smarter_pod6` (its conntrack keys would not
//! fit that program's stack). A reply of a hairpin or node-local hostPort flow first gets its
//! `node address:hostPort` source back ([`in6::reply6`]); then to a node address: a hostPort's
//! pod (hairpin, [`in6::rnat6`]) or the host; to a pod: redirected into it (fragments as whole
//! packets: pod to pod needs no rewriting).

use aya_ebpf::{helpers::bpf_redirect_peer, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, maps::CONFIG_INDEX, v6::Endpoint6Key};

use crate::{
    in6::{self, From, Reply6},
    ip6::Ipv6,
    maps::{CONFIG, ENDPOINTS6, NODE_ADDRS6},
    parse::read,
    verdict::Decision,
};

#[classifier]
pub fn smarter_hp6(ctx: TcContext) -> i32 {
    let len = ctx.len();
    try_hp6(&ctx).finish(&ctx, len)
}

/// The verdict for a packet `smarter_pod6` checked and found going to a pod or node address.
#[inline(always)]
fn try_hp6(ctx: &TcContext) -> Decision {
    let Some(cfg) = CONFIG.get(CONFIG_INDEX) else {
        return Verdict::DropNoRoute.into();
    };
    let Some(ip) = Ipv6::read(ctx) else {
        return Verdict::DropMalformed.into();
    };
    let dst = ip.dst();
    // SAFETY: read-only lookup, nothing kept.
    let to_node = unsafe { NODE_ADDRS6.get(dst) }.is_some();
    match in6::reply6(ctx, &ip) {
        Reply6::Failed => return Verdict::DropMalformed.into(),
        Reply6::Translated if to_node => return Verdict::PassHost.into(),
        _ => {}
    }
    if to_node {
        return in6::rnat6(ctx, &ip, cfg.bridge_mac, From::Pod)
            .unwrap_or_else(|| Verdict::PassHost.into());
    }
    // SAFETY: read-only lookup, the value is copied out at once.
    let Some((ifindex, mac)) =
        (unsafe { ENDPOINTS6.get(Endpoint6Key { addr: dst }) }).map(|e| (e.ifindex, e.mac))
    else {
        return Verdict::PassL2.into();
    };
    if read::<[u8; 6]>(ctx, 0) != Some(mac) && ctx.store(0, &mac, 0).is_err() {
        return Verdict::DropMalformed.into();
    }
    // SAFETY: plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
    let act = unsafe { bpf_redirect_peer(ifindex, 0) } as i32;
    Decision::redirected(Verdict::RedirectPod, act)
}
