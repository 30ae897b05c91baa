//! `smarter_uplink` and `smarter_l3_in`: TC classifiers on every external interface's ingress
//! (Ethernet, and layer-3 devices without an Ethernet header: raw-IP modems, PPP, tun).
//! Replies to NATed flows and new flows to a hostPort, for any of the node's addresses (with
//! options, fragmented, any protocol), are translated into the pod; IPv4 to a pod-subnet
//! address is dropped (node-local-only); everything else (host traffic) passes untouched.
//!
//! IPv6 that is not the CLAT's goes to `smarter_uplink6` ([`crate::uplink6`], reverse NAT66)
//! by tail call, on Ethernet and layer-3 devices alike.
//!
//! On an IPv6-only uplink, the CLAT's replies are first translated to IPv4
//! ([`crate::clat::inbound`]) and then take the same way.
//!
//! On a layer-3 device the packet starts with its IP header. What the datapath may own (IPv4
//! to a node address or the pod subnet; IPv6 to the interface's NAT66 address, a node IPv6
//! address or the pods' ULA subnet) gets an Ethernet header pushed first
//! (`bpf_skb_change_head`, meant for exactly this: an L3 packet about to be redirected into an
//! L2 device), so the rest is the Ethernet program's; the host stack ignores that header on
//! what it keeps.

use aya_ebpf::{
    bindings::TC_ACT_OK, helpers::bpf_skb_change_head, macros::classifier, programs::TcContext,
};
use smarter_common::{Verdict, maps::CONFIG_INDEX, v6::TAIL_UPLINK6};

use crate::{
    clat::{self, In},
    ct6::same,
    ip6::IP6_LEN,
    maps::{CLAT, CONFIG, NODE_ADDRS, NODE_ADDRS6, TAILS, UPLINKS6},
    nat::rnat,
    parse::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, ETH_TYPE, IP_LEN, Ipv4, read},
    verdict::Decision,
};

#[classifier]
pub fn smarter_uplink(ctx: TcContext) -> i32 {
    run(&ctx, false)
}

#[classifier]
pub fn smarter_l3_in(ctx: TcContext) -> i32 {
    run(&ctx, true)
}

#[inline(always)]
fn run(ctx: &TcContext, l3: bool) -> i32 {
    let len = ctx.len();
    match try_uplink(ctx, l3) {
        Some(decision) => decision.finish(ctx, len),
        // Host traffic: not counted, never touched.
        None => TC_ACT_OK,
    }
}

/// `Some(verdict)` for packets the datapath owns, `None` for host traffic.
#[inline(always)]
fn try_uplink(ctx: &TcContext, l3: bool) -> Option<Decision> {
    let clat = clat_in(ctx, l3);
    if clat == In::Failed {
        return Some(Verdict::DropUnnatable.into());
    }
    if l3 && !push_eth(ctx)? {
        return None;
    }
    let ethertype = u16::from_be_bytes(read::<[u8; 2]>(ctx, ETH_TYPE)?);
    if ethertype == ETH_P_IPV6 && clat == In::NotOurs {
        // Reverse NAT66 is `smarter_uplink6`'s; without it (an empty slot), the host's.
        // SAFETY: a tail call on the program's own context; it only returns on failure.
        unsafe { TAILS.tail_call(ctx, TAIL_UPLINK6) };
        return None;
    }
    if ethertype != ETH_P_IP {
        return None;
    }
    // Truncated IPv4 is the host stack's to drop.
    let ip = Ipv4::read(ctx)?;
    let daddr = ip.daddr();
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    // SAFETY: read-only lookup, nothing kept.
    if unsafe { NODE_ADDRS.get(daddr) }.is_some() {
        // Not a NATed flow's reply (nor a fragment of one, nor a hostPort flow): host traffic
        // (but what the CLAT translated is no host's).
        return match rnat(ctx, &ip, cfg.bridge_mac) {
            None if clat == In::Translated => Some(Verdict::DropUnnatable.into()),
            d => d,
        };
    }
    if cfg.prefix_len != 0 && cfg.in_subnet(daddr) {
        return Some(Verdict::DropNodelocal.into());
    }
    None
}

/// On an IPv6-only uplink with the CLAT: IPv6 from the NAT64 prefix to the CLAT address,
/// translated to IPv4 ([`clat::inbound`]).
#[inline(always)]
fn clat_in(ctx: &TcContext, l3: bool) -> In {
    // SAFETY: reading `ifindex`/`protocol` from a TC program's `__sk_buff` is allowed.
    let (ifindex, proto) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).protocol) };
    // SAFETY: read-only lookup; the value is only read during this run.
    let Some(c) = (unsafe { CLAT.get(ifindex) }) else {
        return In::NotOurs;
    };
    let ipv6 = if l3 {
        proto == u32::from(ETH_P_IPV6.to_be())
    } else {
        read::<[u8; 2]>(ctx, ETH_TYPE).map(u16::from_be_bytes) == Some(ETH_P_IPV6)
    };
    if !ipv6 {
        return In::NotOurs;
    }
    clat::inbound(ctx, if l3 { 0 } else { ETH_LEN }, c, l3)
}

/// On a layer-3 device: when the packet is IPv4 to a node address or the pod subnet, or IPv6
/// the datapath may own ([`ours6`]), pushes an Ethernet header (zero MACs, its type) in front
/// of it. `Some(false)`: not such a packet (untouched); `None`: the push failed.
#[inline(always)]
fn push_eth(ctx: &TcContext) -> Option<bool> {
    // SAFETY: reading `protocol` from a TC program's `__sk_buff` is allowed.
    let proto = unsafe { (*ctx.skb.skb).protocol };
    if proto == u32::from(ETH_P_IPV6.to_be()) {
        if !ours6(ctx)? {
            return Some(false);
        }
        return push(ctx, ETH_P_IPV6);
    }
    if proto != u32::from(ETH_P_IP.to_be()) {
        return Some(false);
    }
    let h = read::<[u8; IP_LEN]>(ctx, 0)?;
    let daddr = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    // SAFETY: read-only lookup, nothing kept.
    let local = unsafe { NODE_ADDRS.get(daddr) }.is_some();
    if h[0] >> 4 != 4 || !(local || (cfg.prefix_len != 0 && cfg.in_subnet(daddr))) {
        return Some(false);
    }
    push(ctx, ETH_P_IP)
}

/// IPv6 on a layer-3 device that `smarter_uplink6` may own: to this interface's NAT66 address
/// (replies of NAT66ed flows, hostPorts), to a node IPv6 address (hostPorts) or into the pods'
/// ULA subnet (dropped there). `None`: truncated (the host's).
#[inline(always)]
fn ours6(ctx: &TcContext) -> Option<bool> {
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    if !cfg.has_v6() {
        return Some(false);
    }
    let h = read::<[u8; IP6_LEN]>(ctx, 0)?;
    if h[0] >> 4 != 6 {
        return Some(false);
    }
    let mut dst = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        dst[i] = h[24 + i];
        i += 1;
    }
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: read-only lookups, compared at once.
    let nat_addr = unsafe { UPLINKS6.get(ifindex) }.is_some_and(|u| same(&u.addr, &dst));
    // SAFETY: as above.
    Some(nat_addr || unsafe { NODE_ADDRS6.get(dst) }.is_some() || cfg.in_subnet6(&dst))
}

/// Pushes an Ethernet header (zero MACs, type `ethertype`). `None`: the push failed.
#[inline(always)]
fn push(ctx: &TcContext, ethertype: u16) -> Option<bool> {
    // SAFETY: plain helper call on the program's own context.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_LEN as u32, 0) } != 0 {
        return None;
    }
    ctx.store(ETH_TYPE, &ethertype.to_be_bytes(), 0).ok()?;
    Some(true)
}
