//! Source NAT of pod traffic to the address of the external interface the route lookup picks
//! (as MASQUERADE does), and its reverse, with conntrack in [`CT_OUT`]/[`CT_IN`], checksum
//! fixes, TTL decrement, FIB lookup and redirect (with or without an Ethernet header: layer-3
//! interfaces get the packet without one).
//!
//! Everything the kernel's masquerade carries is carried:
//! - TCP, UDP (any payload size, header read by its real length) and ICMP queries (echo,
//!   timestamp, information, address mask) by port or identifier;
//! - ICMP errors a pod sends about a flow it is part of ([`crate::icmp_err::outbound`]);
//! - every other protocol (GRE, ESP, SCTP, unknown numbers) by address, one mapping per
//!   (protocol, pod, remote) as the kernel's generic NAT does;
//! - IP options (the L4 header is found through the IHL; options are kept as they are);
//! - fragments: the first one is translated by its ports; later ones carry no ports and only
//!   need the address (outbound) or the fragment map ([`crate::frag`]) written when the
//!   first fragment of a reply came in (inbound).

use core::mem::zeroed;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_fib_lookup},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use smarter_common::{
    CtKey, CtValue, HostPortKey, NetConfig, Verdict,
    clat::TAIL_POD_CLAT,
    ct::{CT_NEW, next_state},
    icmp,
    uplink::DIR_OUT,
};

use crate::{
    ct::{expired, nat_port_for},
    fib::{self, FIB_FRAG_NEEDED, FIB_NO_NEIGH, FIB_NOT_FWDED, FIB_SUCCESS},
    frag,
    l4::{L4, L4Info, l4},
    maps::{CT_IN, CT_OUT, HOSTPORTS, TAILS, UPLINKS},
    parse::{Ipv4, PROTO_TCP, PROTO_UDP},
    rewrite::{IP_DST, IP_SRC, dec_ttl, deliver, rewrite},
    stats,
    verdict::Decision,
};

/// How an outbound packet is translated.
pub enum Plan {
    /// By port or identifier (TCP, UDP, ICMP queries).
    Ports(L4Info),
    /// By address, with a conntrack mapping (protocols without ports).
    Generic,
    /// By address alone: a later fragment (its first fragment carried the ports).
    LaterFragment,
    /// An ICMP error quoting a flow of the pod.
    IcmpError,
}

/// The route lookup as the node would forward the packet from the bridge ([`fib::lookup`]),
/// then SNAT of a pod packet to the chosen external interface's address ([`UPLINKS`]) and the
/// redirect out of it ([`fib::redirect`]). The caller
/// has ruled out local, pod-subnet and denied destinations. `PassHost`: a local address, an
/// unreachable destination or one too big with DF set (the host stack answers with the right
/// ICMP error), or TTL expiring (the host answers "time exceeded"); nothing was rewritten
/// then. `DropNoRoute`: routed out of an interface pods may not leave by (not an uplink, or
/// one without an address): never forwarded un-NATed. With no IPv4 route at all, an IPv6-only
/// uplink's CLAT ([`NetConfig::clat_ifindex`]) takes it: `smarter_podclat` ([`crate::pod_clat`],
/// tail-called so this program's verification does not carry a second way out) NATs it to
/// its [`smarter_common::UplinkValue`] address and redirects it to its egress, where
/// [`crate::clat::out`] translates it; with that slot empty, `DropNoRoute`.
#[inline(always)]
pub fn snat(ctx: &TcContext, ip: &Ipv4, cfg: &NetConfig) -> Decision {
    let plan = match plan(ctx, ip) {
        Ok(plan) => plan,
        Err(d) => return d,
    };
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid request to fill in.
    let mut fib: bpf_fib_lookup = unsafe { zeroed() };
    let ret = match fib::lookup(ctx, ip, cfg, &mut fib) {
        ret @ (FIB_SUCCESS | FIB_NO_NEIGH) => ret,
        // Too big for the uplink with DF clear: it would need fragmenting, which this datapath
        // does not do (DF set goes to the host stack, which answers "fragmentation needed").
        FIB_FRAG_NEEDED if !ip.dont_fragment() => return Verdict::DropNoRoute.into(),
        // No IPv4 route off the node (the same answer for a local address: those of local
        // scope are not the CLAT's): out of the IPv6-only uplink's CLAT, when there is one.
        // The tail call only returns when the slot is empty (mid-upgrade): never un-NATed.
        FIB_NOT_FWDED if cfg.clat_ifindex != 0 && !ip.is_to_local_scope() => {
            // SAFETY: a tail call on the program's own context; it only returns on failure.
            unsafe { TAILS.tail_call(ctx, TAIL_POD_CLAT) };
            return Verdict::DropNoRoute.into();
        }
        // Local destinations (any node address), unreachable, prohibited, forwarding disabled,
        // fragmentation needed: the host stack decides and answers with the right ICMP error.
        // Nothing was rewritten yet.
        _ => return Verdict::PassHost.into(),
    };
    nat_out(ctx, ip, cfg, plan, ret, &fib)
}

/// How the pod packet `ip` is translated; `Err`: its verdict (TTL expiring, malformed, an
/// ICMP message that belongs to no flow).
#[inline(always)]
pub fn plan(ctx: &TcContext, ip: &Ipv4) -> Result<Plan, Decision> {
    if ip.ttl() <= 1 {
        return Err(Verdict::PassHost.into());
    }
    if ip.is_later_fragment() {
        return Ok(Plan::LaterFragment);
    }
    Ok(match l4(ctx, ip, true) {
        L4::Nat(l) if l.ports => Plan::Ports(l),
        L4::Nat(_) => Plan::Generic,
        L4::Short => return Err(Verdict::DropMalformed.into()),
        // Errors a pod may send about its flows (unreachable, source quench, redirect,
        // time exceeded, parameter problem); any other ICMP has no flow to belong to.
        L4::OtherIcmp(
            icmp::DEST_UNREACH
            | icmp::SOURCE_QUENCH
            | icmp::REDIRECT
            | icmp::TIME_EXCEEDED
            | icmp::PARAM_PROBLEM,
        ) => Plan::IcmpError,
        L4::OtherIcmp(_) => return Err(Verdict::DropUnnatable.into()),
    })
}

/// SNAT of the pod packet `ip` (translated by `plan`) to the address of the external
/// interface `fib.ifindex` ([`UPLINKS`]), TTL decrement and the redirect out of it (`ret`: the
/// route lookup's result, [`fib::redirect`]). `DropNoRoute`: not an interface pods may leave
/// by.
#[inline(always)]
pub fn nat_out(
    ctx: &TcContext,
    ip: &Ipv4,
    cfg: &NetConfig,
    plan: Plan,
    ret: i64,
    fib: &bpf_fib_lookup,
) -> Decision {
    let (proto, ttl) = (ip.proto(), ip.ttl());
    let saddr = ip.saddr();
    let daddr = ip.daddr();
    let out_ifindex = fib.ifindex;
    // SAFETY: read-only lookup, copied at once.
    let (nat_addr, l3, egress) = match unsafe { UPLINKS.get(out_ifindex) } {
        Some(u) if u.addr != 0 => (u.addr, u.is_l3() || u.is_clat(), u.is_egress()),
        // Not an external interface, or one with no address to masquerade to.
        _ => return Verdict::DropNoRoute.into(),
    };
    // An interface `uplink` does not select carries only the replies of flows that came in by
    // it (a hostPort on its address).
    if !egress && !matches!(&plan, Plan::Ports(l) if has_flow(saddr, daddr, l, proto, nat_addr)) {
        return Verdict::DropNoRoute.into();
    }
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let translated = match plan {
        Plan::Ports(l) => {
            let Some(nat_port) = nat_port_for(saddr, daddr, &l, proto, nat_addr, cfg, now) else {
                return Verdict::DropNatPorts.into();
            };
            rewrite(ctx, &l, IP_SRC, saddr, nat_addr, nat_port)
        }
        Plan::Generic => {
            if !nat_addr_for(saddr, daddr, proto, nat_addr, cfg, now) {
                return Verdict::DropNatPorts.into();
            }
            rewrite(ctx, &L4Info::addr_only(), IP_SRC, saddr, nat_addr, 0)
        }
        Plan::LaterFragment => rewrite(ctx, &L4Info::addr_only(), IP_SRC, saddr, nat_addr, 0),
        Plan::IcmpError => match crate::icmp_err::outbound(ctx, ip, nat_addr) {
            crate::icmp_err::Outbound::Translated => true,
            crate::icmp_err::Outbound::NoFlow => return Verdict::DropUnnatable.into(),
            crate::icmp_err::Outbound::Failed => false,
        },
    };
    if !translated || !dec_ttl(ctx, ttl, proto) {
        return Verdict::DropMalformed.into();
    }
    stats::pod_iface(saddr, out_ifindex, DIR_OUT, ctx.len());
    let Some(action) = fib::redirect(ctx, ret, fib, l3) else {
        return Verdict::DropMalformed.into();
    };
    Decision::redirected(Verdict::NatOut, action)
}

/// Whether the pod-side flow `saddr:l.port → daddr:l.remote_port` exists, translated to
/// `nat_addr`.
#[inline(always)]
fn has_flow(saddr: u32, daddr: u32, l: &L4Info, proto: u8, nat_addr: u32) -> bool {
    let key = CtKey::pod_side(saddr, l.port, daddr, l.remote_port, proto);
    // SAFETY: read-only lookup, nothing kept.
    unsafe { CT_OUT.get(key) }.is_some_and(|v| v.addr == nat_addr)
}

/// The address mapping of a protocol without ports, `saddr → daddr`: one per (protocol, pod,
/// remote), as the kernel's generic NAT keeps it. `false`: another pod holds the mapping to
/// this remote for this protocol and it has not expired.
#[inline(always)]
fn nat_addr_for(
    saddr: u32,
    daddr: u32,
    proto: u8,
    nat_addr: u32,
    cfg: &NetConfig,
    now: u64,
) -> bool {
    let in_key = CtKey::wire_side(daddr, 0, 0, proto);
    let reply = CtValue::new(now, saddr, 0, CT_NEW);
    if let Some(v) = CT_IN.get_ptr_mut(in_key) {
        // SAFETY: a map value pointer, valid for this program run.
        let (holder, state, last_seen) = unsafe { ((*v).addr, (*v).state, (*v).last_seen) };
        if holder != saddr {
            if !expired(cfg, proto, state, last_seen, now) {
                return false;
            }
            let _ = CT_OUT.remove(in_key.to_pod_side(holder, 0));
        }
        // SAFETY: as above; overwritten in place.
        unsafe { *v = reply };
    } else if CT_IN.insert(in_key, reply, u64::from(BPF_NOEXIST)).is_err() {
        // Another CPU created it meanwhile: ours only if it is for this pod.
        // SAFETY: read-only lookup, copied at once.
        match unsafe { CT_IN.get(in_key) } {
            Some(v) if v.addr == saddr => {}
            _ => return false,
        }
    }
    let out_key = in_key.to_pod_side(saddr, 0);
    let out = CtValue::new(now, nat_addr, 0, CT_NEW);
    // An LRU insert only fails without memory; the reverse entry still lets replies in.
    let _ = CT_OUT.insert(out_key, out, 0);
    true
}

/// A new flow `client:l.remote_port → daddr:l.port` (TCP/UDP) to a hostPort, `in_key` its
/// [`CtKey::wire_side`] key: creates its conntrack entries. A hostPort flow is a NAT flow seen
/// from the other end: the reverse entry (`in_key`) leads in to the pod, the pod-side entry makes the pod's replies leave as
/// `daddr:hostPort`. `None`: no such hostPort; `Some(Err(()))`: the entries could not be written.
#[inline(always)]
pub fn open_hostport_flow(
    in_key: CtKey,
    l: &L4Info,
    proto: u8,
    daddr: u32,
    now: u64,
) -> Option<Result<(), ()>> {
    // The mapping on this node address (`hostIP`) first, then the one on every address.
    let mut hp_key = HostPortKey {
        port: l.port,
        proto,
        pad: 0,
        host_ip: daddr,
    };
    // SAFETY: read-only lookups, copied at once.
    let (pod_ip, pod_port) = match unsafe { HOSTPORTS.get(hp_key) } {
        Some(hp) => (hp.pod_ip, hp.pod_port),
        None => {
            hp_key.host_ip = 0;
            match unsafe { HOSTPORTS.get(hp_key) } {
                Some(hp) => (hp.pod_ip, hp.pod_port),
                None => return None,
            }
        }
    };
    let state = next_state(CT_NEW, proto, l.tcp_flags, false);
    let inbound = CtValue::new(now, pod_ip, pod_port, state);
    let outbound = CtValue::new(now, daddr, l.port, state);
    let out_key = in_key.to_pod_side(pod_ip, pod_port);
    if CT_IN.insert(in_key, inbound, 0).is_err() || CT_OUT.insert(out_key, outbound, 0).is_err() {
        return Some(Err(()));
    }
    Some(Ok(()))
}

/// Reverse NAT of a reply arriving on an external interface for a node address, or DNAT of a
/// new flow to a hostPort, redirected into the pod. `None`: neither (host traffic, untouched).
#[inline(always)]
pub fn rnat(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6]) -> Option<Decision> {
    let proto = ip.proto();
    let saddr = ip.saddr();
    let daddr = ip.daddr();
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if ip.is_later_fragment() {
        return frag_in(ctx, ip, bridge_mac, now);
    }
    let l = match l4(ctx, ip, false) {
        L4::Nat(l) => l,
        L4::OtherIcmp(icmp::DEST_UNREACH | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM) => {
            return crate::icmp_err::icmp_error(ctx, ip, bridge_mac);
        }
        // Not ours to judge: the host stack drops or answers it.
        L4::OtherIcmp(_) | L4::Short => return None,
    };
    if ip.ttl() <= 1 {
        return None;
    }
    let in_key = CtKey::wire_side(saddr, l.remote_port, l.port, proto);
    let mut verdict = Verdict::NatIn;
    let v = match CT_IN.get_ptr_mut(in_key) {
        Some(v) => v,
        None => {
            if proto != PROTO_TCP && proto != PROTO_UDP {
                return None;
            }
            match open_hostport_flow(in_key, &l, proto, daddr, now)? {
                Ok(()) => {}
                Err(()) => return Some(Verdict::DropNatPorts.into()),
            }
            verdict = Verdict::HostportIn;
            CT_IN.get_ptr_mut(in_key)?
        }
    };
    // SAFETY: a map value pointer, valid for this program run.
    let (pod_ip, pod_port) = unsafe {
        (*v).last_seen = now;
        (*v).state = next_state((*v).state, proto, l.tcp_flags, true);
        ((*v).addr, (*v).port)
    };
    let out_key = in_key.to_pod_side(pod_ip, pod_port);
    if let Some(o) = CT_OUT.get_ptr_mut(out_key) {
        // SAFETY: as above.
        unsafe {
            (*o).last_seen = now;
            (*o).state = next_state((*o).state, proto, l.tcp_flags, true);
        }
    }
    if !rewrite(ctx, &l, IP_DST, daddr, pod_ip, pod_port) {
        return Some(Verdict::DropMalformed.into());
    }
    if ip.more_fragments() {
        // The first fragment: its followers find the pod through the fragment map.
        frag::remember(ip, pod_ip, 0, now);
    }
    Some(deliver(ctx, ip, pod_ip, bridge_mac, verdict))
}

/// A later fragment arriving for the uplink's address: into the pod its first fragment went
/// to. `None`: no first fragment seen (the node's own datagram, or one whose first fragment is
/// still on its way: those are the host stack's).
#[inline(always)]
fn frag_in(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6], now: u64) -> Option<Decision> {
    let pod_ip = frag::recall(ip, 0, now)?;
    if !rewrite(ctx, &L4Info::addr_only(), IP_DST, ip.daddr(), pod_ip, 0) {
        return Some(Verdict::DropMalformed.into());
    }
    Some(deliver(ctx, ip, pod_ip, bridge_mac, Verdict::FragIn))
}
