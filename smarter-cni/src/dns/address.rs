//! The node-local listen address (`169.254.0.2/32` by default) on the bridge: added at start
//! (creating the bridge as the plugin would when no pod has done so yet), removed on a clean
//! shutdown only when this server added it.

use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use netlink_packet_route::address::AddressAttribute;

use crate::naming::bridge_mac;
use crate::netlink::{Netlink, NetlinkError, request};

/// The listen address as placed on the bridge; see the module docs.
#[derive(Debug)]
pub struct ListenAddress {
    bridge: String,
    ip: Ipv4Addr,
    added: bool,
}

impl ListenAddress {
    /// Ensures the bridge `bridge` exists and holds `ip/32`.
    ///
    /// # Errors
    /// A refused netlink request, or an interface named `bridge` that is not a bridge.
    pub async fn ensure(bridge: &str, mtu: u32, ip: Ipv4Addr) -> Result<Self, NetlinkError> {
        let nl = Netlink::connect()?;
        let link = nl.ensure_bridge(bridge, mtu, bridge_mac(bridge)).await?;
        let net = Ipv4Network::new(ip, 32).expect("/32 is valid");
        let present = nl.ipv4_addresses(link.index).await?.contains(&net);
        if !present {
            nl.ensure_address(link.index, bridge, net).await?;
            tracing::info!("added {net} to {bridge}");
        }
        Ok(Self {
            bridge: bridge.to_string(),
            ip,
            added: !present,
        })
    }

    /// The address.
    #[must_use]
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// True when [`ListenAddress::ensure`] added the address (so [`ListenAddress::release`]
    /// removes it).
    #[must_use]
    pub fn added(&self) -> bool {
        self.added
    }

    /// Removes the address if this server added it; nothing otherwise. "Already gone" is fine.
    ///
    /// # Errors
    /// A refused netlink request.
    pub async fn release(self) -> Result<(), NetlinkError> {
        if !self.added {
            return Ok(());
        }
        let nl = Netlink::connect()?;
        let Some(link) = nl.link_by_name(&self.bridge).await? else {
            return Ok(());
        };
        let msgs: Vec<_> = nl
            .handle()
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("list addresses of {}", self.bridge)))?;
        for m in msgs {
            let ours = m.header.prefix_len == 32
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(std::net::IpAddr::V4(ip)) if *ip == self.ip));
            if ours {
                nl.handle()
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(request(format!(
                        "remove {}/32 from {}",
                        self.ip, self.bridge
                    )))?;
                tracing::info!("removed {}/32 from {}", self.ip, self.bridge);
            }
        }
        Ok(())
    }
}
