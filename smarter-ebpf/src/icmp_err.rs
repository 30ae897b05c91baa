//! ICMP errors about NATed flows, both ways.
//!
//! - Inbound ([`icmp_error`]): destination unreachable (incl. fragmentation needed), time
//!   exceeded and parameter problem arriving on the uplink about a NATed flow: the outer
//!   destination and the quoted inner header (source address and port, inner IPv4 checksum) are
//!   translated back to the pod, the ICMP checksum is fixed, and the error is delivered into the
//!   pod, so path MTU discovery works through the NAT.
//! - Outbound ([`outbound`]): an error a pod sends about a packet of one of its flows (e.g. port
//!   unreachable for a UDP hostPort flow): the outer source and the quoted destination become
//!   the NAT address and port the remote knows.
//!
//! The quoted packet may be TCP, UDP, an ICMP query or any protocol without ports.

use aya_ebpf::programs::TcContext;
use smarter_common::{CtKey, Verdict, icmp};

use crate::{
    maps::{CT_IN, CT_OUT},
    parse::{IP_LEN, Ipv4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, read},
    rewrite::{IP_CSUM, IP_DST, IP_SRC, deliver},
    verdict::Decision,
};

/// The flow a quoted packet belongs to, as seen from its sender.
struct Quoted {
    /// Offset of the quoted IPv4 header.
    inner: usize,
    proto: u8,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    /// Whether `sport`/`dport` exist (TCP/UDP, or an ICMP query's identifier in `sport`).
    ports: bool,
    /// Offset of the quoted port that translation rewrites.
    port_off: usize,
    old_csum: u16,
}

/// Parses the packet quoted by the ICMP error at `ip.l4`. `rewrite_src`: the quoted packet was
/// sent through the NAT by us (an inbound error: its source is what gets translated back);
/// otherwise it was received by the pod (an outbound error: its destination is translated).
#[inline(always)]
fn quoted(ctx: &TcContext, ip: &Ipv4, rewrite_src: bool) -> Option<Quoted> {
    let inner = ip.l4_off() + 8;
    let h = read::<[u8; IP_LEN]>(ctx, inner)?;
    if h[0] != 0x45 {
        return None;
    }
    let proto = h[9];
    let l4 = inner + IP_LEN;
    let (sport, dport, ports, port_off) = match proto {
        PROTO_TCP | PROTO_UDP => {
            let p = read::<[u8; 4]>(ctx, l4)?;
            let off = if rewrite_src { l4 } else { l4 + 2 };
            (
                u16::from_ne_bytes([p[0], p[1]]),
                u16::from_ne_bytes([p[2], p[3]]),
                true,
                off,
            )
        }
        PROTO_ICMP => {
            let p = read::<[u8; 8]>(ctx, l4)?;
            // Only a query (echo, timestamp, information, address mask) belongs to a flow.
            if !icmp::is_query(p[0], true) || !rewrite_src {
                return None;
            }
            (u16::from_ne_bytes([p[4], p[5]]), 0, true, l4 + 4)
        }
        _ => (0, 0, false, 0),
    };
    Some(Quoted {
        inner,
        proto,
        src: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_ne_bytes([h[16], h[17], h[18], h[19]]),
        sport,
        dport,
        ports,
        port_off,
        old_csum: u16::from_ne_bytes([h[10], h[11]]),
    })
}

/// Rewrites the quoted packet's address at `addr_off` (`old` → `new`) and its port
/// (`old_port` → `new_port`), then the ICMP checksum over every changed word.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one rewrite, named parts; inlined into both callers"
)]
fn translate_quoted(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Quoted,
    addr_off: usize,
    old: u32,
    new: u32,
    old_port: u16,
    new_port: u16,
) -> bool {
    let ok = ctx
        .l3_csum_replace(q.inner + 10, u64::from(old), u64::from(new), 4)
        .is_ok()
        && ctx.store(addr_off, &new, 0).is_ok()
        && (!q.ports || ctx.store(q.port_off, &new_port, 0).is_ok());
    if !ok {
        return false;
    }
    let Some(new_csum) = read::<u16>(ctx, q.inner + 10) else {
        return false;
    };
    ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), 4)
        .is_ok()
        && ctx
            .l4_csum_replace(icmp_csum, u64::from(q.old_csum), u64::from(new_csum), 2)
            .is_ok()
        && (!q.ports
            || ctx
                .l4_csum_replace(icmp_csum, u64::from(old_port), u64::from(new_port), 2)
                .is_ok())
}

/// An ICMP error arriving on the uplink (types 3, 11, 12). `None`: not about one of our flows
/// (host traffic).
#[inline(always)]
pub fn icmp_error(ctx: &TcContext, ip: &Ipv4, bridge_mac: [u8; 6]) -> Option<Decision> {
    // The quoted packet went out as uplink:nat_port → remote:remote_port.
    let q = quoted(ctx, ip, true)?;
    let key = CtKey::wire_side(q.dst, q.dport, q.sport, q.proto);
    // SAFETY: read-only lookup, copied at once.
    let (pod_ip, pod_port) = match unsafe { CT_IN.get(key) } {
        Some(v) => (v.addr, v.port),
        None => return None,
    };
    if ip.ttl() <= 1 {
        return None;
    }
    let outer_dst = ip.daddr();
    let ok = translate_quoted(
        ctx,
        ip.l4_off() + 2,
        &q,
        q.inner + 12,
        q.src,
        pod_ip,
        q.sport,
        pod_port,
    ) && ctx
        .l3_csum_replace(IP_CSUM, u64::from(outer_dst), u64::from(pod_ip), 4)
        .is_ok()
        && ctx.store(IP_DST, &pod_ip, 0).is_ok();
    if !ok {
        return Some(Verdict::DropMalformed.into());
    }
    Some(deliver(ctx, ip, pod_ip, bridge_mac, Verdict::IcmpErrorIn))
}

/// What [`outbound`] did.
pub enum Outbound {
    /// Outer source and quoted destination translated (TTL and redirect are the caller's).
    Translated,
    /// The quoted packet is not of a flow this pod has through the NAT.
    NoFlow,
    /// A rewrite failed.
    Failed,
}

/// An ICMP error a pod sends to the outside (types 3, 4, 5, 11, 12) about a packet it received
/// from `remote`: translated with the flow's conntrack entry, so the remote sees it come from
/// the NAT address about the NAT port it knows.
#[inline(always)]
pub fn outbound(ctx: &TcContext, ip: &Ipv4, uplink_addr: u32) -> Outbound {
    let Some(q) = quoted(ctx, ip, false) else {
        return Outbound::NoFlow;
    };
    let pod = ip.saddr();
    // The quoted packet came remote:sport → pod:dport.
    if q.dst != pod {
        return Outbound::NoFlow;
    }
    let key = CtKey::pod_side(pod, q.dport, q.src, q.sport, q.proto);
    // SAFETY: read-only lookup, copied at once.
    let (nat_addr, nat_port) = match unsafe { CT_OUT.get(key) } {
        Some(v) => (v.addr, v.port),
        None => return Outbound::NoFlow,
    };
    let icmp_csum = ip.l4_off() + 2;
    let ok = translate_quoted(
        ctx,
        icmp_csum,
        &q,
        q.inner + 16,
        pod,
        nat_addr,
        q.dport,
        nat_port,
    ) && ctx
        .l3_csum_replace(IP_CSUM, u64::from(pod), u64::from(uplink_addr), 4)
        .is_ok()
        && ctx.store(IP_SRC, &uplink_addr, 0).is_ok();
    if ok {
        Outbound::Translated
    } else {
        Outbound::Failed
    }
}
