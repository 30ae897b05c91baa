//! The IPv6 half of a dual-stack network: pods' ULA endpoints ([`crate::maps::ENDPOINTS6`]),
//! the node's IPv6 addresses ([`crate::maps::NODE_ADDRS6`]), each external interface's global
//! IPv6 address pods are masqueraded to ([`crate::maps::UPLINKS6`]), NAT66 conntrack
//! ([`crate::maps::CT6_OUT`], [`crate::maps::CT6_IN`]) and the programs the IPv4 ones tail-call
//! for IPv6 ([`crate::maps::TAILS`]).
//!
//! Addresses are the 16 bytes of the header field, as on the wire.

use core::mem::{offset_of, size_of};

/// [`crate::maps::TAILS`] slot of `smarter_pod6` (IPv6 from a pod), tail-called by
/// `smarter_pod`.
pub const TAIL_POD6: u32 = 0;
/// [`crate::maps::TAILS`] slot of `smarter_uplink6` (IPv6 arriving on an Ethernet external
/// interface), tail-called by `smarter_uplink`.
pub const TAIL_UPLINK6: u32 = 1;
/// [`crate::maps::TAILS`] slot of `smarter_nat66` (NAT66 of a pod's packet to the outside),
/// tail-called by `smarter_pod6`.
pub const TAIL_NAT66: u32 = 2;
/// [`crate::maps::TAILS`] slot of `smarter_icmp6in` (an ICMPv6 error about a NAT66 flow,
/// translated back into the pod), tail-called by `smarter_uplink6`.
pub const TAIL_ICMP6: u32 = 3;
/// [`crate::maps::TAILS`] slot of `smarter_local6` (the node's own IPv6 connections to a
/// hostPort on one of its addresses), tail-called by `smarter_local`.
pub const TAIL_LOCAL6: u32 = 4;
/// [`crate::maps::TAILS`] slot of `smarter_hp6` (a pod's TCP, UDP or fragment to another pod
/// or a node address: hostPorts, hairpin), tail-called by `smarter_pod6`.
pub const TAIL_HP6: u32 = 5;
/// Capacity of [`crate::maps::TAILS`] (slot 6 is the CLAT's, [`crate::clat::TAIL_POD_CLAT`];
/// room for later slots).
pub const TAILS_MAX: u32 = 8;

/// Key of [`crate::maps::ENDPOINTS6`]: a pod's IPv6 (ULA) address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint6Key {
    /// The address, as on the wire.
    pub addr: [u8; 16],
}

/// Value of [`crate::maps::HOSTPORTS6`] (key: a [`crate::HostPortKey`] with `host_ip` 0, a
/// hostPort without `hostIP`, which answers on every node IPv6 address too): the dual-stack pod
/// it leads to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPort6Value {
    /// The pod's IPv6 (ULA) address, as on the wire.
    pub addr: [u8; 16],
    /// The pod's IPv4 address (network byte order): the owner, as in [`crate::HostPortValue`].
    pub pod_ip: u32,
    /// Container port, network byte order.
    pub pod_port: u16,
    /// Explicit padding, must be 0.
    pub pad: u16,
}

/// Key of [`crate::maps::FRAG6`]: one fragmented IPv6 datagram, as (its source address, the
/// fragment header's identification, the protocol after the fragment header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    /// The source address, as on the wire.
    pub remote: [u8; 16],
    /// The fragment identification, as on the wire.
    pub id: u32,
    /// The next header the fragments carry.
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: [u8; 3],
}

/// Value of [`crate::maps::FRAG6`]: what the datagram's first fragment was translated to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frag6Value {
    /// `bpf_ktime_get_ns()` when the first fragment was seen.
    pub first_seen: u64,
    /// The address the first fragment's destination became (the pod it was delivered to) or,
    /// with [`crate::ct::FRAG_F_SRC`], its new source.
    pub addr: [u8; 16],
    /// `FRAG_F_*` flags ([`crate::ct::FRAG_F_SRC`]).
    pub flags: u32,
    /// Explicit padding, must be 0.
    pub pad: u32,
}

/// Value of [`crate::maps::UPLINKS6`] (key: the interface's ifindex): the global IPv6 address
/// pods' ULA sources are masqueraded to when the route lookup picks the interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uplink6Value {
    /// The address, as on the wire.
    pub addr: [u8; 16],
}

/// Key of both NAT66 conntrack maps: as [`crate::CtKey`] with IPv6 addresses.
///
/// - [`crate::maps::CT6_OUT`]: `a` = pod ULA, `a_port` = pod port (ICMPv6 echo: identifier),
///   `b` = remote, `b_port` = remote port (ICMPv6: 0).
/// - [`crate::maps::CT6_IN`]: `a` = remote, `a_port` = remote port (ICMPv6: 0), `b` = all
///   zero, `b_port` = NAT port (ICMPv6: the NAT identifier).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ct6Key {
    /// First address.
    pub a: [u8; 16],
    /// Second address.
    pub b: [u8; 16],
    /// First port, network byte order.
    pub a_port: u16,
    /// Second port, network byte order.
    pub b_port: u16,
    /// IP protocol (6, 17, 58).
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: [u8; 3],
}

impl Ct6Key {
    /// The [`crate::maps::CT6_OUT`] key of `pod:pod_port → remote:remote_port`.
    #[inline(always)]
    #[must_use]
    pub const fn pod_side(
        pod: [u8; 16],
        pod_port: u16,
        remote: [u8; 16],
        remote_port: u16,
        proto: u8,
    ) -> Self {
        Self {
            a: pod,
            b: remote,
            a_port: pod_port,
            b_port: remote_port,
            proto,
            pad: [0; 3],
        }
    }

    /// The [`crate::maps::CT6_IN`] key of replies `remote:remote_port → nat_port`.
    #[inline(always)]
    #[must_use]
    pub const fn wire_side(remote: [u8; 16], remote_port: u16, nat_port: u16, proto: u8) -> Self {
        Self::pod_side(remote, remote_port, [0; 16], nat_port, proto)
    }

    /// The wire-side key of the flow whose pod-side key is `self`, NATed to `nat_port`.
    #[inline(always)]
    #[must_use]
    pub const fn to_wire_side(self, nat_port: u16) -> Self {
        Self::wire_side(self.b, self.b_port, nat_port, self.proto)
    }

    /// The pod-side key of the flow whose wire-side key is `self`, leading to `pod:pod_port`.
    #[inline(always)]
    #[must_use]
    pub const fn to_pod_side(self, pod: [u8; 16], pod_port: u16) -> Self {
        Self::pod_side(pod, pod_port, self.a, self.a_port, self.proto)
    }
}

/// Value of both NAT66 conntrack maps. In `CT6_OUT`: `addr`/`port` = the NAT address and port;
/// in `CT6_IN`: the pod's address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct6Value {
    /// `bpf_ktime_get_ns()` of the last packet.
    pub last_seen: u64,
    /// See the type's documentation.
    pub addr: [u8; 16],
    /// See the type's documentation (network byte order).
    pub port: u16,
    /// `CT_*` TCP state ([`crate::ct::CT_NEW`] for UDP and ICMPv6), as IPv4's.
    pub state: u8,
    /// Explicit padding, must be 0.
    pub pad: [u8; 5],
}

impl Ct6Value {
    /// An entry last seen at `last_seen` mapping to `addr`/`port` in state `state`.
    #[inline(always)]
    #[must_use]
    pub const fn new(last_seen: u64, addr: [u8; 16], port: u16, state: u8) -> Self {
        Self {
            last_seen,
            addr,
            port,
            state,
            pad: [0; 5],
        }
    }
}

/// Value of [`crate::maps::NAT66_SCRATCH`] (per CPU, one slot): NAT66's work space (its keys,
/// values and route lookup do not fit the 512-byte BPF stack beside the packet's headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nat66Scratch {
    /// The pod-side conntrack key of the flow being translated.
    pub out_key: Ct6Key,
    /// The wire-side key being probed.
    pub in_key: Ct6Key,
    /// The wire-side value being written.
    pub reply: Ct6Value,
    /// The pod-side value being written.
    pub out: Ct6Value,
    /// The kernel's `struct bpf_fib_lookup` (64 bytes).
    pub fib: [u64; 8],
    /// The packet's source address.
    pub src: [u8; 16],
    /// The packet's destination address.
    pub dst: [u8; 16],
    /// The address it is translated to.
    pub nat: [u8; 16],
}

/// Whether `addr` lies in `net`/`prefix_len` (both as on the wire).
#[inline(always)]
#[must_use]
pub fn in_prefix6(addr: &[u8; 16], net: &[u8; 16], prefix_len: u8) -> bool {
    let (a_hi, a_lo) = halves(addr);
    let (n_hi, n_lo) = halves(net);
    let (m_hi, m_lo) = match prefix_len {
        0 => (0, 0),
        p if p < 64 => (u64::MAX << (64 - u32::from(p)), 0),
        64 => (u64::MAX, 0),
        p if p < 128 => (u64::MAX, u64::MAX << (128 - u32::from(p))),
        _ => (u64::MAX, u64::MAX),
    };
    (a_hi ^ n_hi) & m_hi == 0 && (a_lo ^ n_lo) & m_lo == 0
}

/// The address as two big-endian words.
#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

const _: () = {
    assert!(size_of::<Endpoint6Key>() == 16);
    assert!(size_of::<Uplink6Value>() == 16);
    assert!(size_of::<Ct6Key>() == 40);
    assert!(size_of::<HostPort6Value>() == 24);
    assert!(size_of::<Frag6Key>() == 24);
    assert!(size_of::<Frag6Value>() == 32);
    assert!(offset_of!(Ct6Key, a_port) == 32);
    assert!(offset_of!(Ct6Key, proto) == 36);
    assert!(size_of::<Ct6Value>() == 32);
    assert!(size_of::<Nat66Scratch>() == 256);
    assert!(offset_of!(Ct6Value, addr) == 8);
    assert!(offset_of!(Ct6Value, port) == 24);
};

#[cfg(test)]
mod tests {
    use super::*;

    const NET: [u8; 16] = [0xfd, 0, 0xac, 0x27, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn prefix_membership() {
        let mut a = NET;
        a[15] = 7;
        assert!(in_prefix6(&a, &NET, 64));
        a[7] = 1;
        assert!(!in_prefix6(&a, &NET, 64));
        assert!(in_prefix6(&a, &NET, 48));
        assert!(in_prefix6(&a, &NET, 0));
        assert!(!in_prefix6(&a, &NET, 128));
        assert!(in_prefix6(&NET, &NET, 128));
        a[15] = 0;
        a[7] = 0;
        a[14] = 0x80;
        assert!(!in_prefix6(&a, &NET, 113));
        assert!(in_prefix6(&a, &NET, 112));
    }

    #[test]
    fn ct_keys_mirror() {
        let pod = [0xfd; 16];
        let remote = [0x20; 16];
        let out = Ct6Key::pod_side(pod, 1000, remote, 53, 17);
        let wire = out.to_wire_side(2000);
        assert_eq!(wire, Ct6Key::wire_side(remote, 53, 2000, 17));
        assert_eq!(wire.b, [0; 16]);
        assert_eq!(wire.to_pod_side(pod, 1000), out);
    }
}
