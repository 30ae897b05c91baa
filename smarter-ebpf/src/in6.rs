//! IPv6 into a pod through a node address: replies of NAT66 flows and new flows to a hostPort
//! ([`crate::maps::HOSTPORTS6`]: a hostPort without `hostIP` answers on every node IPv6
//! address) from the wan (`smarter_uplink6`), from a pod (hairpin, `smarter_pod6`) or from the
//! node itself (`smarter_local6`), translated to the pod and redirected into it ([`rnat6`]);
//! and a pod's replies of hairpin and node-local hostPort flows, whose source becomes
//! `node address:hostPort` again ([`reply6`]). A wan hostPort flow's replies leave through
//! NAT66, which finds the flow's `ct6_out` entry (its NAT address is the node address).
//!
//! Conntrack entries have the shape of NAT66 flows: `ct6_in` {client, client port, hostPort}
//! → pod:port, `ct6_out` {pod, pod port, client, client port} → node address:hostPort; GC and
//! per-pod flushes treat them alike. Fragmented datagrams are translated both ways: the first
//! fragment by its ports, later ones as their first was ([`crate::frag6`]).

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_redirect_peer},
    programs::TcContext,
};
use smarter_common::{
    HostPortKey, Verdict,
    ct::{CT_NEW, FRAG_F_SRC, next_state, proto},
    link::nexthdr,
    v6::{Ct6Key, Ct6Value, Endpoint6Key, Nat66Scratch, TAIL_ICMP6},
};

use crate::{
    frag6::{self, Shape},
    ip6::{DST_OFF, HOP_OFF, ICMP6_ECHO_REPLY, Ipv6, L4_OFF, L4Info6, SRC_OFF, l4},
    maps::{CT6_IN, CT6_OUT, ENDPOINTS6, HOSTPORTS6, NAT66_SCRATCH, TAILS},
    nat66::rewrite6,
    parse::read,
    verdict::Decision,
};

/// Where a packet for a node address comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// An external interface (`smarter_uplink6`): ICMPv6 errors about NAT66 flows are
    /// translated too; forwarded (hop limit).
    Wan,
    /// A pod (hairpin): forwarded.
    Pod,
    /// The node itself, on the loopback: delivered, not forwarded.
    Node,
}

/// A packet for node address `ip.dst()`: the reply of a NAT66 flow, a new flow to a hostPort,
/// or a later fragment of either, rewritten to the pod and redirected into it. `None`: none
/// of these (the host's, untouched).
#[inline(always)]
pub fn rnat6(ctx: &TcContext, ip: &Ipv6, bridge_mac: [u8; 6], from: From) -> Option<Decision> {
    let sh = frag6::shape(ctx, ip)?;
    let proto = sh.proto;
    if from == From::Wan
        && sh.l4 == L4_OFF
        && proto == nexthdr::ICMPV6
        && let Some([kind, _]) = read::<[u8; 2]>(ctx, sh.l4)
        && crate::ip6::is_error(kind)
    {
        // Its own program (the stack would not hold it beside this path's).
        // SAFETY: a tail call on the program's own context; it only returns on failure.
        unsafe { TAILS.tail_call(ctx, TAIL_ICMP6) };
        return None;
    }
    let hop = ip.hop_limit();
    if from != From::Node && hop <= 1 {
        return None;
    }
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let (src, dst) = (ip.src(), ip.dst());
    let (pod, verdict) = if sh.later {
        let pod = frag6::recall(src, &sh, 0, now)?;
        // No L4 header, so no checksum: the address alone.
        if ctx.store(DST_OFF, &pod, 0).is_err() {
            return Some(Verdict::DropMalformed.into());
        }
        (pod, Verdict::FragIn)
    } else {
        let l = l4(ctx, proto, sh.l4, ICMP6_ECHO_REPLY, false)?;
        match first(ctx, &l, &sh, proto, src, dst, now)? {
            Ok(done) => done,
            Err(v) => return Some(v.into()),
        }
    };
    if from != From::Node && ctx.store(HOP_OFF, &(hop - 1), 0).is_err() {
        return Some(Verdict::DropMalformed.into());
    }
    Some(into_pod6(ctx, pod, bridge_mac, verdict))
}

/// The conntrack part of [`rnat6`] for a packet with its L4 header `l`: `Ok` (pod, verdict)
/// once rewritten, `Err` a drop, `None` not ours. Keys and values live in the per-CPU work
/// space (they do not fit the stack beside the callers').
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values are passed by reference into the work space: by value they would \
              be copied to the stack, which cannot hold them"
)]
fn first(
    ctx: &TcContext,
    l: &L4Info6,
    sh: &Shape,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    now: u64,
) -> Option<Result<([u8; 16], Verdict), Verdict>> {
    let scratch = NAT66_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array, nobody else's while this program runs.
    let s = unsafe { &mut *scratch };
    s.in_key = Ct6Key::wire_side(src, l.remote_port, l.port, proto);
    let mut verdict = Verdict::NatIn;
    let v = match CT6_IN.get_ptr_mut(&s.in_key) {
        Some(v) => v,
        None => {
            if !open_hostport6(s, l, proto, src, dst, now)? {
                return Some(Err(Verdict::DropNatPorts));
            }
            verdict = Verdict::HostportIn;
            CT6_IN.get_ptr_mut(&s.in_key)?
        }
    };
    // SAFETY: a map value pointer, valid for this program run.
    let (pod, pod_port) = unsafe {
        (*v).last_seen = now;
        (*v).state = next_state((*v).state, proto, l.tcp_flags, true);
        ((*v).addr, (*v).port)
    };
    s.out_key = Ct6Key::pod_side(pod, pod_port, src, l.remote_port, proto);
    if let Some(o) = CT6_OUT.get_ptr_mut(&s.out_key) {
        // SAFETY: as above.
        unsafe {
            (*o).last_seen = now;
            (*o).state = next_state((*o).state, proto, l.tcp_flags, true);
        }
    }
    let (mut old, mut new) = (dst, pod);
    if !rewrite6(ctx, l, DST_OFF, &mut old, &mut new, pod_port) {
        return Some(Err(Verdict::DropMalformed));
    }
    if sh.more {
        // The first fragment: its followers find the pod through the fragment map.
        frag6::remember(src, sh, pod, 0, now);
    }
    Some(Ok((pod, verdict)))
}

/// A new flow `s.in_key` (from `src`, L4 `l`) to node address `daddr`: when its port is a
/// hostPort ([`HOSTPORTS6`]), both conntrack entries are created. `None`: no such hostPort;
/// `Some(false)`: the entries could not be written.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values are passed by reference into the work space"
)]
fn open_hostport6(
    s: &mut Nat66Scratch,
    l: &L4Info6,
    proto: u8,
    src: [u8; 16],
    daddr: [u8; 16],
    now: u64,
) -> Option<bool> {
    if proto != proto::TCP && proto != proto::UDP {
        return None;
    }
    let hp_key = HostPortKey {
        port: l.port,
        proto,
        pad: 0,
        host_ip: 0,
    };
    // SAFETY: read-only lookup, copied at once.
    let (pod, pod_port) = unsafe { HOSTPORTS6.get(hp_key) }.map(|h| (h.addr, h.pod_port))?;
    let state = next_state(CT_NEW, proto, l.tcp_flags, false);
    s.reply = Ct6Value::new(now, pod, pod_port, state);
    s.out = Ct6Value::new(now, daddr, l.port, state);
    s.out_key = Ct6Key::pod_side(pod, pod_port, src, l.remote_port, proto);
    Some(
        CT6_IN.insert(&s.in_key, &s.reply, 0).is_ok()
            && CT6_OUT.insert(&s.out_key, &s.out, 0).is_ok(),
    )
}

/// Redirects a packet whose destination is now `pod` into that pod, with its MAC and the
/// bridge's (or, without one, the frame's own source MAC).
#[inline(always)]
fn into_pod6(ctx: &TcContext, pod: [u8; 16], bridge_mac: [u8; 6], verdict: Verdict) -> Decision {
    // SAFETY: read-only lookup, copied at once.
    let Some((ifindex, mac)) =
        (unsafe { ENDPOINTS6.get(Endpoint6Key { addr: pod }) }).map(|e| (e.ifindex, e.mac))
    else {
        return Verdict::DropNodelocal.into();
    };
    if ctx.store(0, &mac, 0).is_err()
        || (bridge_mac != [0; 6] && ctx.store(6, &bridge_mac, 0).is_err())
    {
        return Verdict::DropMalformed.into();
    }
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    Decision::redirected(verdict, action)
}

/// What [`reply6`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reply6 {
    /// Not a reply of a hostPort flow: unchanged.
    Untouched,
    /// Source rewritten to `node address:hostPort`.
    Translated,
    /// A rewrite failed: drop.
    Failed,
}

/// A pod's TCP/UDP packet to another pod or to a node address: when it answers a hairpin or
/// node-local hostPort flow, its source becomes `node address:hostPort` again; a later
/// fragment follows its first ([`crate::frag6`]).
#[inline(always)]
pub fn reply6(ctx: &TcContext, ip: &Ipv6) -> Reply6 {
    let Some(sh) = frag6::shape(ctx, ip) else {
        return Reply6::Untouched;
    };
    let proto = sh.proto;
    if proto != proto::TCP && proto != proto::UDP {
        return Reply6::Untouched;
    }
    let (src, dst) = (ip.src(), ip.dst());
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if sh.later {
        let Some(to) = frag6::recall(src, &sh, FRAG_F_SRC, now) else {
            return Reply6::Untouched;
        };
        return if ctx.store(SRC_OFF, &to, 0).is_ok() {
            Reply6::Translated
        } else {
            Reply6::Failed
        };
    }
    let Some(l) = l4(ctx, proto, sh.l4, 0, true) else {
        return Reply6::Untouched;
    };
    let out_key = Ct6Key::pod_side(src, l.port, dst, l.remote_port, proto);
    let Some(o) = CT6_OUT.get_ptr_mut(out_key) else {
        return Reply6::Untouched;
    };
    // SAFETY: `o` is a map value pointer valid for this run.
    let (addr, port) = unsafe {
        (*o).last_seen = now;
        (*o).state = next_state((*o).state, proto, l.tcp_flags, true);
        ((*o).addr, (*o).port)
    };
    if let Some(i) = CT6_IN.get_ptr_mut(out_key.to_wire_side(port)) {
        // SAFETY: as above.
        unsafe {
            (*i).last_seen = now;
            (*i).state = (*o).state;
        }
    }
    let (mut old, mut new) = (src, addr);
    if !rewrite6(ctx, &l, SRC_OFF, &mut old, &mut new, port) {
        return Reply6::Failed;
    }
    if sh.more {
        frag6::remember(src, &sh, addr, FRAG_F_SRC, now);
    }
    Reply6::Translated
}
