//! `smarter_egress` and `smarter_l3_out`: TC classifiers on every external interface's egress
//! (Ethernet, and layer-3 devices without an Ethernet header), the backstop. Whatever path a
//! packet took (a program's gap, the host stack forwarding what a program passed, a process on
//! the node bound to a pod-subnet address), nothing leaves an external interface with a pod's
//! address: IPv4 with a pod-subnet source, and IPv6 the node forwards from the bridge or a
//! pod's veth (but the CLAT's own translations), are dropped and counted as `drop_leak` (with
//! an event); IPv6 with a source in the pods' ULA subnet as `drop_leak6`. On an IPv6-only uplink, the CLAT translates here what the pod program NATed to
//! it ([`crate::clat::out`]). Everything else is untouched and uncounted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, clat::CLAT_V4, maps::CONFIG_INDEX};

use crate::{
    clat,
    ct6::same,
    maps::{CLAT, CONFIG, EP_STATS, UPLINKS6},
    parse::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, ETH_TYPE, read},
    verdict::Decision,
};

#[classifier]
pub fn smarter_egress(ctx: TcContext) -> i32 {
    run(&ctx, false)
}

#[classifier]
pub fn smarter_l3_out(ctx: TcContext) -> i32 {
    run(&ctx, true)
}

#[inline(always)]
fn run(ctx: &TcContext, l3: bool) -> i32 {
    let len = ctx.len();
    match try_egress(ctx, l3) {
        Some(decision) => decision.finish(ctx, len),
        None => TC_ACT_OK,
    }
}

/// `Some(DropLeak)` (`DropLeak6`) for a packet that must not leave, the CLAT's translation of a pod packet
/// on an IPv6-only uplink; `None` otherwise (untouched).
#[inline(always)]
fn try_egress(ctx: &TcContext, l3: bool) -> Option<Decision> {
    let (ethertype, l2) = if l3 {
        // SAFETY: reading `protocol` from a TC program's `__sk_buff` is allowed.
        let proto = unsafe { (*ctx.skb.skb).protocol };
        (u16::from_be(proto as u16), 0)
    } else {
        (u16::from_be_bytes(read::<[u8; 2]>(ctx, ETH_TYPE)?), ETH_LEN)
    };
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    match ethertype {
        ETH_P_IP => {
            // The source as it stands, whatever the rest of the header says: a malformed
            // header is no reason to let a pod's address out.
            let s = read::<[u8; 4]>(ctx, l2 + 12)?;
            let saddr = u32::from_ne_bytes(s);
            if saddr == CLAT_V4 {
                // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
                let ifindex = unsafe { (*ctx.skb.skb).ifindex };
                // SAFETY: read-only lookup; the value is only read during this run.
                return Some(match unsafe { CLAT.get(ifindex) } {
                    Some(c) => clat::out(ctx, l2, ifindex, c, l3),
                    // NATed for a CLAT that is no longer here (it went while the packet was
                    // on its way): never out as IPv4.
                    None => Verdict::DropLeak.into(),
                });
            }
            (cfg.prefix_len != 0 && cfg.in_subnet(saddr)).then_some(Verdict::DropLeak.into())
        }
        ETH_P_IPV6 => {
            // A pod's ULA source never leaves, whoever forwarded it.
            let src = read::<[u8; 16]>(ctx, l2 + 8)?;
            if cfg.in_subnet6(&src) {
                return Some(Verdict::DropLeak6.into());
            }
            // SAFETY: reading `ingress_ifindex` from a TC program's `__sk_buff` is allowed; it
            // is the interface a forwarded packet entered the node on (0 for the node's own).
            let from = unsafe { (*ctx.skb.skb).ingress_ifindex };
            let from_pods = from != 0
                && ((cfg.bridge_ifindex != 0 && from == cfg.bridge_ifindex)
                    || EP_STATS.get_ptr(from).is_some());
            // The CLAT's own translations (see [`clat::out`]) leave with the CLAT address.
            if !from_pods {
                return None;
            }
            // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            // SAFETY: read-only lookup, compared at once.
            let clat_src = match unsafe { CLAT.get(ifindex) } {
                Some(c) => same(&c.src6, &src),
                None => false,
            };
            // NAT66's own translations ([`crate::nat66::snat`]) leave with the interface's
            // NAT66 address.
            // SAFETY: as above.
            let nat66_src = match unsafe { UPLINKS6.get(ifindex) } {
                Some(u) => same(&u.addr, &src),
                None => false,
            };
            (!clat_src && !nat66_src).then_some(Verdict::DropLeak.into())
        }
        _ => None,
    }
}
