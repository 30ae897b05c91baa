//! `smarter_egress` and `smarter_l3_out`: TC classifiers on every external interface's egress
//! (Ethernet, and layer-3 devices without an Ethernet header), the backstop. Whatever path a
//! packet took (a program's gap, the host stack forwarding what a program passed, a process on
//! the node bound to a pod-subnet address), nothing leaves an external interface with a pod's
//! address: IPv4 with a pod-subnet source, and IPv6 the node forwards from the bridge or a
//! pod's veth, are dropped and counted as `drop_leak` (with an event). Everything else is
//! untouched and uncounted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use smarter_common::{Verdict, maps::CONFIG_INDEX};

use crate::{
    maps::{CONFIG, EP_STATS},
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
        Some(verdict) => Decision::from(verdict).finish(ctx, len),
        None => TC_ACT_OK,
    }
}

/// `Some(DropLeak)` for a packet that must not leave; `None` otherwise.
#[inline(always)]
fn try_egress(ctx: &TcContext, l3: bool) -> Option<Verdict> {
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
            (cfg.prefix_len != 0 && cfg.in_subnet(saddr)).then_some(Verdict::DropLeak)
        }
        ETH_P_IPV6 => {
            // SAFETY: reading `ingress_ifindex` from a TC program's `__sk_buff` is allowed; it
            // is the interface a forwarded packet entered the node on (0 for the node's own).
            let from = unsafe { (*ctx.skb.skb).ingress_ifindex };
            let from_pods = from != 0
                && ((cfg.bridge_ifindex != 0 && from == cfg.bridge_ifindex)
                    || EP_STATS.get_ptr(from).is_some());
            from_pods.then_some(Verdict::DropLeak)
        }
        _ => None,
    }
}
