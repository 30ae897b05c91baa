//! The CLAT (464XLAT's customer-side translator, RFC 6877), stateless IPv4 ↔ IPv6 per
//! RFC 7915, on an IPv6-only uplink ([`smarter_common::clat`]).
//!
//! - Out ([`out`], on the uplink's egress): a pod packet the pod program source-NATed to
//!   [`CLAT_V4`](smarter_common::clat::CLAT_V4) and redirected here (the node has no IPv4 route) becomes IPv6 from the node's
//!   CLAT address to the NAT64 prefix + its IPv4 destination: TCP, UDP, ICMP echo (→ ICMPv6
//!   echo, checksum with the pseudo header), fragments (with a fragment header), then sent on
//!   through the kernel's IPv6 route and neighbour lookup (`bpf_redirect_neigh`).
//! - In ([`inbound`], on the uplink's ingress, before everything else): IPv6 from the NAT64
//!   prefix to the CLAT address becomes IPv4 from the embedded address to [`CLAT_V4`](smarter_common::clat::CLAT_V4), which the
//!   reverse NAT then takes into the pod: TCP, UDP, ICMPv6 echo replies, fragments, and ICMPv6
//!   errors (destination unreachable, packet too big, time exceeded, parameter problem) with the
//!   quoted packet translated too ([`inbound`]), so PMTU discovery works end to end.
//!
//! Checksums are fixed by difference (`bpf_csum_diff`): the pseudo-header change for TCP/UDP,
//! the pseudo header ICMPv6 adds, and for errors the whole rewritten prefix of the message.

mod inbound;
mod out;

pub use inbound::{In, inbound};
pub use out::out;

use aya_ebpf::helpers::bpf_csum_diff;
use smarter_common::clat::NEXTHDR_ICMPV6;

use crate::parse::IP_LEN;

/// Ones-complement fold of a 32-bit partial sum (as `bpf_csum_diff` returns it) to 16 bits,
/// in the byte order the sum was taken in: the packet's bytes as native words, so the result
/// goes back with `to_ne_bytes`.
#[inline(always)]
pub(super) fn fold(sum: i64) -> u16 {
    let mut s = (sum as u64) & 0xffff_ffff;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// `bpf_csum_diff` over two stack buffers (sizes multiples of 4), `seed` added.
#[inline(always)]
pub(super) fn csum_diff<const F: usize, const T: usize>(
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
pub(super) fn ipv4_header(
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
pub(super) fn pseudo6(src: &[u8; 16], dst: &[u8; 16], len: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(src);
    p[16..32].copy_from_slice(dst);
    p[32..36].copy_from_slice(&len.to_be_bytes());
    p[39] = NEXTHDR_ICMPV6;
    p
}
