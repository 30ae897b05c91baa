//! The per-network configuration record, [`crate::maps::CONFIG`] index
//! [`crate::maps::CONFIG_INDEX`].

use core::mem::{offset_of, size_of};

/// [`NetConfig::flags`]: emit an event for every packet, not only drops (`smarter-bpfctl
/// monitor --trace`).
pub const CFG_F_TRACE: u32 = 1;

/// Configuration of one CNI network, written by user space, read by the datapath.
///
/// Addresses are IPv4 in network byte order (`u32::from_ne_bytes(octets)`). The `reserved` words
/// let later issues add fields without a [`crate::LAYOUT_VERSION`] bump, provided 0 keeps meaning
/// "unset"; writers must preserve fields they do not own (read-modify-write).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// Pod gateway address (the bridge address), e.g. 172.39.0.1.
    pub gateway: u32,
    /// Pod subnet network address, e.g. 172.39.0.0.
    pub subnet: u32,
    /// Pod subnet prefix length, e.g. 16.
    pub prefix_len: u8,
    /// Explicit padding, must be 0.
    pub pad0: [u8; 3],
    /// `CFG_F_*` flags ([`CFG_F_TRACE`]); others must be 0.
    pub flags: u32,
    /// Uplink ifindex for masquerade (owned by the node agent; 0 = unknown).
    pub uplink_ifindex: u32,
    /// Uplink's current IPv4 address for masquerade (owned by the node agent; 0 = unknown).
    pub uplink_addr: u32,
    /// First NAT source port, host byte order (0 = [`crate::ct::NAT_PORT_MIN`]).
    pub nat_port_min: u16,
    /// Last NAT source port, host byte order (0 = [`crate::ct::NAT_PORT_MAX`]).
    pub nat_port_max: u16,
    /// Idle timeouts in seconds after which the kernel treats a flow as new (0 = never; user
    /// space garbage-collects anyway): TCP established, TCP other, UDP, ICMP.
    pub ct_timeout_s: [u32; 4],
    /// The bridge's ifindex (0 = unknown).
    pub bridge_ifindex: u32,
    /// The bridge's MAC: the source MAC of packets delivered into pods (all zero = unknown).
    pub bridge_mac: [u8; 6],
    /// Explicit padding, must be 0.
    pub pad1: [u8; 2],
    /// The IPv6-only uplink pods' IPv4 is translated out of when the node has no IPv4 route
    /// for it (the CLAT, [`crate::clat`]; its [`crate::maps::CLAT`] entry), 0: none.
    pub clat_ifindex: u32,
    /// Reserved for growth, must be 0.
    pub reserved: [u32; 1],
    /// The pods' IPv6 (ULA) subnet's network address, as on the wire (all zero with
    /// [`Self::prefix6_len`] 0: the network has no IPv6).
    pub subnet6: [u8; 16],
    /// The bridge's IPv6 address, the pods' IPv6 gateway (all zero: none).
    pub gateway6: [u8; 16],
    /// The IPv6 subnet's prefix length; 0: the network has no IPv6.
    pub prefix6_len: u8,
    /// Explicit padding, must be 0.
    pub pad2: [u8; 3],
    /// Reserved for growth, must be 0.
    pub reserved6: [u32; 1],
}

impl NetConfig {
    /// The subnet mask for [`Self::prefix_len`], network byte order (0 for prefix 0).
    #[must_use]
    pub const fn subnet_mask(&self) -> u32 {
        let host_order = match self.prefix_len {
            0 => 0,
            p if p >= 32 => u32::MAX,
            p => u32::MAX << (32 - p as u32),
        };
        host_order.to_be()
    }

    /// The NAT port range in effect, host byte order (defaults when unset or inverted).
    #[must_use]
    pub const fn nat_ports(&self) -> (u16, u16) {
        if self.nat_port_min == 0 || self.nat_port_max < self.nat_port_min {
            (crate::ct::NAT_PORT_MIN, crate::ct::NAT_PORT_MAX)
        } else {
            (self.nat_port_min, self.nat_port_max)
        }
    }

    /// Whether the network is dual-stack (has an IPv6 subnet).
    #[must_use]
    pub const fn has_v6(&self) -> bool {
        self.prefix6_len != 0
    }

    /// Whether `addr` is inside the pods' IPv6 subnet (never, without one).
    #[inline(always)]
    #[must_use]
    pub fn in_subnet6(&self, addr: &[u8; 16]) -> bool {
        self.has_v6() && crate::v6::in_prefix6(addr, &self.subnet6, self.prefix6_len)
    }

    /// Whether `addr` (network byte order) is inside the pod subnet.
    #[must_use]
    pub const fn in_subnet(&self, addr: u32) -> bool {
        addr & self.subnet_mask() == self.subnet & self.subnet_mask()
    }
}

const _: () = {
    assert!(size_of::<NetConfig>() == 104);
    assert!(offset_of!(NetConfig, subnet6) == 64);
    assert!(offset_of!(NetConfig, gateway6) == 80);
    assert!(offset_of!(NetConfig, prefix6_len) == 96);
    assert!(offset_of!(NetConfig, prefix_len) == 8);
    assert!(offset_of!(NetConfig, flags) == 12);
    assert!(offset_of!(NetConfig, uplink_ifindex) == 16);
    assert!(offset_of!(NetConfig, uplink_addr) == 20);
    assert!(offset_of!(NetConfig, nat_port_min) == 24);
    assert!(offset_of!(NetConfig, nat_port_max) == 26);
    assert!(offset_of!(NetConfig, ct_timeout_s) == 28);
    assert!(offset_of!(NetConfig, bridge_ifindex) == 44);
    assert!(offset_of!(NetConfig, bridge_mac) == 48);
    assert!(offset_of!(NetConfig, clat_ifindex) == 56);
    assert!(offset_of!(NetConfig, reserved) == 60);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(o: [u8; 4]) -> u32 {
        u32::from_ne_bytes(o)
    }

    #[test]
    fn subnet_membership() {
        let cfg = NetConfig {
            gateway: addr([172, 39, 0, 1]),
            subnet: addr([172, 39, 0, 0]),
            prefix_len: 16,
            ..NetConfig::default()
        };
        assert_eq!(cfg.subnet_mask().to_ne_bytes(), [255, 255, 0, 0]);
        assert!(cfg.in_subnet(addr([172, 39, 200, 7])));
        assert!(!cfg.in_subnet(addr([172, 40, 0, 1])));
        let all = NetConfig {
            prefix_len: 0,
            ..cfg
        };
        assert!(all.in_subnet(addr([8, 8, 8, 8])));
        let host = NetConfig {
            prefix_len: 32,
            subnet: cfg.gateway,
            ..cfg
        };
        assert!(host.in_subnet(cfg.gateway) && !host.in_subnet(addr([172, 39, 0, 2])));
    }
}
