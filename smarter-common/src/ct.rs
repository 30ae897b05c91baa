//! Conntrack of the SNAT datapath: [`crate::maps::CT_OUT`] (pod side) and
//! [`crate::maps::CT_IN`] (wire side, the reverse map). Both LRU hashes of [`CtKey`] → [`CtValue`].

use core::mem::{offset_of, size_of};

/// Key of both conntrack maps. Addresses and ports in network byte order.
///
/// - [`crate::maps::CT_OUT`]: `a` = pod IP, `a_port` = pod port (ICMP echo: identifier),
///   `b` = remote IP, `b_port` = remote port (ICMP: 0).
/// - [`crate::maps::CT_IN`]: `a` = remote IP, `a_port` = remote port (ICMP: 0), `b` = 0,
///   `b_port` = NAT port (ICMP: the NAT identifier).
/// - Protocols without ports (GRE, ESP, SCTP, any other number) are NATed by address alone: both
///   ports are 0, so there is one mapping per (protocol, pod, remote).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// First address.
    pub a: u32,
    /// Second address.
    pub b: u32,
    /// First port.
    pub a_port: u16,
    /// Second port.
    pub b_port: u16,
    /// IP protocol (6, 17, 1).
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: [u8; 3],
}

/// Value of both conntrack maps.
///
/// In `CT_OUT`: `addr`/`port` = the NAT address and port used. In `CT_IN`: `addr`/`port` = the
/// pod's address and port, `remote` = unused (0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet.
    pub last_seen: u64,
    /// See the type's documentation.
    pub addr: u32,
    /// See the type's documentation (network byte order).
    pub port: u16,
    /// `CT_*` TCP state ([`CT_NEW`] for UDP and ICMP).
    pub state: u8,
    /// Explicit padding, must be 0.
    pub pad: u8,
}

/// Seen in one direction only (UDP, ICMP, or TCP before the SYN-ACK).
pub const CT_NEW: u8 = 0;
/// TCP: SYN seen.
pub const CT_SYN: u8 = 1;
/// TCP: a packet came back (established).
pub const CT_ESTABLISHED: u8 = 2;
/// TCP: FIN seen.
pub const CT_CLOSING: u8 = 3;
/// TCP: RST seen (the flow is over; its NAT port can go to a new flow at once).
pub const CT_RESET: u8 = 4;

/// Capacity of the conntrack maps (LRU: the oldest entries are evicted when full).
pub const CT_MAX: u32 = 16384;

/// Default NAT source port range (inclusive), Linux's `ip_local_port_range` default would
/// collide with the node's own sockets less if it were disjoint: 61000..=65535 is used.
pub const NAT_PORT_MIN: u16 = 61000;
/// See [`NAT_PORT_MIN`].
pub const NAT_PORT_MAX: u16 = 65535;

/// Key of [`crate::maps::HOSTPORTS`]: a port on the uplink address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostPortKey {
    /// Host port, network byte order.
    pub port: u16,
    /// IP protocol: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: u8,
}

/// Value of [`crate::maps::HOSTPORTS`]: where the port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPortValue {
    /// Pod IPv4 address, network byte order.
    pub pod_ip: u32,
    /// Container port, network byte order.
    pub pod_port: u16,
    /// Explicit padding, must be 0.
    pub pad: u16,
}

/// Key of [`crate::maps::FRAG`]: one fragmented datagram arriving on the uplink for the NAT
/// address, as (remote address, IP id, protocol). Addresses and the id in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// The remote (source) address.
    pub remote: u32,
    /// The IPv4 identification field.
    pub id: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: u8,
}

/// Value of [`crate::maps::FRAG`]: where the datagram's first fragment was translated to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    /// `bpf_ktime_get_ns()` when the first fragment was seen.
    pub first_seen: u64,
    /// The pod address the first fragment was delivered to, network byte order.
    pub pod_ip: u32,
    /// Explicit padding, must be 0.
    pub pad: u32,
}

/// Capacity of [`crate::maps::FRAG`] (LRU: datagrams in reassembly at once).
pub const FRAG_MAX: u32 = 4096;

/// Capacity of [`crate::maps::HOSTPORTS`].
pub const HOSTPORTS_MAX: u32 = 1024;

const _: () = {
    assert!(size_of::<FragKey>() == 8);
    assert!(size_of::<FragValue>() == 16);
    assert!(size_of::<HostPortKey>() == 4);
    assert!(size_of::<HostPortValue>() == 8);
    assert!(size_of::<CtKey>() == 16);
    assert!(offset_of!(CtKey, a_port) == 8);
    assert!(offset_of!(CtKey, proto) == 12);
    assert!(size_of::<CtValue>() == 16);
    assert!(offset_of!(CtValue, addr) == 8);
    assert!(offset_of!(CtValue, port) == 12);
    assert!(offset_of!(CtValue, state) == 14);
};
