//! Per-verdict counters: [`crate::maps::VERDICTS`] is a per-CPU array indexed by [`Verdict`].

use core::mem::size_of;

/// What a program did with a packet; the index into [`crate::maps::VERDICTS`].
///
/// Numbers are part of the ABI (append only; bump [`crate::LAYOUT_VERSION`] otherwise).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed to the host stack (pod → node, or traffic no later rule claims).
    PassHost = 0,
    /// Redirected into another pod on this node (`bpf_redirect_peer`).
    RedirectPod = 1,
    /// Source-NATed out of the uplink.
    NatOut = 2,
    /// Reverse-NATed into a pod.
    NatIn = 3,
    /// DNATed from a hostPort into a pod (arriving on the uplink, or hairpin from a pod).
    HostportIn = 4,
    /// Dropped: the pod claims what is not its own: another source MAC (any frame), another
    /// IPv4 source or ARP sender, an IPv6 source beyond `::`, link-local and its own IPv6 (ULA)
    /// address, or neighbour discovery claiming another address or MAC than its own.
    DropSpoof = 5,
    /// Dropped: destination inside a configured deny range.
    DropDeny = 6,
    /// Dropped: uplink traffic to a pod address that is neither NAT reply nor hostPort.
    DropNodelocal = 7,
    /// Dropped: truncated headers or bad IPv4 header length.
    DropMalformed = 8,
    /// Passed to the host stack (the bridge's job): ARP, IPv4 broadcast and multicast, and the
    /// link-local and multicast IPv6 a pod may send.
    PassL2 = 9,
    /// No longer produced (layout v3 and older: IPv4 with options or fragments handed to the
    /// host stack untranslated); kept so the numbers stay stable.
    PassUnparsed = 10,
    /// Dropped: SNAT needed but no free NAT port (all probes collided).
    DropNatPorts = 11,
    /// Dropped after SNAT: the FIB lookup found no route out.
    DropNoRoute = 12,
    /// An ICMP error about a NATed flow, translated and delivered into the pod.
    IcmpErrorIn = 13,
    /// Dropped by the backstop on the uplink's egress: an IPv4 packet with a pod-subnet source,
    /// or IPv6 forwarded from the pods, about to leave un-NATed. Never expected: a non-zero
    /// count means some path escaped translation.
    DropLeak = 14,
    /// Dropped: IPv6 from a pod without an IPv6 network (single-stack, or its IPv6 program
    /// not loaded) to anything but link-local or multicast destinations (the bridge still
    /// carries neighbour discovery).
    DropIpv6 = 15,
    /// Dropped: pod traffic to the outside that cannot be translated: an ICMP type a pod has no
    /// business sending (not a query, not an error), an ICMP error about no known flow, or an
    /// L4 header shorter than its protocol's.
    DropUnnatable = 16,
    /// A later fragment of a NATed flow's reply (no ports of its own), translated by the
    /// fragment map and delivered into the pod.
    FragIn = 17,
    /// Dropped by the RA guard: a router's message from a pod — an IPv6 router advertisement
    /// or redirect, a DHCPv6 server message (anything to UDP port 546), an IPv4 redirect or
    /// router advertisement — or IPv6 that could hide one (a fragment, more extension headers
    /// than the program walks).
    DropRaGuard = 18,
    /// Dropped: a frame of an ethertype pods have no use for (anything but IPv4, ARP and
    /// IPv6), or VLAN-tagged, whatever its MAC.
    DropEthertype = 19,
    /// Translated from IPv4 to IPv6 by the CLAT on the way out of an IPv6-only uplink (after
    /// its source NAT, counted as [`Verdict::NatOut`] by the pod's program).
    ClatOut = 20,
    /// Translated from IPv6 to IPv4 by the CLAT on the way in (then reverse-NATed and counted
    /// as such).
    ClatIn = 21,
    /// Dropped by the backstop on an external interface's egress: an IPv6 packet with a
    /// source in the pods' IPv6 (ULA) subnet, about to leave un-NATed. Never expected.
    DropLeak6 = 22,
}

impl Verdict {
    /// Every verdict, in index order.
    pub const ALL: [Verdict; 23] = [
        Verdict::PassHost,
        Verdict::RedirectPod,
        Verdict::NatOut,
        Verdict::NatIn,
        Verdict::HostportIn,
        Verdict::DropSpoof,
        Verdict::DropDeny,
        Verdict::DropNodelocal,
        Verdict::DropMalformed,
        Verdict::PassL2,
        Verdict::PassUnparsed,
        Verdict::DropNatPorts,
        Verdict::DropNoRoute,
        Verdict::IcmpErrorIn,
        Verdict::DropLeak,
        Verdict::DropIpv6,
        Verdict::DropUnnatable,
        Verdict::FragIn,
        Verdict::DropRaGuard,
        Verdict::DropEthertype,
        Verdict::ClatOut,
        Verdict::ClatIn,
        Verdict::DropLeak6,
    ];

    /// Whether the verdict drops the packet.
    #[must_use]
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Verdict::DropSpoof
                | Verdict::DropDeny
                | Verdict::DropMalformed
                | Verdict::DropNodelocal
                | Verdict::DropNatPorts
                | Verdict::DropNoRoute
                | Verdict::DropLeak
                | Verdict::DropIpv6
                | Verdict::DropUnnatable
                | Verdict::DropRaGuard
                | Verdict::DropEthertype
                | Verdict::DropLeak6
        )
    }

    /// The snake_case name operators see.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::PassHost => "pass_host",
            Verdict::RedirectPod => "redirect_pod",
            Verdict::NatOut => "nat_out",
            Verdict::NatIn => "nat_in",
            Verdict::HostportIn => "hostport_in",
            Verdict::DropSpoof => "drop_spoof",
            Verdict::DropDeny => "drop_deny",
            Verdict::DropNodelocal => "drop_nodelocal",
            Verdict::DropMalformed => "drop_malformed",
            Verdict::PassL2 => "pass_l2",
            Verdict::PassUnparsed => "pass_unparsed",
            Verdict::DropNatPorts => "drop_nat_ports",
            Verdict::DropNoRoute => "drop_no_route",
            Verdict::IcmpErrorIn => "icmp_error_in",
            Verdict::DropLeak => "drop_leak",
            Verdict::DropIpv6 => "drop_ipv6",
            Verdict::DropUnnatable => "drop_unnatable",
            Verdict::FragIn => "frag_in",
            Verdict::DropRaGuard => "drop_ra_guard",
            Verdict::DropEthertype => "drop_ethertype",
            Verdict::ClatOut => "clat_out",
            Verdict::ClatIn => "clat_in",
            Verdict::DropLeak6 => "drop_leak6",
        }
    }
}

/// Capacity of [`crate::maps::VERDICTS`]; room to append verdicts without a layout bump.
pub const VERDICTS_MAX: u32 = 32;

/// Value of [`crate::maps::VERDICTS`] (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictStats {
    /// Packets.
    pub packets: u64,
    /// Bytes (`skb->len`).
    pub bytes: u64,
}

/// Key of [`crate::maps::DENY`]: an LPM trie key (prefix length in bits, then the IPv4 address in
/// network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyKey {
    /// Prefix length, 0..=32.
    pub prefix_len: u32,
    /// IPv4 address, network byte order.
    pub addr: u32,
}

const _: () = {
    assert!(size_of::<VerdictStats>() == 16);
    assert!(size_of::<DenyKey>() == 8);
    assert!(Verdict::ALL.len() as u32 <= VERDICTS_MAX);
    let mut i = 0;
    while i < Verdict::ALL.len() {
        assert!(Verdict::ALL[i] as usize == i);
        i += 1;
    }
};
