//! `smarter_pod6`: IPv6 from a pod of a dual-stack network, tail-called by `smarter_pod`
//! (never attached itself, so the IPv4 program's verification cost does not grow).
//!
//! In order: the frame's MAC must be the endpoint's; the source must be the pod's own IPv6
//! (ULA) address ([`crate::maps::ENDPOINTS6`] entry of this port with its MAC), its link-local
//! address or `::`; the RA guard and neighbour discovery claims as [`crate::guard`] checks
//! them (the pod's ULA may be claimed too); then by destination: link-local and multicast →
//! the bridge; TCP, UDP and fragments from the pod's ULA to another pod's ULA or a node address
//! → `smarter_hp6` ([`crate::hp6`]: hostPorts, hairpin, delivery to the pod); other packets
//! to another pod's ULA → redirected into it; a node address or the gateway → the host; the rest of the pod subnet → the bridge; anything else is NAT66ed out of the
//! interface the route lookup picks (`smarter_nat66`, reached by tail call, [`crate::nat66`]),
//! only from the pod's ULA. Fragments pass the RA guard from the pod's ULA to a destination
//! beyond the link (router messages are link-local sourced). A network
//! without IPv6 ([`smarter_common::NetConfig::has_v6`]) keeps the link-local-only rules.

use aya_ebpf::{helpers::bpf_redirect_peer, macros::classifier, programs::TcContext};
use smarter_common::{
    Verdict,
    ct::proto,
    link::nexthdr,
    maps::CONFIG_INDEX,
    v6::{Endpoint6Key, TAIL_HP6, TAIL_NAT66},
};

use crate::{
    guard,
    ip6::{Ipv6, is_link_local, words},
    maps::{CONFIG, ENDPOINTS6, NODE_ADDRS6, TAILS},
    nat66,
    parse::{ETH_SRC, read},
    verdict::Decision,
};

#[classifier]
pub fn smarter_pod6(ctx: TcContext) -> i32 {
    let len = ctx.len();
    try_pod6(&ctx).finish(&ctx, len)
}

/// The verdict for one IPv6 packet leaving a pod.
#[inline(always)]
fn try_pod6(ctx: &TcContext) -> Decision {
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(eth_src) = read::<[u8; 6]>(ctx, ETH_SRC) else {
        return Verdict::DropMalformed.into();
    };
    let Some(cfg) = CONFIG.get(CONFIG_INDEX) else {
        return guard::ipv6(ctx, ifindex, eth_src).into();
    };
    if !cfg.has_v6() {
        return guard::ipv6(ctx, ifindex, eth_src).into();
    }
    if !guard::owns_mac(ifindex, eth_src) {
        return Verdict::DropSpoof.into();
    }
    let Some(ip) = Ipv6::read(ctx) else {
        return Verdict::DropMalformed.into();
    };
    let (src, dst) = (ip.src(), ip.dst());
    let src_w = words(&src);
    let unspecified = src_w == (0, 0);
    let own = !unspecified && !is_link_local(&src) && guard::is_own6(src_w, ifindex, eth_src);
    if !own && !unspecified && !is_link_local(&src) {
        return Verdict::DropSpoof.into();
    }
    let len = usize::from(ip.payload_len());
    let beyond_link = dst[0] != 0xff && !is_link_local(&dst);
    match guard::rules(
        ctx,
        ip.next(),
        len,
        src_w,
        eth_src,
        ifindex,
        own && beyond_link,
    ) {
        Verdict::PassL2 => {}
        other => return other.into(),
    }
    if !beyond_link {
        return Verdict::PassL2.into();
    }
    // SAFETY: read-only lookup, nothing kept.
    let to_node = unsafe { NODE_ADDRS6.get(dst) }.is_some();
    if own
        && matches!(
            ip.next(),
            proto::TCP
                | proto::UDP
                | nexthdr::FRAGMENT
                | nexthdr::HOP_BY_HOP
                | nexthdr::ROUTING
                | nexthdr::DEST_OPTS
        )
    {
        // hostPorts (hairpin, a reply of a hostPort flow) and delivery to another pod are
        // `smarter_hp6`'s (its stack would not fit beside this one's).
        // SAFETY: read-only lookup, nothing kept.
        if to_node || unsafe { ENDPOINTS6.get(Endpoint6Key { addr: dst }) }.is_some() {
            // SAFETY: a tail call on the program's own context; it only returns on failure.
            unsafe { TAILS.tail_call(ctx, TAIL_HP6) };
            return Verdict::DropNoRoute.into();
        }
    }
    // SAFETY: read-only lookup, the value is copied out at once.
    if let Some(peer) = unsafe { ENDPOINTS6.get(Endpoint6Key { addr: dst }) } {
        let (peer_ifindex, peer_mac) = (peer.ifindex, peer.mac);
        if read::<[u8; 6]>(ctx, 0) != Some(peer_mac) && ctx.store(0, &peer_mac, 0).is_err() {
            return Verdict::DropMalformed.into();
        }
        // SAFETY: plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
        let act = unsafe { bpf_redirect_peer(peer_ifindex, 0) } as i32;
        return Decision::redirected(Verdict::RedirectPod, act);
    }
    if to_node || words(&dst) == words(&cfg.gateway6) {
        return Verdict::PassHost.into();
    }
    if cfg.in_subnet6(&dst) {
        // A pod address nobody holds: the bridge's (and the node's neighbour discovery's).
        return Verdict::PassL2.into();
    }
    if !own {
        // A link-local or unspecified source never leaves the link.
        return Verdict::DropIpv6.into();
    }
    // NAT66 is its own program (its stack would not fit beside this one's).
    // SAFETY: a tail call on the program's own context; it only returns on failure.
    unsafe { TAILS.tail_call(ctx, TAIL_NAT66) };
    Verdict::DropNoRoute.into()
}

#[classifier]
pub fn smarter_nat66(ctx: TcContext) -> i32 {
    let len = ctx.len();
    try_nat66(&ctx).finish(&ctx, len)
}

/// NAT66 of a packet `smarter_pod6` found leaving from the pod's own ULA to the outside
/// (reached only by its tail call).
#[inline(always)]
fn try_nat66(ctx: &TcContext) -> Decision {
    let Some(cfg) = CONFIG.get(CONFIG_INDEX) else {
        return Verdict::DropNoRoute.into();
    };
    let Some(ip) = Ipv6::read(ctx) else {
        return Verdict::DropMalformed.into();
    };
    nat66::snat(ctx, &ip, cfg)
}
