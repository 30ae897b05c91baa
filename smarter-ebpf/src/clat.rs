//! The CLAT (464XLAT's customer-side translator, RFC 6877), stateless IPv4 ↔ IPv6 per
//! RFC 7915, on an IPv6-only uplink ([`smarter_common::clat`]).
//!
//! - Out ([`out`], on the uplink's egress): a pod packet the pod program source-NATed to
//!   [`CLAT_V4`] and redirected here (the node has no IPv4 route) becomes IPv6 from the node's
//!   CLAT address to the NAT64 prefix + its IPv4 destination: TCP, UDP, ICMP echo (→ ICMPv6
//!   echo, checksum with the pseudo header), fragments (with a fragment header), then sent on
//!   through the kernel's IPv6 route and neighbour lookup (`bpf_redirect_neigh`).
//! - In ([`inbound`], on the uplink's ingress, before everything else): IPv6 from the NAT64
//!   prefix to the CLAT address becomes IPv4 from the embedded address to [`CLAT_V4`], which the
//!   reverse NAT then takes into the pod: TCP, UDP, ICMPv6 echo replies, fragments, and ICMPv6
//!   errors (destination unreachable, packet too big, time exceeded, parameter problem) with the
//!   quoted packet translated too ([`error_in`]), so PMTU discovery works end to end.
//!
//! Checksums are fixed by difference (`bpf_csum_diff`): the pseudo-header change for TCP/UDP,
//! the pseudo header ICMPv6 adds, and for errors the whole rewritten prefix of the message.

use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, bpf_adj_room_mode::BPF_ADJ_ROOM_NET,
    },
    helpers::{
        bpf_csum_diff, bpf_redirect_neigh, bpf_skb_adjust_room, bpf_skb_change_proto,
        bpf_skb_load_bytes,
    },
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

use crate::{
    maps::CLAT_SCRATCH,
    parse::{ETH_P_IP, ETH_P_IPV6, ETH_TYPE, IP_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, read},
    verdict::{Decision, count_verdict},
};

/// Ones-complement fold of a 32-bit partial sum (as `bpf_csum_diff` returns it) to 16 bits,
/// in the byte order the sum was taken in: the packet's bytes as native words, so the result
/// goes back with `to_ne_bytes`.
#[inline(always)]
fn fold(sum: i64) -> u16 {
    let mut s = (sum as u64) & 0xffff_ffff;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// `bpf_csum_diff` over two stack buffers (sizes multiples of 4), `seed` added.
#[inline(always)]
fn csum_diff<const F: usize, const T: usize>(
    from: &mut [u8; F],
    to: &mut [u8; T],
    seed: u32,
) -> i64 {
    // SAFETY: both buffers live on the stack for the call; the sizes are theirs.
    unsafe {
        bpf_csum_diff(
            from.as_mut_ptr().cast(),
            F as u32,
            to.as_mut_ptr().cast(),
            T as u32,
            seed,
        )
    }
}

/// The IPv4 header checksum of `h` (its checksum field zero).
#[inline(always)]
fn ipv4_csum(h: &mut [u8; IP_LEN]) -> [u8; 2] {
    let mut none = [0u8; 4];
    let sum = csum_diff(&mut none, h, 0);
    // Subtracting zero bytes added nothing; `none` is only the helper's `from`.
    (!fold(sum)).to_ne_bytes()
}

/// An IPv4 header for a translated packet (checksum filled in).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one field per IPv4 header field set"
)]
fn ipv4_header(
    tos: u8,
    tot_len: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    proto: u8,
    src: u32,
    dst: u32,
) -> [u8; IP_LEN] {
    let t = tot_len.to_be_bytes();
    let i = id.to_be_bytes();
    let f = frag.to_be_bytes();
    let s = src.to_ne_bytes();
    let d = dst.to_ne_bytes();
    let mut h = [
        0x45, tos, t[0], t[1], i[0], i[1], f[0], f[1], ttl, proto, 0, 0, s[0], s[1], s[2], s[3],
        d[0], d[1], d[2], d[3],
    ];
    let c = ipv4_csum(&mut h);
    h[10] = c[0];
    h[11] = c[1];
    h
}

/// The ICMPv6 pseudo header (RFC 8200 section 8.1) for a message of `len` bytes.
#[inline(always)]
fn pseudo6(src: &[u8; 16], dst: &[u8; 16], len: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(src);
    p[16..32].copy_from_slice(dst);
    p[32..36].copy_from_slice(&len.to_be_bytes());
    p[39] = NEXTHDR_ICMPV6;
    p
}

/// Translates the IPv4 packet at `l2` (source [`CLAT_V4`], from the pod program's NAT) to IPv6
/// and sends it out of `ifindex` (the uplink whose egress this is). `l3`: no Ethernet header.
#[inline(always)]
pub fn out(ctx: &TcContext, l2: usize, ifindex: u32, c: &ClatValue, l3: bool) -> Decision {
    match try_out(ctx, l2, ifindex, c, l3) {
        Some(d) => d,
        None => Verdict::DropUnnatable.into(),
    }
}

#[inline(always)]
fn try_out(ctx: &TcContext, l2: usize, ifindex: u32, c: &ClatValue, l3: bool) -> Option<Decision> {
    let h = read::<[u8; IP_LEN]>(ctx, l2)?;
    // Options are not translated (RFC 7915 ignores them; pods do not send them).
    if h[0] != 0x45 {
        return None;
    }
    let tot_len = u16::from_be_bytes([h[2], h[3]]);
    let frag_field = u16::from_be_bytes([h[6], h[7]]);
    let offset = frag_field & 0x1fff;
    let more = frag_field & 0x2000 != 0;
    let fragmented = more || offset != 0;
    let proto = h[9];
    if tot_len < IP_LEN as u16 || !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP) {
        return None;
    }
    let daddr = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    let src6 = c.src6;
    let dst6 = c.embed(daddr);
    let next = if proto == PROTO_ICMP {
        NEXTHDR_ICMPV6
    } else {
        proto
    };
    let payload = tot_len - IP_LEN as u16 + if fragmented { FRAG_HDR_LEN as u16 } else { 0 };

    let l4 = l2 + IP_LEN;
    if offset == 0 {
        l4_checksums(ctx, &h, l4, &src6, &dst6, tot_len - IP_LEN as u16)?;
    }
    // SAFETY: plain helper calls on the program's own context.
    if unsafe { bpf_skb_change_proto(ctx.skb.skb, ETH_P_IPV6.to_be(), 0) } != 0 {
        return None;
    }
    if fragmented
        // SAFETY: as above.
        && unsafe { bpf_skb_adjust_room(ctx.skb.skb, FRAG_HDR_LEN as i32, BPF_ADJ_ROOM_NET, 0) }
            != 0
    {
        return None;
    }
    let p = payload.to_be_bytes();
    let mut v6 = [0u8; IPV6_LEN];
    v6[0] = 0x60 | (h[1] >> 4);
    v6[1] = h[1] << 4;
    v6[4] = p[0];
    v6[5] = p[1];
    v6[6] = if fragmented { NEXTHDR_FRAGMENT } else { next };
    v6[7] = h[8];
    v6[8..24].copy_from_slice(&src6);
    v6[24..40].copy_from_slice(&dst6);
    ctx.store(l2, &v6, 0).ok()?;
    if fragmented {
        let o = ((offset << 3) | u16::from(more)).to_be_bytes();
        let fh: [u8; FRAG_HDR_LEN] = [next, 0, o[0], o[1], 0, 0, h[4], h[5]];
        ctx.store(l2 + IPV6_LEN, &fh, 0).ok()?;
    }
    if l3 {
        return Some(Decision::redirected(Verdict::ClatOut, TC_ACT_OK));
    }
    ctx.store(ETH_TYPE, &ETH_P_IPV6.to_be_bytes(), 0).ok()?;
    // The next hop's MAC: the kernel's route and neighbour lookup for the IPv6 packet (a FIB
    // lookup helper would need IPv6 forwarding on the uplink, which would make the node stop
    // taking its default route from router advertisements). Back through this egress hook,
    // where the backstop knows the CLAT's source.
    // SAFETY: plain helper call; NULL params = resolve the neighbour of the packet's route.
    let act = unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) } as i32;
    Some(Decision::redirected(Verdict::ClatOut, act))
}

/// Fixes the L4 checksum of the IPv4 packet `h` (first fragment or whole) for its IPv6 form:
/// TCP/UDP by the pseudo-header difference, ICMP echo by the type and the pseudo header ICMPv6
/// adds. `len`: the L4 length of the whole datagram (the IPv4 payload).
#[inline(always)]
fn l4_checksums(
    ctx: &TcContext,
    h: &[u8; IP_LEN],
    l4: usize,
    src6: &[u8; 16],
    dst6: &[u8; 16],
    len: u16,
) -> Option<()> {
    match h[9] {
        PROTO_TCP | PROTO_UDP => {
            let (csum_off, flags) = if h[9] == PROTO_TCP {
                (l4 + 16, BPF_F_PSEUDO_HDR)
            } else {
                // IPv6 has no "no checksum" UDP: a pod's zero checksum cannot be translated.
                if read::<[u8; 2]>(ctx, l4 + 6)? == [0, 0] {
                    return None;
                }
                (l4 + 6, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0)
            };
            let mut from = [h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]];
            let mut to = [0u8; 32];
            to[..16].copy_from_slice(src6);
            to[16..].copy_from_slice(dst6);
            let diff = csum_diff(&mut from, &mut to, 0);
            ctx.l4_csum_replace(csum_off, 0, diff as u64, u64::from(flags))
                .ok()
        }
        _ => {
            let [kind, code] = read::<[u8; 2]>(ctx, l4)?;
            if kind != icmp::ECHO_REQUEST {
                return None;
            }
            let mut from = [kind, code, 0, 0];
            let mut to = [0u8; 44];
            to[..40].copy_from_slice(&pseudo6(src6, dst6, u32::from(len)));
            to[40] = icmp6::ECHO_REQUEST;
            to[41] = code;
            let diff = csum_diff(&mut from, &mut to, 0);
            ctx.l4_csum_replace(l4 + 2, 0, diff as u64, 0).ok()?;
            ctx.store(l4, &icmp6::ECHO_REQUEST, 0).ok()
        }
    }
}

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
