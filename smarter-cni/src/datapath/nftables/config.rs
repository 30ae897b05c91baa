//! [`NftablesConfig`]: the settings one network's rules are written from.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::datapath::types::V6Config;

/// The settings of one network's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftablesConfig {
    /// The CNI network name (tables are named after it).
    pub network: String,
    /// The bridge the pod veths are attached to.
    pub bridge: String,
    /// The pod subnet.
    pub subnet: Ipv4Network,
    /// The gateway address on the bridge.
    pub gateway: Ipv4Addr,
    /// The pods' IPv6 (ULA) subnet and gateway of a dual-stack network; `None`: the rules
    /// are IPv4 only (pods' IPv6 stays on the link).
    pub v6: Option<V6Config>,
    /// The interfaces pods are masqueraded out of; empty: every interface but the bridge
    /// (`uplink: auto`, also interfaces that appear later).
    pub uplinks: Vec<String>,
    /// Destinations pods may not reach through the node.
    pub deny: Vec<Ipv4Network>,
    /// Source ports of masqueraded TCP/UDP flows (inclusive); `(0, 0)` lets the kernel choose.
    pub nat_ports: (u16, u16),
}
