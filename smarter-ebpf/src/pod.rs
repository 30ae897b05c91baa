//! `smarter_pod`: TC classifier on the host-side veth's ingress, i.e. every packet a pod sends.
//!
//! In order: per-endpoint counters; anti-spoofing (IPv4 source and ARP sender must be the
//! endpoint of this ifindex, with its MAC; IPv6 and the pod's link claims in [`crate::guard`];
//! any other ethertype, and VLAN tags, are dropped); the RA guard (a pod's ICMP redirects and
//! router advertisements here, its IPv6 router messages in [`crate::guard`]); pod → pod
//! redirect (`bpf_redirect_peer`, hairpin replies translated first); pod → a hostPort on any
//! node address is DNATed to its pod ([`crate::hairpin`]); other pod → node traffic passes;
//! deny ranges drop; everything else is source-NATed to the external interface the route
//! lookup picks ([`crate::nat`]) or dropped when it cannot be (with no IPv4 route, out of the
//! CLAT's IPv6-only uplink by `smarter_podclat`, [`crate::pod_clat`], tail-called). IPv6 goes
//! to `smarter_pod6` ([`crate::pod6`]) by tail call; when that slot is empty, IPv6 beyond
//! link-local and multicast is dropped.

use aya_ebpf::{
    helpers::bpf_redirect_peer, macros::classifier, maps::lpm_trie::Key, programs::TcContext,
};
use smarter_common::{
    EndpointKey, Verdict, link::is_router_icmp, maps::CONFIG_INDEX, v6::TAIL_POD6,
};

use crate::{
    guard, hairpin,
    maps::{CONFIG, DENY, ENDPOINTS, EP_STATS, NODE_ADDRS, TAILS},
    nat::snat,
    parse::{
        ARP_LEN, ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_SRC, ETH_TYPE, Ipv4, PROTO_ICMP,
        read,
    },
    stats,
    verdict::Decision,
};

#[classifier]
pub fn smarter_pod(ctx: TcContext) -> i32 {
    let len = ctx.len();
    try_smarter_pod(&ctx).finish(&ctx, len)
}

/// The verdict for one packet leaving a pod. `RedirectPod` means the redirect helper succeeded.
#[inline(always)]
fn try_smarter_pod(ctx: &TcContext) -> Decision {
    // SAFETY: `skb` is the context pointer the kernel passed in; the verifier allows reading
    // `ifindex` from a TC program's `__sk_buff`.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // Failing to count (e.g. the stats map is full) must never cost the pod its traffic.
    let _ = stats::bump(&EP_STATS, ifindex, ctx.len());

    // SAFETY: as above, `vlan_present` is readable from a TC program's `__sk_buff`. The
    // kernel strips a VLAN tag into the metadata before TC ingress: pods have no VLANs.
    if unsafe { (*ctx.skb.skb).vlan_present } != 0 {
        return Verdict::DropEthertype.into();
    }
    let Some(eth_src) = read::<[u8; 6]>(ctx, ETH_SRC) else {
        return Verdict::DropMalformed.into();
    };
    let Some(ethertype) = read::<[u8; 2]>(ctx, ETH_TYPE) else {
        return Verdict::DropMalformed.into();
    };
    match u16::from_be_bytes(ethertype) {
        ETH_P_ARP => arp(ctx, ifindex, eth_src).into(),
        ETH_P_IP => ipv4(ctx, ifindex, eth_src),
        ETH_P_IPV6 => {
            // A dual-stack network's IPv6 is `smarter_pod6`'s (its own program, so this one's
            // verification cost does not grow). Without it (an empty slot, e.g. mid-upgrade,
            // or never filled): link-local only, as a single-stack network.
            // SAFETY: a tail call on the program's own context; it only returns on failure.
            unsafe { TAILS.tail_call(ctx, TAIL_POD6) };
            guard::ipv6(ctx, ifindex, eth_src).into()
        }
        _ => Verdict::DropEthertype.into(),
    }
}

/// Whether `addr` is the endpoint on `ifindex` with MAC `mac`.
#[inline(always)]
fn is_own(addr: u32, ifindex: u32, mac: [u8; 6]) -> bool {
    // SAFETY: the value is only read, and copied before the next helper call.
    match unsafe { ENDPOINTS.get(EndpointKey { addr }) } {
        Some(ep) => ep.ifindex == ifindex && ep.mac == mac,
        None => false,
    }
}

/// ARP: the sender IP/MAC must be the endpoint's (gratuitous and probes included).
#[inline(always)]
fn arp(ctx: &TcContext, ifindex: u32, eth_src: [u8; 6]) -> Verdict {
    let Some(arp) = read::<[u8; ARP_LEN]>(ctx, ETH_LEN) else {
        return Verdict::DropMalformed;
    };
    let sha = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
    let spa = u32::from_ne_bytes([arp[14], arp[15], arp[16], arp[17]]);
    // An ARP probe (RFC 5227) has sender IP 0.0.0.0 and updates no cache: it only has to carry
    // the frame's own source MAC.
    let ok = sha == eth_src && (spa == 0 || is_own(spa, ifindex, sha));
    if ok {
        Verdict::PassL2
    } else {
        Verdict::DropSpoof
    }
}

#[inline(always)]
fn ipv4(ctx: &TcContext, ifindex: u32, eth_src: [u8; 6]) -> Decision {
    let Some(ip) = Ipv4::read(ctx) else {
        return Verdict::DropMalformed.into();
    };
    let (saddr, daddr) = (ip.saddr(), ip.daddr());
    if !is_own(saddr, ifindex, eth_src) {
        return Verdict::DropSpoof.into();
    }
    // The RA guard: redirects and router advertisements are a router's to send (a later
    // fragment carries no ICMP header). Type and code are read together: a one-byte read at
    // a variable offset compiles to a bound the verifier cannot use.
    if ip.proto() == PROTO_ICMP
        && !ip.is_later_fragment()
        && read::<[u8; 2]>(ctx, ip.l4_off()).is_some_and(|[kind, _]| is_router_icmp(kind))
    {
        return Verdict::DropRaGuard.into();
    }
    // Multicast and limited broadcast: the bridge's job.
    if ip.is_group() {
        return Verdict::PassL2.into();
    }
    // SAFETY: read-only lookup, the value is copied out at once.
    if let Some(peer) = unsafe { ENDPOINTS.get(EndpointKey { addr: daddr }) } {
        let (peer_ifindex, peer_mac) = (peer.ifindex, peer.mac);
        // A reply of a hairpin hostPort flow leaves as uplink:hostPort.
        if hairpin::reply(ctx, &ip) == hairpin::Reply::Failed {
            return Verdict::DropMalformed.into();
        }
        if read::<[u8; 6]>(ctx, 0) != Some(peer_mac) && ctx.store(0, &peer_mac, 0).is_err() {
            return Verdict::DropMalformed.into();
        }
        // SAFETY: plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
        let act = unsafe { bpf_redirect_peer(peer_ifindex, 0) } as i32;
        return Decision::redirected(Verdict::RedirectPod, act);
    }
    let Some(cfg) = CONFIG.get(CONFIG_INDEX) else {
        return Verdict::PassHost.into();
    };
    // SAFETY: read-only lookup, nothing kept.
    if unsafe { NODE_ADDRS.get(daddr) }.is_some() {
        // Hairpin: a hostPort on any of the node's addresses reaches the pod that holds it
        // (fragments follow their first, [`crate::frag`]).
        // A reply to the node's own connection to a hostPort: back to uplink:hostPort, then
        // delivered locally.
        match hairpin::reply(ctx, &ip) {
            hairpin::Reply::Translated => return Verdict::PassHost.into(),
            hairpin::Reply::Failed => return Verdict::DropMalformed.into(),
            hairpin::Reply::Untouched => {}
        }
        if let Some(result) = hairpin::dnat(ctx, &ip, cfg.bridge_mac) {
            return result;
        }
        return Verdict::PassHost.into();
    }
    if daddr == cfg.gateway {
        return Verdict::PassHost.into();
    }
    if cfg.in_subnet(daddr) {
        // The subnet's broadcast address, or a pod address nobody holds (the bridge answers).
        return Verdict::PassL2.into();
    }
    if DENY.get(Key::new(32, daddr)).is_some() {
        return Verdict::DropDeny.into();
    }
    snat(ctx, &ip, cfg)
}
