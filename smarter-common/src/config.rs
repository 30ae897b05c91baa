//! The per-network configuration record, [`crate::maps::CONFIG`] index
//! [`crate::maps::CONFIG_INDEX`].

use core::mem::{offset_of, size_of};

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
    /// `CFG_F_*` flags; none are defined yet, must be 0.
    pub flags: u32,
    /// Uplink ifindex for masquerade (owned by the node agent; 0 = unknown).
    pub uplink_ifindex: u32,
    /// Uplink's current IPv4 address for masquerade (owned by the node agent; 0 = unknown).
    pub uplink_addr: u32,
    /// Reserved for growth, must be 0.
    pub reserved: [u32; 10],
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

    /// Whether `addr` (network byte order) is inside the pod subnet.
    #[must_use]
    pub const fn in_subnet(&self, addr: u32) -> bool {
        addr & self.subnet_mask() == self.subnet & self.subnet_mask()
    }
}

const _: () = {
    assert!(size_of::<NetConfig>() == 64);
    assert!(offset_of!(NetConfig, prefix_len) == 8);
    assert!(offset_of!(NetConfig, flags) == 12);
    assert!(offset_of!(NetConfig, uplink_ifindex) == 16);
    assert!(offset_of!(NetConfig, uplink_addr) == 20);
    assert!(offset_of!(NetConfig, reserved) == 24);
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
