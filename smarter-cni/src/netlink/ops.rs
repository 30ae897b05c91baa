//! The netlink operations the verbs make, as one object-safe trait: [`Netlink`] is the real
//! implementation, and the verbs' unit tests put an in-memory node behind it, so ADD, DEL,
//! CHECK and GC are tested without root (the seam aya's syscall funnel gives its own tests).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};

use super::snapshot::Snapshot;
use super::{DefaultRoute, LinkInfo, Netlink, NetlinkError, NetnsFile};

/// One network namespace's links, addresses and routes, as the verbs read and change them.
/// Every method has the meaning of the [`Netlink`] method of the same name.
#[async_trait::async_trait(?Send)]
pub trait Links {
    /// [`Netlink::link_by_name`].
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError>;
    /// [`Netlink::links`].
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError>;
    /// [`Netlink::ensure_bridge`].
    async fn ensure_bridge(
        &self,
        name: &str,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<LinkInfo, NetlinkError>;
    /// [`Netlink::create_veth`].
    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetnsFile,
        mtu: u32,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), NetlinkError>;
    /// [`Netlink::set_up`].
    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkError>;
    /// [`Netlink::attach_to_bridge`].
    async fn attach_to_bridge(
        &self,
        index: u32,
        name: &str,
        bridge_index: u32,
        hairpin: bool,
    ) -> Result<(), NetlinkError>;
    /// [`Netlink::add_port_mac`].
    async fn add_port_mac(&self, index: u32, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError>;
    /// [`Netlink::delete_link`].
    async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError>;
    /// [`Netlink::ensure_address`].
    async fn ensure_address(
        &self,
        index: u32,
        name: &str,
        addr: Ipv4Network,
    ) -> Result<(), NetlinkError>;
    /// [`Netlink::ipv4_addresses`].
    async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, NetlinkError>;
    /// [`Netlink::ensure_default_route`].
    async fn ensure_default_route(&self, gw: Ipv4Addr, index: u32) -> Result<(), NetlinkError>;
    /// [`Netlink::default_route`].
    async fn default_route(&self) -> Result<Option<DefaultRoute>, NetlinkError>;
    /// [`Netlink::uplink_snapshot`].
    async fn uplink_snapshot(&self, named: &[String]) -> Result<Snapshot, NetlinkError>;
    /// [`Netlink::ensure_address6`].
    async fn ensure_address6(
        &self,
        index: u32,
        name: &str,
        addr: Ipv6Network,
    ) -> Result<(), NetlinkError>;
    /// [`Netlink::ipv6_addresses`].
    async fn ipv6_addresses(&self, index: u32) -> Result<Vec<Ipv6Network>, NetlinkError>;
    /// [`Netlink::ensure_default_route6`].
    async fn ensure_default_route6(&self, gw: Ipv6Addr, index: u32) -> Result<(), NetlinkError>;
    /// [`Netlink::default_route6`].
    async fn default_route6(&self) -> Result<Option<Ipv6Addr>, NetlinkError>;
}

#[async_trait::async_trait(?Send)]
impl Links for Netlink {
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        Netlink::link_by_name(self, name).await
    }
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        Netlink::links(self).await
    }
    async fn ensure_bridge(
        &self,
        name: &str,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<LinkInfo, NetlinkError> {
        Netlink::ensure_bridge(self, name, mtu, mac).await
    }
    async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetnsFile,
        mtu: u32,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<(), NetlinkError> {
        Netlink::create_veth(self, host, peer, peer_ns, mtu, peer_mac).await
    }
    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        Netlink::set_up(self, index, name).await
    }
    async fn attach_to_bridge(
        &self,
        index: u32,
        name: &str,
        bridge_index: u32,
        hairpin: bool,
    ) -> Result<(), NetlinkError> {
        Netlink::attach_to_bridge(self, index, name, bridge_index, hairpin).await
    }
    async fn add_port_mac(&self, index: u32, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        Netlink::add_port_mac(self, index, name, mac).await
    }
    async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        Netlink::delete_link(self, name).await
    }
    async fn ensure_address(
        &self,
        index: u32,
        name: &str,
        addr: Ipv4Network,
    ) -> Result<(), NetlinkError> {
        Netlink::ensure_address(self, index, name, addr).await
    }
    async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, NetlinkError> {
        Netlink::ipv4_addresses(self, index).await
    }
    async fn ensure_default_route(&self, gw: Ipv4Addr, index: u32) -> Result<(), NetlinkError> {
        Netlink::ensure_default_route(self, gw, index).await
    }
    async fn default_route(&self) -> Result<Option<DefaultRoute>, NetlinkError> {
        Netlink::default_route(self).await
    }
    async fn uplink_snapshot(&self, named: &[String]) -> Result<Snapshot, NetlinkError> {
        Netlink::uplink_snapshot(self, named).await
    }
    async fn ensure_address6(
        &self,
        index: u32,
        name: &str,
        addr: Ipv6Network,
    ) -> Result<(), NetlinkError> {
        Netlink::ensure_address6(self, index, name, addr).await
    }
    async fn ipv6_addresses(&self, index: u32) -> Result<Vec<Ipv6Network>, NetlinkError> {
        Netlink::ipv6_addresses(self, index).await
    }
    async fn ensure_default_route6(&self, gw: Ipv6Addr, index: u32) -> Result<(), NetlinkError> {
        Netlink::ensure_default_route6(self, gw, index).await
    }
    async fn default_route6(&self) -> Result<Option<Ipv6Addr>, NetlinkError> {
        Netlink::default_route6(self).await
    }
}
