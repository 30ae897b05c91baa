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

/// The key rule, once for the kernel and user space: every conntrack key is built here, with the
/// padding zeroed (a key with other padding bytes is another key to the kernel's hash).
///
/// A flow pod:pod_port → remote:remote_port NATed to the uplink's nat_port has two entries:
/// [`CtKey::pod_side`] in [`crate::maps::CT_OUT`] (its value holds the NAT address and port) and
/// [`CtKey::wire_side`] in [`crate::maps::CT_IN`] (its value holds the pod's address and port).
/// Each side's key follows from the other's key and value ([`CtKey::to_wire_side`],
/// [`CtKey::to_pod_side`]). A hostPort flow is the same seen from the other end: the client is
/// the remote and the hostPort the NAT port.
impl CtKey {
    /// A key of these fields, padding zeroed. Prefer the named builders below.
    #[inline(always)]
    #[must_use]
    pub const fn new(a: u32, a_port: u16, b: u32, b_port: u16, proto: u8) -> Self {
        Self {
            a,
            b,
            a_port,
            b_port,
            proto,
            pad: [0; 3],
        }
    }

    /// The [`crate::maps::CT_OUT`] key of a flow as its packets leave the pod:
    /// `pod:pod_port → remote:remote_port` (ICMP queries: `pod_port` = the pod's identifier,
    /// `remote_port` = 0; protocols without ports: both 0). Network byte order.
    #[inline(always)]
    #[must_use]
    pub const fn pod_side(
        pod: u32,
        pod_port: u16,
        remote: u32,
        remote_port: u16,
        proto: u8,
    ) -> Self {
        Self::new(pod, pod_port, remote, remote_port, proto)
    }

    /// The [`crate::maps::CT_IN`] key of a flow as its replies reach the NAT address:
    /// `remote:remote_port → nat_port` (the NAT address is not part of it: `b` = 0; ICMP:
    /// `remote_port` = 0, `nat_port` = the NAT identifier; protocols without ports: both 0).
    /// Network byte order. It is also the key a packet from the wire looks up with its source
    /// address and port and its destination port.
    #[inline(always)]
    #[must_use]
    pub const fn wire_side(remote: u32, remote_port: u16, nat_port: u16, proto: u8) -> Self {
        Self::new(remote, remote_port, 0, nat_port, proto)
    }

    /// The [`CtKey::wire_side`] key of the flow whose [`CtKey::pod_side`] key is `self`, NATed
    /// to `nat_port` (the `port` of its [`CtValue`] in `CT_OUT`).
    #[inline(always)]
    #[must_use]
    pub const fn to_wire_side(self, nat_port: u16) -> Self {
        Self::wire_side(self.b, self.b_port, nat_port, self.proto)
    }

    /// The [`CtKey::pod_side`] key of the flow whose [`CtKey::wire_side`] key is `self`, leading
    /// to `pod:pod_port` (the `addr` and `port` of its [`CtValue`] in `CT_IN`).
    #[inline(always)]
    #[must_use]
    pub const fn to_pod_side(self, pod: u32, pod_port: u16) -> Self {
        Self::pod_side(pod, pod_port, self.a, self.a_port, self.proto)
    }
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

impl CtValue {
    /// An entry last seen at `last_seen` (ns) mapping to `addr`/`port` (network byte order) in
    /// TCP state `state`, its padding zeroed.
    #[must_use]
    pub const fn new(last_seen: u64, addr: u32, port: u16, state: u8) -> Self {
        Self {
            last_seen,
            addr,
            port,
            state,
            pad: 0,
        }
    }
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

/// Key of [`crate::maps::HOSTPORTS`]: a port on one node address (`hostIP`) or on all of them
/// (`host_ip` 0). The datapath looks a flow up by its destination address first, then by 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostPortKey {
    /// Host port, network byte order.
    pub port: u16,
    /// IP protocol: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: u8,
    /// The node address the port is bound to (`hostIP`), network byte order; 0: every node
    /// address.
    pub host_ip: u32,
}

impl HostPortKey {
    /// Whether two mappings of the same port and protocol would answer the same flows: one of
    /// them is on every address, or both are on the same one (the scheduler's rule).
    #[must_use]
    pub const fn overlaps(&self, other: &Self) -> bool {
        self.port == other.port
            && self.proto == other.proto
            && (self.host_ip == 0 || other.host_ip == 0 || self.host_ip == other.host_ip)
    }
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

/// Key of [`crate::maps::FRAG`]: one fragmented datagram, as (its source address, IP id,
/// protocol): a remote's reply arriving for a node address, or a pod's datagram of a hostPort
/// flow on the node. Addresses and the id in network byte order.
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

/// [`FragValue::flags`]: the first fragment's source was translated (a hostPort flow's reply
/// leaving its pod as `node address:hostPort`); without it, its destination (into a pod).
pub const FRAG_F_SRC: u32 = 1;

/// Value of [`crate::maps::FRAG`]: what the datagram's first fragment was translated to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    /// `bpf_ktime_get_ns()` when the first fragment was seen.
    pub first_seen: u64,
    /// The address the first fragment was translated to, network byte order: the pod it was
    /// delivered to, or (with [`FRAG_F_SRC`]) its new source.
    pub pod_ip: u32,
    /// `FRAG_F_*` flags.
    pub flags: u32,
}

/// Capacity of [`crate::maps::FRAG`] (LRU: datagrams in reassembly at once).
pub const FRAG_MAX: u32 = 4096;

/// Capacity of [`crate::maps::HOSTPORTS`].
pub const HOSTPORTS_MAX: u32 = 1024;

const _: () = {
    assert!(size_of::<FragKey>() == 8);
    assert!(size_of::<FragValue>() == 16);
    assert!(size_of::<HostPortKey>() == 8);
    assert!(size_of::<HostPortValue>() == 8);
    assert!(size_of::<CtKey>() == 16);
    assert!(offset_of!(CtKey, a_port) == 8);
    assert!(offset_of!(CtKey, proto) == 12);
    assert!(size_of::<CtValue>() == 16);
    assert!(offset_of!(CtValue, addr) == 8);
    assert!(offset_of!(CtValue, port) == 12);
    assert!(offset_of!(CtValue, state) == 14);
};

/// IP protocol numbers the datapaths name.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 (NAT66 echo flows).
    pub const ICMPV6: u8 = 58;

    /// `tcp`, `udp`, `icmp`, `icmpv6`, or `None` for any other protocol (callers choose how
    /// to show it).
    #[must_use]
    pub const fn name(p: u8) -> Option<&'static str> {
        match p {
            ICMP => Some("icmp"),
            ICMPV6 => Some("icmpv6"),
            TCP => Some("tcp"),
            UDP => Some("udp"),
            _ => None,
        }
    }
}

/// Idle timeout of a reset TCP flow, seconds (capped by the configured TCP timeout).
pub const RESET_TIMEOUT_S: u32 = 10;

/// Idle timeouts of conntrack entries (`ctTimeouts` of the configuration), in seconds; the
/// config map stores them as [`CtTimeouts::slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtTimeouts {
    /// TCP after a reply was seen and before FIN/RST.
    pub tcp_established: u32,
    /// TCP otherwise (SYN sent, closing).
    pub tcp_other: u32,
    /// UDP.
    pub udp: u32,
    /// ICMP and protocols without ports.
    pub icmp: u32,
}

impl CtTimeouts {
    /// 30 min, 2 min, 60 s, 30 s: edge gateways carry few, long-lived flows.
    pub const DEFAULT: Self = Self {
        tcp_established: 1800,
        tcp_other: 120,
        udp: 60,
        icmp: 30,
    };

    /// As stored in `NetConfig::ct_timeout_s`.
    #[must_use]
    pub const fn slots(&self) -> [u32; 4] {
        [self.tcp_established, self.tcp_other, self.udp, self.icmp]
    }
}

impl Default for CtTimeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The idle timeout, in seconds, of an entry of `proto` in TCP state `state`, from the four
/// configured slots ([`CtTimeouts::slots`]). The one expiry rule: the kernel applies it on
/// lookup, the node agent's garbage collection on its sweep.
#[inline(always)]
#[must_use]
pub const fn timeout_s(slots: &[u32; 4], proto: u8, state: u8) -> u32 {
    match (proto, state) {
        (proto::TCP, CT_ESTABLISHED) => slots[0],
        // Reset flows linger only for stragglers (as Linux's CLOSE state).
        (proto::TCP, CT_RESET) => {
            if slots[1] < RESET_TIMEOUT_S {
                slots[1]
            } else {
                RESET_TIMEOUT_S
            }
        }
        (proto::TCP, _) => slots[1],
        (proto::UDP, _) => slots[2],
        _ => slots[3],
    }
}

/// Whether an entry of `proto` in `state`, last seen at `last_seen` (ns, CLOCK_MONOTONIC), has
/// expired at `now`. A timeout of 0 is "not configured yet" (a fresh config map): never.
#[inline(always)]
#[must_use]
pub const fn expired(slots: &[u32; 4], proto: u8, state: u8, last_seen: u64, now: u64) -> bool {
    let secs = timeout_s(slots, proto, state);
    secs != 0 && now.saturating_sub(last_seen) > secs as u64 * 1_000_000_000
}

/// The TCP state after a packet with `flags` (FIN 0x01, SYN 0x02, RST 0x04); `reply` is the
/// direction from the remote end. Other protocols are [`CT_ESTABLISHED`] once a reply is seen.
#[inline(always)]
#[must_use]
pub const fn next_state(state: u8, proto: u8, flags: u8, reply: bool) -> u8 {
    if proto != proto::TCP {
        return if reply { CT_ESTABLISHED } else { state };
    }
    if flags & 0x04 != 0 {
        CT_RESET
    } else if state == CT_RESET && flags & 0x02 != 0 {
        // A new connection reusing the tuple.
        CT_SYN
    } else if flags & 0x01 != 0 {
        CT_CLOSING
    } else if reply && state == CT_SYN {
        CT_ESTABLISHED
    } else if flags & 0x02 != 0 && state == CT_NEW {
        CT_SYN
    } else {
        state
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn expiry_by_protocol_and_state() {
        let s = CtTimeouts::DEFAULT.slots();
        let sec = 1_000_000_000u64;
        assert_eq!(timeout_s(&s, proto::TCP, CT_ESTABLISHED), 1800);
        assert_eq!(timeout_s(&s, proto::TCP, CT_SYN), 120);
        assert_eq!(timeout_s(&s, proto::TCP, CT_RESET), RESET_TIMEOUT_S);
        assert_eq!(timeout_s(&[9, 5, 0, 0], proto::TCP, CT_RESET), 5);
        assert_eq!(timeout_s(&s, proto::UDP, CT_NEW), 60);
        assert_eq!(timeout_s(&s, proto::ICMP, CT_NEW), 30);
        assert_eq!(timeout_s(&s, 47, CT_NEW), 30, "GRE as ICMP");
        assert!(!expired(&s, proto::UDP, CT_NEW, 0, 60 * sec));
        assert!(expired(&s, proto::UDP, CT_NEW, 0, 60 * sec + 1));
        assert!(
            !expired(&[0; 4], proto::UDP, CT_NEW, 0, u64::MAX),
            "unset never expires"
        );
    }

    #[test]
    fn tcp_transitions() {
        assert_eq!(next_state(CT_NEW, proto::TCP, 0x02, false), CT_SYN);
        assert_eq!(next_state(CT_SYN, proto::TCP, 0x12, true), CT_ESTABLISHED);
        assert_eq!(
            next_state(CT_ESTABLISHED, proto::TCP, 0x11, false),
            CT_CLOSING
        );
        assert_eq!(next_state(CT_ESTABLISHED, proto::TCP, 0x04, true), CT_RESET);
        assert_eq!(next_state(CT_RESET, proto::TCP, 0x02, false), CT_SYN);
        assert_eq!(next_state(CT_NEW, proto::UDP, 0, true), CT_ESTABLISHED);
        assert_eq!(next_state(CT_NEW, proto::UDP, 0, false), CT_NEW);
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    /// The key's bytes as the kernel hashes them.
    fn bytes(k: CtKey) -> [u8; 16] {
        // SAFETY: `CtKey` is `repr(C)`, 16 bytes (asserted above) of integers and an explicit
        // padding array: no implicit padding, every byte initialized.
        unsafe { core::mem::transmute::<CtKey, [u8; 16]>(k) }
    }

    const POD: u32 = u32::from_ne_bytes([172, 39, 0, 3]);
    const REMOTE: u32 = u32::from_ne_bytes([198, 51, 100, 7]);

    #[test]
    fn layout_is_pinned_and_padding_zero() {
        let k = CtKey::new(0x0102_0304, 0x0506, 0x0708_090a, 0x0b0c, 17);
        let mut want = [0u8; 16];
        want[0..4].copy_from_slice(&0x0102_0304u32.to_ne_bytes());
        want[4..8].copy_from_slice(&0x0708_090au32.to_ne_bytes());
        want[8..10].copy_from_slice(&0x0506u16.to_ne_bytes());
        want[10..12].copy_from_slice(&0x0b0cu16.to_ne_bytes());
        want[12] = 17;
        assert_eq!(bytes(k), want, "a, b, a_port, b_port, proto, 3 zero bytes");
        assert_eq!(offset_of!(CtKey, b), 4);
        assert_eq!(offset_of!(CtKey, b_port), 10);
        assert_eq!(offset_of!(CtKey, pad), 13);
    }

    #[test]
    fn pod_side_and_wire_side_name_their_fields() {
        let (pp, rp, np) = (40000u16.to_be(), 53u16.to_be(), 61000u16.to_be());
        let out = CtKey::pod_side(POD, pp, REMOTE, rp, proto::UDP);
        assert_eq!(
            (out.a, out.a_port, out.b, out.b_port),
            (POD, pp, REMOTE, rp)
        );
        assert_eq!(out.proto, proto::UDP);
        let inn = CtKey::wire_side(REMOTE, rp, np, proto::UDP);
        assert_eq!((inn.a, inn.a_port, inn.b, inn.b_port), (REMOTE, rp, 0, np));
        assert_eq!(bytes(inn)[13..], [0; 3]);
        // ICMP: the remote side has no port; portless protocols: neither has.
        let echo = CtKey::pod_side(POD, 7u16.to_be(), REMOTE, 0, proto::ICMP);
        assert_eq!(
            echo.to_wire_side(np),
            CtKey::wire_side(REMOTE, 0, np, proto::ICMP)
        );
        let gre = CtKey::pod_side(POD, 0, REMOTE, 0, 47);
        assert_eq!(gre.to_wire_side(0), CtKey::new(REMOTE, 0, 0, 0, 47));
    }

    #[test]
    fn each_side_follows_from_the_other() {
        let (pp, rp, np) = (40000u16.to_be(), 443u16.to_be(), 61234u16.to_be());
        let out = CtKey::pod_side(POD, pp, REMOTE, rp, proto::TCP);
        let inn = out.to_wire_side(np);
        // What a reply remote:rp → uplink:np looks up.
        assert_eq!(inn, CtKey::wire_side(REMOTE, rp, np, proto::TCP));
        assert_eq!(inn.to_pod_side(POD, pp), out, "and back to the pod side");
        assert_eq!(inn.to_pod_side(POD, pp).to_wire_side(np), inn);
        // A hostPort flow from client:cp to hostPort hp, led to POD:pp.
        let (client, cp, hp) = (REMOTE, 50000u16.to_be(), 8080u16.to_be());
        let hin = CtKey::wire_side(client, cp, hp, proto::TCP);
        let hout = hin.to_pod_side(POD, pp);
        assert_eq!(hout, CtKey::pod_side(POD, pp, client, cp, proto::TCP));
        assert_eq!(hout.to_wire_side(hp), hin);
    }
}
