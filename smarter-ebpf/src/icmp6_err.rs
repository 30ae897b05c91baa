//! ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter problem)
//! arriving for the NAT66 address about one of a pod's NATed flows (`smarter_icmp6in`,
//! tail-called by `smarter_uplink6`): the quoted packet (the
//! pod's, as it left NATed) names the flow; the error is translated back (outer destination,
//! quoted source address and port or echo identifier, the ICMPv6 checksum) and delivered into
//! the pod, so path MTU discovery and `connect` errors work through NAT66. The quoted packet's
//! own L4 checksum is left as it is (receivers do not check it, as in IPv4's
//! [`crate::icmp_err`]).

use aya_ebpf::{
    bindings::TC_ACT_OK, helpers::bpf_redirect_peer, macros::classifier, programs::TcContext,
};
use smarter_common::{
    Verdict,
    ct::proto,
    link::nexthdr,
    maps::CONFIG_INDEX,
    v6::{Ct6Key, Endpoint6Key},
};

use crate::{
    ct6::same,
    ip6::{DST_OFF, HOP_OFF, ICMP6_ECHO_REQUEST, IP6_LEN, Ipv6, L4_OFF, PSEUDO, csum_diff16},
    maps::{CONFIG, CT6_IN, ENDPOINTS6, UPLINKS6},
    parse::read,
    verdict::Decision,
};

/// Where the quoted IPv6 header starts.
const IN_IP: usize = L4_OFF + 8;
/// Where the quoted packet's L4 header starts.
const IN_L4: usize = IN_IP + IP6_LEN;
/// The ICMPv6 checksum.
const CSUM: usize = L4_OFF + 2;

#[classifier]
pub fn smarter_icmp6in(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_icmp6in(&ctx) {
        Some(decision) => decision.finish(&ctx, len),
        None => TC_ACT_OK,
    }
}

/// An ICMPv6 error `smarter_uplink6` found for the interface's NAT66 address (reached only by
/// its tail call).
#[inline(always)]
fn try_icmp6in(ctx: &TcContext) -> Option<Decision> {
    let ip = Ipv6::read(ctx)?;
    let cfg = CONFIG.get(CONFIG_INDEX)?;
    // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: read-only lookup, copied at once.
    let nat_addr = unsafe { UPLINKS6.get(ifindex) }?.addr;
    if !same(&ip.dst(), &nat_addr) {
        return None;
    }
    error_in(ctx, &ip, &nat_addr, cfg.bridge_mac)
}

/// Translates an ICMPv6 error (the packet `ip`, to `nat_addr`) into the pod whose flow it
/// quotes. `None`: it quotes no NATed flow (the host's).
#[inline(always)]
pub fn error_in(
    ctx: &TcContext,
    ip: &Ipv6,
    nat_addr: &[u8; 16],
    bridge_mac: [u8; 6],
) -> Option<Decision> {
    let inner = read::<[u8; IP6_LEN]>(ctx, IN_IP)?;
    let inner_next = inner[6];
    let mut quoted_src = [0u8; 16];
    let mut remote = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        quoted_src[i] = inner[8 + i];
        remote[i] = inner[24 + i];
        i += 1;
    }
    if !same(&quoted_src, nat_addr) {
        return None;
    }
    let q = read::<[u8; 8]>(ctx, IN_L4)?;
    // The flow as the pod's packet left: (NAT port, remote port), or the echo identifier.
    let (nat_port, remote_port, port_off) = match inner_next {
        proto::TCP | proto::UDP => (
            u16::from_ne_bytes([q[0], q[1]]),
            u16::from_ne_bytes([q[2], q[3]]),
            IN_L4,
        ),
        nexthdr::ICMPV6 if q[0] == ICMP6_ECHO_REQUEST => {
            (u16::from_ne_bytes([q[4], q[5]]), 0, IN_L4 + 4)
        }
        _ => return None,
    };
    let key = Ct6Key::wire_side(remote, remote_port, nat_port, inner_next);
    // SAFETY: read-only lookup, copied at once.
    let (mut pod, pod_port) = match unsafe { CT6_IN.get(key) } {
        Some(v) => (v.addr, v.port),
        None => return None,
    };
    let hop = ip.hop_limit();
    if hop <= 1 {
        return None;
    }
    // SAFETY: read-only lookup, copied at once.
    let (ifindex, mac) = match unsafe { ENDPOINTS6.get(Endpoint6Key { addr: pod }) } {
        Some(e) => (e.ifindex, e.mac),
        None => return Some(Verdict::DropNodelocal.into()),
    };
    let eth_src = if bridge_mac == [0; 6] {
        read::<[u8; 6]>(ctx, 0)?
    } else {
        bridge_mac
    };
    let mut nat = *nat_addr;
    let Some(diff) = csum_diff16(&mut nat, &mut pod) else {
        return Some(Verdict::DropMalformed.into());
    };
    // The quoted source (message data) and the outer destination (pseudo header) both go
    // from the NAT address to the pod's; then the quoted port.
    let ok = ctx.l4_csum_replace(CSUM, 0, diff, 0).is_ok()
        && ctx.store(IN_IP + 8, &pod, 0).is_ok()
        && ctx.l4_csum_replace(CSUM, 0, diff, PSEUDO).is_ok()
        && ctx.store(DST_OFF, &pod, 0).is_ok()
        && ctx
            .l4_csum_replace(CSUM, u64::from(nat_port), u64::from(pod_port), 2)
            .is_ok()
        && ctx.store(port_off, &pod_port, 0).is_ok()
        && ctx.store(HOP_OFF, &(hop - 1), 0).is_ok()
        && ctx.store(0, &mac, 0).is_ok()
        && ctx.store(6, &eth_src, 0).is_ok();
    if !ok {
        return Some(Verdict::DropMalformed.into());
    }
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    Some(Decision::redirected(Verdict::IcmpErrorIn, action))
}
