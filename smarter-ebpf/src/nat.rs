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
//!   need the address (outbound) or the fragment map [`FRAG`] written when the first fragment of
//!   a reply came in (inbound).

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use smarter_common::{
    CtKey, CtValue, FragKey, FragValue, HostPortKey, NetConfig, Verdict,
    ct::{CT_NEW, next_state},
    uplink::DIR_OUT,
};

use crate::{
    ct::{expired, nat_port_for},
    l4::{L4, L4Info, l4},
    maps::{CT_IN, CT_OUT, FRAG, HOSTPORTS, UPLINKS},
    parse::{Ipv4, PROTO_TCP, PROTO_UDP, read},
    rewrite::{IP_DST, IP_SRC, dec_ttl, deliver, rewrite},
    stats,
};

const AF_INET: u8 = 2;
const FIB_SUCCESS: i64 = 0;
const FIB_NO_NEIGH: i64 = 7;
const FIB_FRAG_NEEDED: i64 = 8;
/// A datagram's fragments must all arrive within this time of the first (Linux's
/// `ipfrag_time` default): older fragment-map entries are not used.
const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// How an outbound packet is translated.
enum Plan {
    /// By port or identifier (TCP, UDP, ICMP queries).
    Ports(L4Info),
    /// By address, with a conntrack mapping (protocols without ports).
    Generic,
    /// By address alone: a later fragment (its first fragment carried the ports).
    LaterFragment,
    /// An ICMP error quoting a flow of the pod.
    IcmpError,
}

/// FIB lookup as the node would forward the packet from the bridge, then SNAT of a pod packet
/// to the chosen external interface's address ([`UPLINKS`]) and redirect out of it. The caller
/// has ruled out local, pod-subnet and denied destinations. `PassHost`: a local address, an
/// unreachable destination or one too big with DF set (the host stack answers with the right
/// ICMP error), or TTL expiring (the host answers "time exceeded"); nothing was rewritten
/// then. `DropNoRoute`: routed out of an interface pods may not leave by (not an uplink, or
/// one without an address): never forwarded un-NATed.
#[inline(always)]
pub fn snat(ctx: &TcContext, ip: &Ipv4, cfg: &NetConfig) -> (Verdict, i32) {
    let (proto, ttl) = (ip.proto(), ip.ttl());
    if ttl <= 1 {
        return (Verdict::PassHost, -1);
    }
    let plan = if ip.is_later_fragment() {
        Plan::LaterFragment
    } else {
        match l4(ctx, ip, true) {
            L4::Nat(l) if l.ports => Plan::Ports(l),
            L4::Nat(_) => Plan::Generic,
            L4::Short => return (Verdict::DropMalformed, -1),
            // Errors a pod may send about its flows (unreachable, source quench, redirect,
            // time exceeded, parameter problem); any other ICMP has no flow to belong to.
            L4::OtherIcmp(3 | 4 | 5 | 11 | 12) => Plan::IcmpError,
            L4::OtherIcmp(_) => return (Verdict::DropUnnatable, -1),
        }
    };
    let saddr = ip.saddr();
    let daddr = ip.daddr();
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid request to fill in.
    let mut fib: bpf_fib_lookup = unsafe { zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = proto;
    // A GSO super-packet (a pod's TCP stream) leaves as segments: what must fit the MTU is
    // one segment (headers plus `gso_size`), checked as a packet of that size would be.
    // Single packets are checked as they are, so an oversized one with DF clear is refused
    // below and one with DF set gets the host's "fragmentation needed".
    // SAFETY: reading `gso_segs`/`gso_size`/`ifindex` from a TC program's `__sk_buff` is
    // allowed.
    let (gso_segs, gso_size, in_ifindex) = unsafe {
        let skb = ctx.skb.skb;
        ((*skb).gso_segs, (*skb).gso_size, (*skb).ifindex)
    };
    fib.__bindgen_anon_1.tot_len = if gso_segs > 1 {
        segment_len(ctx, ip, gso_size)
    } else {
        ip.tot_len()
    };
    // Looked up as forwarded from the bridge with the pod's own source, so policy routing
    // sees what it would see for the reference's forwarded packet.
    fib.ifindex = if cfg.bridge_ifindex != 0 {
        cfg.bridge_ifindex
    } else {
        in_ifindex
    };
    fib.__bindgen_anon_3.ipv4_src = saddr;
    fib.__bindgen_anon_4.ipv4_dst = daddr;
    // SAFETY: `fib` lives on our stack for the duration of the call; size is its real size.
    let ret = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut fib,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match ret {
        FIB_SUCCESS | FIB_NO_NEIGH => {}
        // Too big for the uplink with DF clear: it would need fragmenting, which this datapath
        // does not do (DF set goes to the host stack, which answers "fragmentation needed").
        FIB_FRAG_NEEDED if !ip.dont_fragment() => return (Verdict::DropNoRoute, -1),
        // Local destinations (any node address), unreachable, prohibited, forwarding disabled,
        // fragmentation needed: the host stack decides and answers with the right ICMP error.
        // Nothing was rewritten yet.
        _ => return (Verdict::PassHost, -1),
    }
    let out_ifindex = fib.ifindex;
    // SAFETY: read-only lookup, copied at once.
    let (nat_addr, l3) = match unsafe { UPLINKS.get(out_ifindex) } {
        Some(u) if u.addr != 0 => (u.addr, u.is_l3()),
        // Not an interface pods may leave by, or one with no address to masquerade to.
        _ => return (Verdict::DropNoRoute, -1),
    };
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let translated = match plan {
        Plan::Ports(l) => {
            let Some(nat_port) = nat_port_for(saddr, daddr, &l, proto, nat_addr, cfg, now) else {
                return (Verdict::DropNatPorts, -1);
            };
            rewrite(ctx, &l, IP_SRC, saddr, nat_addr, nat_port)
        }
        Plan::Generic => {
            if !nat_addr_for(saddr, daddr, proto, nat_addr, cfg, now) {
                return (Verdict::DropNatPorts, -1);
            }
            rewrite(ctx, &L4Info::addr_only(), IP_SRC, saddr, nat_addr, 0)
        }
        Plan::LaterFragment => rewrite(ctx, &L4Info::addr_only(), IP_SRC, saddr, nat_addr, 0),
        Plan::IcmpError => match crate::icmp_err::outbound(ctx, ip, nat_addr) {
            crate::icmp_err::Outbound::Translated => true,
            crate::icmp_err::Outbound::NoFlow => return (Verdict::DropUnnatable, -1),
            crate::icmp_err::Outbound::Failed => false,
        },
    };
    if !translated || !dec_ttl(ctx, ttl, proto) {
        return (Verdict::DropMalformed, -1);
    }
    stats::pod_iface(saddr, out_ifindex, DIR_OUT, ctx.len());
    let action = if l3 {
        // No link-layer header to fill: the kernel strips the Ethernet header on the way
        // into a device without one.
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(out_ifindex, 0) as i32 }
    } else if ret == FIB_SUCCESS {
        if ctx.store(0, &fib.dmac, 0).is_err() || ctx.store(6, &fib.smac, 0).is_err() {
            return (Verdict::DropMalformed, -1);
        }
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(out_ifindex, 0) as i32 }
    } else {
        // SAFETY: plain helper call; NULL params = resolve the neighbour of the packet's route.
        unsafe { bpf_redirect_neigh(out_ifindex, core::ptr::null_mut(), 0, 0) as i32 }
    };
    (Verdict::NatOut, action)
}

/// The IPv4 length of one segment of a GSO packet of `gso_size` payload bytes: IP header, the
/// TCP header with its options (UDP: 8 bytes), and the payload.
#[inline(always)]
fn segment_len(ctx: &TcContext, ip: &Ipv4, gso_size: u32) -> u16 {
    let ip_hdr = (ip.l4_off() - crate::parse::ETH_LEN) as u32;
    let l4_hdr = if ip.proto() == PROTO_TCP {
        // The data offset's high nibble, in 32-bit words.
        read::<[u8; 13]>(ctx, ip.l4_off()).map_or(20, |t| u32::from(t[12] >> 4) * 4)
    } else {
        8
    };
    let len = ip_hdr + l4_hdr + gso_size;
    if len > 0xffff { 0xffff } else { len as u16 }
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
    let hp_key = HostPortKey {
        port: l.port,
        proto,
        pad: 0,
    };
    // SAFETY: read-only lookup, copied at once.
    let (pod_ip, pod_port) = match unsafe { HOSTPORTS.get(hp_key) } {
        Some(hp) if hp.accepts(daddr) => (hp.pod_ip, hp.pod_port),
        _ => return None,
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
pub fn rnat(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6]) -> Option<(Verdict, i32)> {
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
        L4::OtherIcmp(3 | 11 | 12) => return crate::icmp_err::icmp_error(ctx, ip, bridge_mac),
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
                Err(()) => return Some((Verdict::DropNatPorts, -1)),
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
        return Some((Verdict::DropMalformed, -1));
    }
    if ip.more_fragments() {
        // The first fragment: its followers find the pod through the fragment map.
        let key = FragKey {
            remote: saddr,
            id: ip.id(),
            proto,
            pad: 0,
        };
        let value = FragValue {
            first_seen: now,
            pod_ip,
            pad: 0,
        };
        let _ = FRAG.insert(key, value, 0);
    }
    Some(deliver(ctx, ip, pod_ip, bridge_mac, verdict))
}

/// A later fragment arriving for the uplink's address: into the pod its first fragment went
/// to. `None`: no first fragment seen (the node's own datagram, or one whose first fragment is
/// still on its way: those are the host stack's).
#[inline(always)]
fn frag_in(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6], now: u64) -> Option<(Verdict, i32)> {
    let key = FragKey {
        remote: ip.saddr(),
        id: ip.id(),
        proto: ip.proto(),
        pad: 0,
    };
    // SAFETY: read-only lookup, copied at once.
    let (pod_ip, first_seen) = match unsafe { FRAG.get(key) } {
        Some(v) => (v.pod_ip, v.first_seen),
        None => return None,
    };
    if now.saturating_sub(first_seen) > FRAG_TIMEOUT_NS || ip.ttl() <= 1 {
        return None;
    }
    if !rewrite(ctx, &L4Info::addr_only(), IP_DST, ip.daddr(), pod_ip, 0) {
        return Some((Verdict::DropMalformed, -1));
    }
    Some(deliver(ctx, ip, pod_ip, bridge_mac, Verdict::FragIn))
}
