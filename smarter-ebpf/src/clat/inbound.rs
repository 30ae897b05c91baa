//! IPv6 → IPv4 on the way in ([`inbound`]; see [`super`]): replies, fragments and ICMPv6
//! errors with their quoted packet.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, bpf_adj_room_mode::BPF_ADJ_ROOM_NET},
    helpers::{bpf_csum_diff, bpf_skb_adjust_room, bpf_skb_change_proto, bpf_skb_load_bytes},
    programs::TcContext,
};
use smarter_common::{
    ClatValue, Verdict,
    clat::{
        FRAG_HDR_LEN, IPV4_DUMMY, IPV6_LEN, NEXTHDR_FRAGMENT, NEXTHDR_ICMPV6, error_to_v4, icmp6,
        ptb_mtu,
    },
    icmp,
};

use super::{csum_diff, fold, ipv4_header, pseudo6};
use crate::{
    maps::CLAT_SCRATCH,
    parse::{ETH_P_IP, ETH_TYPE, IP_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, read},
    verdict::count_verdict,
};

/// What [`inbound`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// Not IPv6 from the NAT64 prefix to a CLAT address here: untouched.
    NotOurs,
    /// Now IPv4 to [`CLAT_V4`] at the same offset, for the reverse NAT.
    Translated,
    /// Ours, but not translatable (or a helper failed): to be dropped.
    Failed,
}

/// On `ifindex`'s ingress: translates IPv6 from the NAT64 prefix to the CLAT address `c.src6`
/// into IPv4 (see the module docs). `l2`: where the IPv6 header starts (0 on a layer-3 device).
#[inline(always)]
pub fn inbound(ctx: &TcContext, l2: usize, c: &ClatValue, l3: bool) -> In {
    let Some(h) = read::<[u8; IPV6_LEN]>(ctx, l2) else {
        return In::NotOurs;
    };
    if h[0] >> 4 != 6 || h[24..40] != c.src6[..] {
        return In::NotOurs;
    }
    // From the NAT64 prefix: the IPv4 address it embeds. An error from an IPv6 router on the
    // way (packet too big, hop limit exceeded) has no IPv4 address: it comes from the IPv4
    // dummy address (RFC 7600), as RFC 7915 section 5.1 allows.
    let from_prefix = h[8..20] == c.pref64[..];
    let saddr = if from_prefix {
        u32::from_ne_bytes([h[20], h[21], h[22], h[23]])
    } else {
        IPV4_DUMMY
    };
    // Hop limit expiring here: the host stack answers it.
    if h[7] <= 1 {
        return In::NotOurs;
    }
    let r = match h[6] {
        NEXTHDR_ICMPV6 => match read::<[u8; 2]>(ctx, l2 + IPV6_LEN) {
            Some([icmp6::ECHO_REPLY, _]) if from_prefix => simple_in(ctx, l2, &h, saddr, c, None),
            // Echo requests to the CLAT address, neighbour discovery: the host's.
            Some([kind, code]) if error_to_v4(kind, code).is_some() => {
                error_in(ctx, l2, &h, saddr, c)
            }
            _ => return In::NotOurs,
        },
        PROTO_TCP | PROTO_UDP if from_prefix => simple_in(ctx, l2, &h, saddr, c, None),
        NEXTHDR_FRAGMENT if from_prefix => match read::<[u8; FRAG_HDR_LEN]>(ctx, l2 + IPV6_LEN) {
            Some(fh) if matches!(fh[0], PROTO_TCP | PROTO_UDP | NEXTHDR_ICMPV6) => {
                simple_in(ctx, l2, &h, saddr, c, Some(fh))
            }
            _ => None,
        },
        // Anything else from the NAT64 prefix (extension headers, other protocols) is no
        // flow of ours, and the host must not answer it (a TCP reset would end a pod's flow).
        _ if from_prefix => None,
        _ => return In::NotOurs,
    };
    if r.is_none() {
        return In::Failed;
    }
    if !l3 && ctx.store(ETH_TYPE, &ETH_P_IP.to_be_bytes(), 0).is_err() {
        return In::Failed;
    }
    count_verdict(Verdict::ClatIn, ctx.len());
    In::Translated
}

/// TCP, UDP or an ICMPv6 echo reply, whole or a fragment (`fh`: its fragment header).
#[inline(always)]
fn simple_in(
    ctx: &TcContext,
    l2: usize,
    h: &[u8; IPV6_LEN],
    saddr: u32,
    c: &ClatValue,
    fh: Option<[u8; FRAG_HDR_LEN]>,
) -> Option<()> {
    let payload = u16::from_be_bytes([h[4], h[5]]);
    let (next, offset, more, id, l4_len) = match fh {
        Some(f) => {
            let o = u16::from_be_bytes([f[2], f[3]]);
            (
                f[0],
                o >> 3,
                o & 1 != 0,
                [f[6], f[7]],
                payload.checked_sub(FRAG_HDR_LEN as u16)?,
            )
        }
        None => (h[6], 0, false, [0, 0], payload),
    };
    let l4 = l2 + IPV6_LEN + if fh.is_some() { FRAG_HDR_LEN } else { 0 };
    if offset == 0 {
        let mut from = [0u8; 32];
        from.copy_from_slice(&h[8..40]);
        match next {
            PROTO_TCP | PROTO_UDP => {
                let (csum_off, flags) = if next == PROTO_TCP {
                    (l4 + 16, BPF_F_PSEUDO_HDR)
                } else {
                    (l4 + 6, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0)
                };
                let mut to = [0u8; 8];
                to[..4].copy_from_slice(&saddr.to_ne_bytes());
                to[4..].copy_from_slice(&c.v4.to_ne_bytes());
                let diff = csum_diff(&mut from, &mut to, 0);
                ctx.l4_csum_replace(csum_off, 0, diff as u64, u64::from(flags))
                    .ok()?;
            }
            _ => {
                let [_, code] = read::<[u8; 2]>(ctx, l4)?;
                let mut from = [0u8; 44];
                // The pseudo header covers the whole ICMPv6 message (all fragments).
                let mut src6 = [0u8; 16];
                src6.copy_from_slice(&h[8..24]);
                from[..40].copy_from_slice(&pseudo6(&src6, &c.src6, u32::from(l4_len)));
                from[40] = icmp6::ECHO_REPLY;
                from[41] = code;
                let mut to = [icmp::ECHO_REPLY, code, 0, 0];
                let diff = csum_diff(&mut from, &mut to, 0);
                ctx.l4_csum_replace(l4 + 2, 0, diff as u64, 0).ok()?;
                ctx.store(l4, &icmp::ECHO_REPLY, 0).ok()?;
            }
        }
    }
    // SAFETY: plain helper calls on the program's own context.
    if unsafe { bpf_skb_change_proto(ctx.skb.skb, ETH_P_IP.to_be(), 0) } != 0 {
        return None;
    }
    if fh.is_some()
        // SAFETY: as above.
        && unsafe {
            bpf_skb_adjust_room(ctx.skb.skb, -(FRAG_HDR_LEN as i32), BPF_ADJ_ROOM_NET, 0)
        } != 0
    {
        return None;
    }
    let proto = if next == NEXTHDR_ICMPV6 {
        PROTO_ICMP
    } else {
        next
    };
    let frag = if fh.is_some() {
        offset | if more { 0x2000 } else { 0 }
    } else {
        0x4000
    };
    let tos = (h[0] << 4) | (h[1] >> 4);
    let v4 = ipv4_header(
        tos,
        l4_len + IP_LEN as u16,
        u16::from_be_bytes(id),
        frag,
        h[7],
        proto,
        saddr,
        c.v4,
    );
    ctx.store(l2, &v4, 0).ok()
}

/// An ICMPv6 error about a packet the CLAT sent: becomes the ICMPv4 error RFC 7915 names, with
/// the quoted IPv6 header replaced by its IPv4 original (so the reverse NAT finds the flow) and
/// the message 40 bytes shorter (20 outside, 20 quoted). The checksum's before and after live
/// in [`CLAT_SCRATCH`] (more than the stack holds beside the NAT).
#[inline(always)]
fn error_in(
    ctx: &TcContext,
    l2: usize,
    h: &[u8; IPV6_LEN],
    saddr: u32,
    c: &ClatValue,
) -> Option<()> {
    let l4 = l2 + IPV6_LEN;
    let e = read::<[u8; 8]>(ctx, l4)?;
    let (kind, code) = error_to_v4(e[0], e[1])?;
    let payload = u16::from_be_bytes([h[4], h[5]]);
    let msg4_len = payload.checked_sub(IP_LEN as u16)?;
    let s = CLAT_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array, used only during this program run.
    let s = unsafe { &mut *s };

    // Out: the pseudo header, the ICMPv6 header with its checksum zero, the quote.
    s.old = [0; 96];
    s.old[..16].copy_from_slice(&h[8..24]);
    s.old[16..32].copy_from_slice(&c.src6);
    s.old[34..36].copy_from_slice(&payload.to_be_bytes());
    s.old[39] = NEXTHDR_ICMPV6;
    s.old[40] = e[0];
    s.old[41] = e[1];
    s.old[44..48].copy_from_slice(&e[4..8]);
    // SAFETY: 48 bytes into this CPU's map value at offset 48 (of 96); the helper checks the
    // packet's bounds.
    if unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            (l4 + 8) as u32,
            s.old.as_mut_ptr().add(48).cast(),
            48,
        )
    } != 0
    {
        return None;
    }
    let q = &s.old[48..96];
    // The quote must be a packet of ours: from the CLAT address, to the NAT64 prefix, not a
    // fragment.
    if q[8..24] != c.src6[..]
        || q[24..36] != c.pref64[..]
        || !matches!(q[6], PROTO_TCP | PROTO_UDP | NEXTHDR_ICMPV6)
    {
        return None;
    }
    let qdaddr = u32::from_ne_bytes([q[36], q[37], q[38], q[39]]);

    // In: the ICMPv4 header, the quoted IPv4 header and the same 8 L4 bytes.
    s.head = [0; 36];
    s.head[0] = kind;
    s.head[1] = code;
    if e[0] == icmp6::PACKET_TOO_BIG {
        let mtu = ptb_mtu(u32::from_be_bytes([e[4], e[5], e[6], e[7]])).to_be_bytes();
        s.head[6] = mtu[0];
        s.head[7] = mtu[1];
    }
    let qproto = if q[6] == NEXTHDR_ICMPV6 {
        PROTO_ICMP
    } else {
        q[6]
    };
    let qlen = u16::from_be_bytes([q[4], q[5]]).saturating_add(IP_LEN as u16);
    let qtos = (q[0] << 4) | (q[1] >> 4);
    let quoted4 = ipv4_header(qtos, qlen, 0, 0x4000, q[7], qproto, c.v4, qdaddr);
    s.head[8..28].copy_from_slice(&quoted4);
    s.head[28..36].copy_from_slice(&s.old[88..96]);
    if qproto == PROTO_ICMP && s.head[28] == icmp6::ECHO_REQUEST {
        s.head[28] = icmp::ECHO_REQUEST;
    }

    // The rest of the message is the same bytes at an even offset: the checksum by difference.
    let seed = u32::from(!u16::from_ne_bytes([e[2], e[3]]));
    // SAFETY: both buffers are this CPU's map value, their sizes are theirs.
    let sum = unsafe {
        bpf_csum_diff(
            s.old.as_mut_ptr().cast(),
            96,
            s.head.as_mut_ptr().cast(),
            36,
            seed,
        )
    };
    let csum = (!fold(sum)).to_ne_bytes();
    s.head[2] = csum[0];
    s.head[3] = csum[1];

    // SAFETY: plain helper calls on the program's own context.
    if unsafe { bpf_skb_change_proto(ctx.skb.skb, ETH_P_IP.to_be(), 0) } != 0
        // SAFETY: as above.
        || unsafe {
            bpf_skb_adjust_room(ctx.skb.skb, -(IP_LEN as i32), BPF_ADJ_ROOM_NET, 0)
        } != 0
    {
        return None;
    }
    let tos = (h[0] << 4) | (h[1] >> 4);
    let outer = ipv4_header(
        tos,
        msg4_len + IP_LEN as u16,
        0,
        0,
        h[7],
        PROTO_ICMP,
        saddr,
        c.v4,
    );
    ctx.store(l2, &outer, 0).ok()?;
    ctx.store(l2 + IP_LEN, &s.head, 0).ok()
}
