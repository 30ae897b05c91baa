//! Source NAT of pod traffic to the uplink's address (TCP, UDP, ICMP echo) and its reverse,
//! with conntrack in [`CT_OUT`]/[`CT_IN`], checksum fixes, TTL decrement, FIB lookup and
//! redirect. Only IPv4 without options and not fragmented reaches this module.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_REDIRECT, bpf_fib_lookup},
    helpers::{
        bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer,
    },
    programs::TcContext,
};
use smarter_common::{CtKey, CtValue, EndpointKey, HostPortKey, NetConfig, Verdict, ct::CT_NEW};

use crate::{
    ct::{nat_port_for, next_state},
    maps::{CT_IN, CT_OUT, ENDPOINTS, HOSTPORTS},
    parse::{ETH_LEN, IP_LEN, read},
};

pub const L4: usize = ETH_LEN + IP_LEN;
pub const IP_CSUM: usize = ETH_LEN + 10;
const IP_TTL: usize = ETH_LEN + 8;
pub const IP_SRC: usize = ETH_LEN + 12;
pub const IP_DST: usize = ETH_LEN + 16;
const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
const AF_INET: u8 = 2;
const FIB_SUCCESS: i64 = 0;
const FIB_NO_NEIGH: i64 = 7;
const FIB_FRAG_NEEDED: i64 = 8;

/// The L4 facts NAT needs: ports (network byte order) and where the checksum and the port sit.
pub struct L4Info {
    /// Pod-side port (TCP/UDP source or destination) or ICMP identifier.
    pub port: u16,
    /// Remote port (0 for ICMP).
    pub remote_port: u16,
    /// Offset of the port to rewrite.
    pub port_off: usize,
    /// Offset of the L4 checksum.
    pub csum_off: usize,
    /// `bpf_l4_csum_replace` flags for the address change (0 for ICMP: no pseudo header).
    pub addr_flags: u64,
    /// `bpf_l4_csum_replace` flags for the port change.
    pub port_flags: u64,
    /// TCP flags (0 otherwise).
    pub tcp_flags: u8,
}

/// Parses TCP/UDP/ICMP echo; `outbound` selects the direction (source port is the pod's).
#[inline(always)]
pub fn l4(ctx: &TcContext, proto: u8, outbound: bool) -> Option<L4Info> {
    match proto {
        PROTO_TCP | PROTO_UDP => {
            let h = read::<[u8; 14]>(ctx, L4)?;
            let sport = u16::from_ne_bytes([h[0], h[1]]);
            let dport = u16::from_ne_bytes([h[2], h[3]]);
            let (port, remote_port, port_off) = if outbound {
                (sport, dport, L4)
            } else {
                (dport, sport, L4 + 2)
            };
            let (csum_off, mangled, tcp_flags) = if proto == PROTO_TCP {
                (L4 + 16, 0, h[13])
            } else {
                (L4 + 6, u64::from(BPF_F_MARK_MANGLED_0), 0)
            };
            Some(L4Info {
                port,
                remote_port,
                port_off,
                csum_off,
                addr_flags: u64::from(BPF_F_PSEUDO_HDR) | mangled | 4,
                port_flags: mangled | 2,
                tcp_flags,
            })
        }
        PROTO_ICMP => {
            let h = read::<[u8; 8]>(ctx, L4)?;
            // Echo request out, echo reply in; errors are not translated (yet).
            if h[0] != if outbound { 8 } else { 0 } {
                return None;
            }
            Some(L4Info {
                port: u16::from_ne_bytes([h[4], h[5]]),
                remote_port: 0,
                port_off: L4 + 4,
                csum_off: L4 + 2,
                addr_flags: 0,
                port_flags: 2,
                tcp_flags: 0,
            })
        }
        _ => None,
    }
}

/// Rewrites address (at `addr_off`) and port, fixing IPv4 and L4 checksums.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    l: &L4Info,
    addr_off: usize,
    old: u32,
    new: u32,
    new_port: u16,
) -> bool {
    (l.addr_flags == 0
        || ctx
            .l4_csum_replace(l.csum_off, u64::from(old), u64::from(new), l.addr_flags)
            .is_ok())
        && ctx
            .l4_csum_replace(
                l.csum_off,
                u64::from(l.port),
                u64::from(new_port),
                l.port_flags,
            )
            .is_ok()
        && ctx.store(l.port_off, &new_port, 0).is_ok()
        && ctx
            .l3_csum_replace(IP_CSUM, u64::from(old), u64::from(new), 4)
            .is_ok()
        && ctx.store(addr_off, &new, 0).is_ok()
}

/// Decrements the TTL (caller checked it is > 1) and fixes the IPv4 checksum.
#[inline(always)]
pub fn dec_ttl(ctx: &TcContext, ttl: u8, proto: u8) -> bool {
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl - 1, proto]);
    ctx.l3_csum_replace(IP_CSUM, u64::from(old), u64::from(new), 2)
        .is_ok()
        && ctx.store(IP_TTL, &(ttl - 1), 0).is_ok()
}

/// FIB lookup, then SNAT of a pod packet to `uplink_addr` and redirect out of the uplink.
/// `None`: not for the uplink or not NATable here (local destinations, other egress
/// interfaces, no route, other protocols, ICMP other than echo, TTL expiring) → host stack.
#[inline(always)]
pub fn snat(ctx: &TcContext, ip: &[u8; IP_LEN], cfg: &NetConfig) -> Option<(Verdict, i32)> {
    let (uplink_addr, uplink_ifindex) = (cfg.uplink_addr, cfg.uplink_ifindex);
    let proto = ip[9];
    let ttl = ip[8];
    if ttl <= 1 {
        return None;
    }
    let l = l4(ctx, proto, true)?;
    let saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid request to fill in.
    let mut fib: bpf_fib_lookup = unsafe { zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = proto;
    // A GSO super-packet (a pod's TCP stream) is segmented to the uplink's MTU on the way out:
    // its total length must not be checked against the MTU (0 skips the check). Single packets
    // are checked, so an oversized one with DF clear is refused below.
    // SAFETY: reading `gso_segs` from a TC program's `__sk_buff` is allowed.
    let gso = unsafe { (*ctx.skb.skb).gso_segs } > 1;
    fib.__bindgen_anon_1.tot_len = if gso {
        0
    } else {
        u16::from_be_bytes([ip[2], ip[3]])
    };
    fib.ifindex = uplink_ifindex;
    fib.__bindgen_anon_3.ipv4_src = uplink_addr;
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
        FIB_SUCCESS | FIB_NO_NEIGH if fib.ifindex == uplink_ifindex => {}
        // Too big for the uplink with DF clear: it would need fragmenting, which this datapath
        // does not do (DF set goes to the host stack, which answers "fragmentation needed").
        FIB_FRAG_NEEDED if ip[6] & 0x40 == 0 => return Some((Verdict::DropNoRoute, -1)),
        // Local destinations (any node address), other egress interfaces, unreachable,
        // prohibited, forwarding disabled, fragmentation needed: the host stack decides and
        // answers with the right ICMP error. Nothing was rewritten yet.
        _ => return None,
    }
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(nat_port) = nat_port_for(saddr, daddr, &l, proto, cfg, now) else {
        return Some((Verdict::DropNatPorts, -1));
    };
    if !rewrite(ctx, &l, IP_SRC, saddr, uplink_addr, nat_port) || !dec_ttl(ctx, ttl, proto) {
        return Some((Verdict::DropMalformed, -1));
    }
    let action = if ret == FIB_SUCCESS {
        if ctx.store(0, &fib.dmac, 0).is_err() || ctx.store(6, &fib.smac, 0).is_err() {
            return Some((Verdict::DropMalformed, -1));
        }
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(fib.ifindex, 0) as i32 }
    } else {
        // SAFETY: plain helper call; NULL params = resolve the neighbour of the packet's route.
        unsafe { bpf_redirect_neigh(fib.ifindex, core::ptr::null_mut(), 0, 0) as i32 }
    };
    Some((Verdict::NatOut, action))
}

/// A new flow `saddr:l.remote_port → daddr:l.port` (TCP/UDP) to a hostPort: creates its
/// conntrack entries. A hostPort flow is a NAT flow seen from the other end: the reverse entry
/// (`in_key`) leads in to the pod, the pod-side entry makes the pod's replies leave as
/// `daddr:hostPort`. `None`: no such hostPort; `Some(Err(()))`: the entries could not be written.
#[inline(always)]
pub fn open_hostport_flow(
    in_key: CtKey,
    l: &L4Info,
    proto: u8,
    saddr: u32,
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
        Some(hp) => (hp.pod_ip, hp.pod_port),
        None => return None,
    };
    let state = next_state(CT_NEW, proto, l.tcp_flags, false);
    let inbound = CtValue {
        last_seen: now,
        addr: pod_ip,
        port: pod_port,
        state,
        pad: 0,
    };
    let outbound = CtValue {
        last_seen: now,
        addr: daddr,
        port: l.port,
        state,
        pad: 0,
    };
    let out_key = CtKey {
        a: pod_ip,
        b: saddr,
        a_port: pod_port,
        b_port: l.remote_port,
        proto,
        pad: [0; 3],
    };
    if CT_IN.insert(in_key, inbound, 0).is_err() || CT_OUT.insert(out_key, outbound, 0).is_err() {
        return Some(Err(()));
    }
    Some(Ok(()))
}

/// Reverse NAT of a reply arriving on the uplink for `uplink_addr`, or DNAT of a new flow to a
/// hostPort, redirected into the pod. `None`: neither (host traffic).
#[inline(always)]
pub fn rnat(ctx: &TcContext, ip: &[u8; IP_LEN], bridge_mac: [u8; 6]) -> Option<(Verdict, i32)> {
    let proto = ip[9];
    if proto == PROTO_ICMP
        && let Some(result) = crate::icmp_err::icmp_error(ctx, ip, bridge_mac)
    {
        return Some(result);
    }
    let l = l4(ctx, proto, false)?;
    let saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let in_key = CtKey {
        a: saddr,
        b: 0,
        a_port: l.remote_port,
        b_port: l.port,
        proto,
        pad: [0; 3],
    };
    // SAFETY: ktime has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut verdict = Verdict::NatIn;
    let v = match CT_IN.get_ptr_mut(in_key) {
        Some(v) => v,
        None => {
            if proto == PROTO_ICMP {
                return None;
            }
            match open_hostport_flow(in_key, &l, proto, saddr, daddr, now)? {
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
    let out_key = CtKey {
        a: pod_ip,
        b: saddr,
        a_port: pod_port,
        b_port: l.remote_port,
        proto,
        pad: [0; 3],
    };
    if let Some(o) = CT_OUT.get_ptr_mut(out_key) {
        // SAFETY: as above.
        unsafe {
            (*o).last_seen = now;
            (*o).state = next_state((*o).state, proto, l.tcp_flags, true);
        }
    }
    // SAFETY: read-only lookup, copied at once.
    let (ifindex, mac) = match unsafe { ENDPOINTS.get(EndpointKey { addr: pod_ip }) } {
        Some(ep) => (ep.ifindex, ep.mac),
        None => return Some((Verdict::DropNodelocal, -1)),
    };
    let ttl = ip[8];
    if ttl <= 1 {
        return None;
    }
    // The pod sees the bridge (its gateway) as the sender; the uplink's MAC when unknown.
    let eth_src = if bridge_mac == [0; 6] {
        read::<[u8; 6]>(ctx, 0)?
    } else {
        bridge_mac
    };
    if !rewrite(ctx, &l, IP_DST, daddr, pod_ip, pod_port)
        || !dec_ttl(ctx, ttl, proto)
        || ctx.store(0, &mac, 0).is_err()
        || ctx.store(6, &eth_src, 0).is_err()
    {
        return Some((Verdict::DropMalformed, -1));
    }
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(ifindex, 0) as i32 };
    if action != TC_ACT_REDIRECT {
        return Some((Verdict::DropNodelocal, -1));
    }
    Some((verdict, action))
}
