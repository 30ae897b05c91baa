//! Bounds-checked packet access and the offsets of the headers the programs read.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// Offset of the Ethernet source MAC.
pub const ETH_SRC: usize = 6;
/// Offset of the EtherType.
pub const ETH_TYPE: usize = 12;
/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// IPv4 header without options.
pub const IP_LEN: usize = 20;
/// ARP for IPv4 over Ethernet.
pub const ARP_LEN: usize = 28;

/// A pointer to a `T` at `off` bytes into the linear packet data, or `None` when the packet is
/// shorter. The comparison is written so the verifier sees the bound on the returned pointer.
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Reads a `T` (byte array or integer, any alignment) at `off`, bounds checked.
#[inline(always)]
pub fn read<T: Copy>(ctx: &TcContext, off: usize) -> Option<T> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `off` are inside the packet.
    ptr_at::<T>(ctx, off).map(|p| unsafe { p.read_unaligned() })
}

/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IP protocol numbers the datapath treats specially (smarter-common's, named for the parser).
pub use smarter_common::ct::proto::{ICMP as PROTO_ICMP, TCP as PROTO_TCP, UDP as PROTO_UDP};

/// A view of an IPv4 header (its fixed 20 bytes) and where its payload starts, so the programs
/// never index raw bytes or assume a header without options.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    /// The fixed part of the header, as on the wire.
    pub h: [u8; IP_LEN],
    /// Offset of the L4 header: `ETH_LEN + IHL * 4` (20 to 60 bytes of IP header).
    pub l4: usize,
}

impl Ipv4 {
    /// The IPv4 header after the Ethernet header. `None`: truncated, not version 4, or an IHL
    /// below 5.
    #[inline(always)]
    pub fn read(ctx: &TcContext) -> Option<Self> {
        let h = read::<[u8; IP_LEN]>(ctx, ETH_LEN)?;
        if h[0] >> 4 != 4 || h[0] & 0x0f < 5 {
            return None;
        }
        // Bounded by the mask (at most 60 bytes), which the verifier sees.
        let l4 = ETH_LEN + usize::from(h[0] & 0x0f) * 4;
        Some(Self { h, l4 })
    }

    /// The L4 offset clamped to its possible range, in a form the verifier can bound.
    #[inline(always)]
    pub fn l4_off(&self) -> usize {
        self.l4.min(ETH_LEN + 60)
    }

    /// Source address, network byte order.
    #[inline(always)]
    pub fn saddr(&self) -> u32 {
        u32::from_ne_bytes([self.h[12], self.h[13], self.h[14], self.h[15]])
    }

    /// Destination address, network byte order.
    #[inline(always)]
    pub fn daddr(&self) -> u32 {
        u32::from_ne_bytes([self.h[16], self.h[17], self.h[18], self.h[19]])
    }

    /// IP protocol.
    #[inline(always)]
    pub fn proto(&self) -> u8 {
        self.h[9]
    }

    /// Time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.h[8]
    }

    /// Total length (host byte order).
    #[inline(always)]
    pub fn tot_len(&self) -> u16 {
        u16::from_be_bytes([self.h[2], self.h[3]])
    }

    /// Identification, network byte order (only compared, never computed on).
    #[inline(always)]
    pub fn id(&self) -> u16 {
        u16::from_ne_bytes([self.h[4], self.h[5]])
    }

    /// To a multicast group or the limited broadcast (224.0.0.0 and above): the bridge's to
    /// carry, never routed.
    #[inline(always)]
    pub fn is_group(&self) -> bool {
        self.h[16] >= 224
    }

    /// To an address that can only be the node's own or on its links: loopback `127/8`,
    /// link-local `169.254/16` (the node-local DNS), "this network" `0/8`. A route lookup that
    /// finds no forwarding route for these found a local address, not a missing route.
    #[inline(always)]
    pub fn is_to_local_scope(&self) -> bool {
        matches!(self.h[16], 0 | 127) || (self.h[16] == 169 && self.h[17] == 254)
    }

    /// Don't Fragment set.
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.h[6] & 0x40 != 0
    }

    /// Part of a fragmented datagram (More Fragments set or a non-zero offset).
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.h[6], self.h[7]]) & 0x3fff != 0
    }

    /// A fragment other than the first: it carries no L4 header.
    #[inline(always)]
    pub fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes([self.h[6], self.h[7]]) & 0x1fff != 0
    }

    /// More Fragments set (the first or a middle fragment).
    #[inline(always)]
    pub fn more_fragments(&self) -> bool {
        self.h[6] & 0x20 != 0
    }

    /// A plain header: no options, not a fragment.
    #[inline(always)]
    pub fn is_simple(&self) -> bool {
        self.h[0] == 0x45 && !self.is_fragment()
    }
}
