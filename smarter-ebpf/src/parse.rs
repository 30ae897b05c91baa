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
