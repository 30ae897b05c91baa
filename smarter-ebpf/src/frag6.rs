//! IPv6 fragments of translated datagrams. A fragment header, behind the IPv6 header or its
//! other extension headers ([`shape`]), gives the protocol, where the L4 header is (first fragment: behind it) and
//! whether this is a later fragment (no L4 header, no ports): those follow what their first
//! fragment was translated to, remembered in [`FRAG6`] keyed by (source, fragment id, protocol)
//! for as long as Linux waits for a datagram's fragments (as IPv4's [`crate::frag`]). A later
//! fragment arriving before its first finds nothing: it is left to the host stack, which never
//! completes the datagram and drops it when reassembly times out (IPv4 does the same).

use smarter_common::{
    link::{MAX_EXT_HEADERS, nexthdr},
    v6::{Frag6Key, Frag6Value},
};

use crate::{
    ip6::{Ipv6, L4_OFF, MAX_L4_OFF},
    maps::FRAG6,
    parse::read,
};

/// A datagram's fragments must all arrive within this time of the first (Linux's
/// `ip6frag_time` default): older entries are not used.
const FRAG_TIMEOUT_NS: u64 = 60_000_000_000;

/// The shape of an IPv6 packet for translation.
#[derive(Clone, Copy)]
pub struct Shape {
    /// The upper-layer protocol (after the fragment header, if any).
    pub proto: u8,
    /// Offset of the L4 header ([`L4_OFF`], or further behind extension headers).
    pub l4: usize,
    /// A fragment header was there.
    pub fragment: bool,
    /// A fragment other than the first (offset not 0): no L4 header.
    pub later: bool,
    /// More fragments follow.
    pub more: bool,
    /// The fragment identification, as on the wire (0 when not a fragment).
    pub id: u32,
}

/// The shape of `ip`: its extension headers walked as the kernel's `ipv6_skip_exthdr` does
/// for NAT (hop-by-hop, routing and destination options, at most [`MAX_EXT_HEADERS`] of
/// them, and one fragment header, in any order). They stay in the packet, untouched: only
/// the addresses and the upper-layer header are translated. `None`: a truncated header.
/// After a chain longer than that (or past [`MAX_L4_OFF`]), `proto` is the next header
/// still to walk or `l4` lies beyond [`MAX_L4_OFF`], and [`crate::ip6::l4`] finds nothing.
#[inline(always)]
pub fn shape(ctx: &aya_ebpf::programs::TcContext, ip: &Ipv6) -> Option<Shape> {
    let mut s = Shape {
        proto: ip.next(),
        l4: L4_OFF,
        fragment: false,
        later: false,
        more: false,
        id: 0,
    };
    for _ in 0..=MAX_EXT_HEADERS {
        if s.l4 > MAX_L4_OFF {
            break;
        }
        match s.proto {
            nexthdr::HOP_BY_HOP | nexthdr::ROUTING | nexthdr::DEST_OPTS => {
                let e = read::<[u8; 2]>(ctx, s.l4)?;
                s.proto = e[0];
                s.l4 += (usize::from(e[1]) + 1) * 8;
            }
            nexthdr::FRAGMENT if !s.fragment => {
                let f = read::<[u8; 8]>(ctx, s.l4)?;
                let off_flags = u16::from_be_bytes([f[2], f[3]]);
                s.proto = f[0];
                s.l4 += 8;
                s.fragment = true;
                s.later = off_flags & 0xfff8 != 0;
                s.more = off_flags & 1 != 0;
                s.id = u32::from_ne_bytes([f[4], f[5], f[6], f[7]]);
                // A later fragment carries no header of its own beyond this one.
                if s.later {
                    break;
                }
            }
            _ => break,
        }
    }
    Some(s)
}

#[inline(always)]
fn key(src: [u8; 16], s: &Shape) -> Frag6Key {
    Frag6Key {
        remote: src,
        id: s.id,
        proto: s.proto,
        pad: [0; 3],
    }
}

/// Remembers that the datagram of first fragment `s` from `src` was translated to `to`
/// (`flags`: `smarter_common::ct::FRAG_F_*`). An LRU insert fails only without memory: the
/// later fragments are then the host stack's.
#[inline(always)]
pub fn remember(src: [u8; 16], s: &Shape, to: [u8; 16], flags: u32, now: u64) {
    let value = Frag6Value {
        first_seen: now,
        addr: to,
        flags,
        pad: 0,
    };
    let _ = FRAG6.insert(key(src, s), value, 0);
}

/// What the first fragment of later fragment `s` from `src` was translated to, if it was with
/// these `flags` and recently enough.
#[inline(always)]
pub fn recall(src: [u8; 16], s: &Shape, flags: u32, now: u64) -> Option<[u8; 16]> {
    // SAFETY: read-only lookup, copied at once.
    let v = unsafe { FRAG6.get(key(src, s)) }?;
    // Through a volatile read: a plain copy of the map value's array into the returned value
    // compiles to a `memcpy` call, which the arm32 JIT cannot take.
    // SAFETY: a valid map value, read once.
    let to = unsafe { core::ptr::read_volatile(&v.addr) };
    let (first_seen, f) = (v.first_seen, v.flags);
    if f != flags || now.saturating_sub(first_seen) > FRAG_TIMEOUT_NS {
        return None;
    }
    Some(to)
}
