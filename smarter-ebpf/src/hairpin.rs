//! Hairpin hostPort: a pod (or, through `smarter_local` on the loopback, the node itself)
//! connecting to a node address on a hostPort reaches the mapped pod directly. Only the
//! destination is rewritten (the server sees the client pod's own address, which iptables'
//! hairpin masquerade hides); the server's replies are translated back on the server's own
//! veth ([`reply`]) so the client sees them come from `node address:hostPort`. Fragmented
//! datagrams are translated both ways: the first fragment by its ports, the later ones as
//! their first was ([`crate::frag`]).
//!
//! Conntrack entries have the same shape as a hostPort flow from the wan ([`crate::nat::rnat`]):
//! `ct_in` {client, 0, client port, hostPort} → pod:port, `ct_out` {pod, client, pod port,
//! client port} → node address:hostPort; GC and per-pod flushes treat them alike.

use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::{bpf_ktime_get_ns, bpf_redirect_peer},
    programs::TcContext,
};
use smarter_common::{
    CtKey, EndpointKey, Verdict,
    ct::{FRAG_F_SRC, next_state},
};

use crate::{
    frag,
    l4::{L4, L4Info, l4},
    maps::{CT_IN, CT_OUT, ENDPOINTS},
    nat::open_hostport_flow,
    parse::{Ipv4, PROTO_TCP, PROTO_UDP},
    rewrite::{IP_DST, IP_SRC, rewrite},
    verdict::Decision,
};

/// A pod's TCP/UDP packet to `node address:port`: DNAT to the pod holding that hostPort and
/// redirect into it; a later fragment follows its first ([`crate::frag`]). `None`: no such
/// hostPort (the host stack answers, e.g. with a reset).
#[inline(always)]
pub fn dnat(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6]) -> Option<Decision> {
    let proto = ip.proto();
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if ip.is_later_fragment() {
        let pod_ip = frag::recall(ip, 0, now)?;
        if !rewrite(ctx, &L4Info::addr_only(), IP_DST, ip.daddr(), pod_ip, 0) {
            return Some(Verdict::DropMalformed.into());
        }
        return Some(into_pod(ctx, pod_ip, bridge_mac));
    }
    // Seen from the server: `port` is the hostPort, `remote_port` the client's port.
    let L4::Nat(l) = l4(ctx, ip, false) else {
        return None;
    };
    let (saddr, daddr) = (ip.saddr(), ip.daddr());
    let in_key = CtKey::wire_side(saddr, l.remote_port, l.port, proto);
    let v = match CT_IN.get_ptr_mut(in_key) {
        Some(v) => v,
        None => {
            match open_hostport_flow(in_key, &l, proto, daddr, now)? {
                Ok(()) => {}
                Err(()) => return Some(Verdict::DropNatPorts.into()),
            }
            CT_IN.get_ptr_mut(in_key)?
        }
    };
    // SAFETY: a map value pointer, valid for this program run.
    let (pod_ip, pod_port) = unsafe {
        (*v).last_seen = now;
        (*v).state = next_state((*v).state, proto, l.tcp_flags, false);
        ((*v).addr, (*v).port)
    };
    if !rewrite(ctx, &l, IP_DST, daddr, pod_ip, pod_port) {
        return Some(Verdict::DropMalformed.into());
    }
    if ip.more_fragments() {
        frag::remember(ip, pod_ip, 0, now);
    }
    Some(into_pod(ctx, pod_ip, bridge_mac))
}

/// Redirects a packet whose destination is now `pod_ip` into that pod, with its MAC and the
/// bridge's.
#[inline(always)]
fn into_pod(ctx: &TcContext, pod_ip: u32, bridge_mac: [u8; 6]) -> Decision {
    // SAFETY: read-only lookup, copied at once.
    let (ifindex, mac) = match unsafe { ENDPOINTS.get(EndpointKey { addr: pod_ip }) } {
        Some(ep) => (ep.ifindex, ep.mac),
        None => return Verdict::DropNodelocal.into(),
    };
    if ctx.store(0, &mac, 0).is_err()
        || (bridge_mac != [0; 6] && ctx.store(6, &bridge_mac, 0).is_err())
    {
        return Verdict::DropMalformed.into();
    }
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    if action != TC_ACT_REDIRECT {
        return Verdict::DropNodelocal.into();
    }
    Decision::redirected(Verdict::HostportIn, action)
}

/// What [`reply`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not a reply of a hostPort flow: unchanged.
    Untouched,
    /// Source rewritten to `uplink:hostPort`.
    Translated,
    /// A rewrite failed: drop.
    Failed,
}

/// A pod's TCP/UDP packet to another pod or to a node address: when it answers a hairpin or
/// node-local hostPort flow, its source becomes `node address:hostPort` again; a later
/// fragment follows its first ([`crate::frag`]).
#[inline(always)]
pub fn reply(ctx: &TcContext, ip: &Ipv4) -> Reply {
    let proto = ip.proto();
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Reply::Untouched;
    }
    if ip.is_later_fragment() {
        // SAFETY: ktime has no preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        let Some(to) = frag::recall(ip, FRAG_F_SRC, now) else {
            return Reply::Untouched;
        };
        return if rewrite(ctx, &L4Info::addr_only(), IP_SRC, ip.saddr(), to, 0) {
            Reply::Translated
        } else {
            Reply::Failed
        };
    }
    let L4::Nat(l) = l4(ctx, ip, true) else {
        return Reply::Untouched;
    };
    let (saddr, daddr) = (ip.saddr(), ip.daddr());
    let out_key = CtKey::pod_side(saddr, l.port, daddr, l.remote_port, proto);
    let Some(o) = CT_OUT.get_ptr_mut(out_key) else {
        return Reply::Untouched;
    };
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: `o` is a map value pointer valid for this run.
    let (addr, port) = unsafe {
        (*o).last_seen = now;
        (*o).state = next_state((*o).state, proto, l.tcp_flags, true);
        ((*o).addr, (*o).port)
    };
    if let Some(i) = CT_IN.get_ptr_mut(out_key.to_wire_side(port)) {
        // SAFETY: as above.
        unsafe {
            (*i).last_seen = (*o).last_seen;
            (*i).state = (*o).state;
        }
    }
    if !rewrite(ctx, &l, IP_SRC, saddr, addr, port) {
        return Reply::Failed;
    }
    if ip.more_fragments() {
        frag::remember(ip, addr, FRAG_F_SRC, now);
    }
    Reply::Translated
}
