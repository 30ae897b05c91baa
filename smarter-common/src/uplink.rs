//! The node's external side as the datapath sees it: every interface pod traffic may leave by
//! ([`crate::maps::UPLINKS`]), every address of the node ([`crate::maps::NODE_ADDRS`]) and what
//! each pod sent and received through each of them ([`crate::maps::IF_STATS`]).

use core::mem::size_of;

/// [`UplinkValue::flags`]: the device carries no Ethernet header (raw-IP modems, PPP, tun,
/// WireGuard): `smarter_l3_in`/`smarter_l3_out` run on it, and packets leave it without one.
pub const UPLINK_F_L3: u32 = 1;

/// [`UplinkValue::flags`]: not selected by `uplink`: pods may not start flows out of it; only
/// replies of flows that came in by it (a hostPort on its address) leave by it.
pub const UPLINK_F_NO_EGRESS: u32 = 2;

/// [`UplinkValue::flags`]: an IPv6-only uplink: pods' IPv4 leaves it translated to IPv6 (the
/// CLAT, [`crate::clat`]; [`UplinkValue::addr`] is [`crate::clat::CLAT_V4`]).
pub const UPLINK_F_CLAT: u32 = 4;

/// Value of [`crate::maps::UPLINKS`] (key: the interface's ifindex): an external interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkValue {
    /// The address pods are masqueraded to when the route lookup picks this interface,
    /// network byte order; 0: none (pods cannot leave by it: dropped, never forwarded).
    pub addr: u32,
    /// `UPLINK_F_*` flags ([`UPLINK_F_L3`], [`UPLINK_F_NO_EGRESS`]).
    pub flags: u32,
    /// The interface's MTU (informational; the route lookup checks the real one).
    pub mtu: u32,
    /// Explicit padding, must be 0.
    pub pad: u32,
}

impl UplinkValue {
    /// Whether the device is layer 3 (no Ethernet header).
    #[must_use]
    pub const fn is_l3(&self) -> bool {
        self.flags & UPLINK_F_L3 != 0
    }

    /// Whether pods' IPv4 leaves it translated to IPv6 (the CLAT).
    #[must_use]
    pub const fn is_clat(&self) -> bool {
        self.flags & UPLINK_F_CLAT != 0
    }

    /// Whether pods may start flows out of it.
    #[must_use]
    pub const fn is_egress(&self) -> bool {
        self.flags & UPLINK_F_NO_EGRESS == 0
    }
}

/// [`IfStatsKey::dir`]: sent by the pod, out of the interface.
pub const DIR_OUT: u32 = 0;
/// [`IfStatsKey::dir`]: received by the pod, in through the interface.
pub const DIR_IN: u32 = 1;

/// Key of [`crate::maps::IF_STATS`]: one pod's traffic through one external interface in one
/// direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfStatsKey {
    /// The pod's IPv4 address, network byte order.
    pub pod: u32,
    /// The external interface's ifindex.
    pub ifindex: u32,
    /// [`DIR_OUT`] or [`DIR_IN`].
    pub dir: u32,
}

const _: () = {
    assert!(size_of::<UplinkValue>() == 16);
    assert!(size_of::<IfStatsKey>() == 12);
};
