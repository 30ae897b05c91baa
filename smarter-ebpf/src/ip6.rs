//! The IPv6 header view of the dual-stack programs ([`crate::pod6`], [`crate::nat66`]) and
//! the L4 facts NAT66 needs: where the port (or ICMPv6 echo identifier) and checksum sit.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_csum_diff,
    programs::TcContext,
};
use smarter_common::{ct::proto, link::nexthdr};

use crate::parse::{ETH_LEN, read};

/// The IPv6 header length.
pub const IP6_LEN: usize = 40;
/// Offset of the header after the IPv6 header.
pub const L4_OFF: usize = ETH_LEN + IP6_LEN;
/// The furthest an upper-layer header may start (from the frame's start) for translation:
/// a longer chain of extension headers is walked no further and not translated (dropped as
/// unnatable by NAT66, never forwarded with the pod's address).
pub const MAX_L4_OFF: usize = L4_OFF + 256;
/// Offset of the hop limit.
pub const HOP_OFF: usize = ETH_LEN + 7;
/// Offset of the source address.
pub const SRC_OFF: usize = ETH_LEN + 8;
/// Offset of the destination address.
pub const DST_OFF: usize = ETH_LEN + 24;
/// ICMPv6 echo request.
pub const ICMP6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
pub const ICMP6_ECHO_REPLY: u8 = 129;

/// A view of the fixed IPv6 header after the Ethernet header.
#[derive(Clone, Copy)]
pub struct Ipv6 {
    /// The header, as on the wire.
    pub h: [u8; IP6_LEN],
}

impl Ipv6 {
    /// The IPv6 header after the Ethernet header. `None`: truncated or not version 6.
    #[inline(always)]
    pub fn read(ctx: &TcContext) -> Option<Self> {
        let h = read::<[u8; IP6_LEN]>(ctx, ETH_LEN)?;
        (h[0] >> 4 == 6).then_some(Self { h })
    }

    /// The next header.
    #[inline(always)]
    pub fn next(&self) -> u8 {
        self.h[6]
    }

    /// The payload length.
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes([self.h[4], self.h[5]])
    }

    /// The hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.h[7]
    }

    /// The source address.
    #[inline(always)]
    pub fn src(&self) -> [u8; 16] {
        addr_at(&self.h, 8)
    }

    /// The destination address.
    #[inline(always)]
    pub fn dst(&self) -> [u8; 16] {
        addr_at(&self.h, 24)
    }
}

/// The 16 bytes of `h` at `at`.
#[inline(always)]
fn addr_at(h: &[u8; IP6_LEN], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        a[i] = h[at + i];
        i += 1;
    }
    a
}

/// The address as two native words (compared without `memcmp`, which BPF has not).
#[inline(always)]
pub fn words(a: &[u8; 16]) -> (u64, u64) {
    (crate::guard::word(a, 0), crate::guard::word(a, 8))
}

/// Whether `a` is link-local (`fe80::/10`).
#[inline(always)]
pub fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// The L4 facts NAT66 needs (addresses and ports network byte order as on the wire).
pub struct L4Info6 {
    /// Pod-side port (TCP/UDP) or ICMPv6 echo identifier.
    pub port: u16,
    /// Remote port (0 for ICMPv6).
    pub remote_port: u16,
    /// Offset of the port (or identifier) to rewrite.
    pub port_off: usize,
    /// Offset of the L4 checksum.
    pub csum_off: usize,
    /// `bpf_l4_csum_replace` flags besides the size (UDP: a zero result is written as
    /// 0xffff).
    pub flags: u64,
    /// TCP flags (0 otherwise).
    pub tcp_flags: u8,
}

/// The L4 header `next` at `at` ([`L4_OFF`], or behind extension headers,
/// [`crate::frag6::Shape::l4`]), as NAT66 translates it: TCP, UDP and ICMPv6 echo (`echo`:
/// request outbound, reply inbound). `outbound`: the pod's port is the source. `None`: not
/// translatable (another protocol, a chain of extension headers too long to walk, other
/// ICMPv6, truncated).
#[inline(always)]
pub fn l4(ctx: &TcContext, next: u8, at: usize, echo: u8, outbound: bool) -> Option<L4Info6> {
    // A bound the verifier can carry into every offset below.
    if at > MAX_L4_OFF {
        return None;
    }
    match next {
        proto::TCP | proto::UDP => {
            let tcp = next == proto::TCP;
            let p = read::<[u8; 4]>(ctx, at)?;
            let (sport, dport) = (
                u16::from_ne_bytes([p[0], p[1]]),
                u16::from_ne_bytes([p[2], p[3]]),
            );
            let tcp_flags = if tcp {
                read::<[u8; 14]>(ctx, at)?[13]
            } else {
                read::<[u8; 8]>(ctx, at)?;
                0
            };
            let (port, remote_port, port_off) = if outbound {
                (sport, dport, at)
            } else {
                (dport, sport, at + 2)
            };
            Some(L4Info6 {
                port,
                remote_port,
                port_off,
                csum_off: at + if tcp { 16 } else { 6 },
                flags: if tcp {
                    0
                } else {
                    u64::from(BPF_F_MARK_MANGLED_0)
                },
                tcp_flags,
            })
        }
        nexthdr::ICMPV6 => {
            let m = read::<[u8; 8]>(ctx, at)?;
            (m[0] == echo).then_some(L4Info6 {
                port: u16::from_ne_bytes([m[4], m[5]]),
                remote_port: 0,
                port_off: at + 4,
                csum_off: at + 2,
                flags: 0,
                tcp_flags: 0,
            })
        }
        _ => None,
    }
}

/// Whether ICMPv6 type `kind` is an error NAT66 translates (destination unreachable, packet
/// too big, time exceeded, parameter problem), both ways.
#[inline(always)]
pub fn is_error(kind: u8) -> bool {
    (1..=4).contains(&kind)
}

/// The checksum difference of replacing the 16 bytes `old` by `new` (`bpf_csum_diff`), for
/// `l4_csum_replace` with size 0. `None`: the helper failed.
#[inline(always)]
pub fn csum_diff16(old: &mut [u8; 16], new: &mut [u8; 16]) -> Option<u64> {
    // SAFETY: both buffers are 16 bytes, valid for the call (the helper reads them as 32-bit
    // words; its memory arguments need no alignment).
    let diff =
        unsafe { bpf_csum_diff(old.as_mut_ptr().cast(), 16, new.as_mut_ptr().cast(), 16, 0) };
    (diff >= 0).then_some(diff as u64)
}

/// `bpf_l4_csum_replace` flag: the change is part of the pseudo header.
pub const PSEUDO: u64 = BPF_F_PSEUDO_HDR as u64;
