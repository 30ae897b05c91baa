//! IPv6 addresses and the IPv6 default route, for dual-stack pods: the bridge's and the pod's
//! address (added without duplicate address detection, so they are usable at once) and the
//! pod's `::/0` via the bridge.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt as _;
use ipnetwork::Ipv6Network;
use nix::errno::Errno;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};

use super::{Netlink, NetlinkError, is_errno, request};

impl Netlink {
    /// Adds the IPv6 `addr` to an interface with `nodad` (no duplicate address detection:
    /// the subnet is the node's own, and a tentative address could not be used for the
    /// first second); success when it is already there.
    ///
    /// # Errors
    /// A refused request other than "exists".
    pub async fn ensure_address6(
        &self,
        index: u32,
        name: &str,
        addr: Ipv6Network,
    ) -> Result<(), NetlinkError> {
        let mut req = self
            .handle()
            .address()
            .add(index, IpAddr::V6(addr.ip()), addr.prefix());
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add address {addr} to {name}"))(e)),
        }
    }

    /// The IPv6 addresses on an interface (link-local ones included).
    ///
    /// # Errors
    /// A refused request.
    pub async fn ipv6_addresses(&self, index: u32) -> Result<Vec<Ipv6Network>, NetlinkError> {
        let msgs: Vec<_> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("list addresses of ifindex {index}")))?;
        let mut out = Vec::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V6(ip)) = a
                    && let Ok(net) = Ipv6Network::new(*ip, m.header.prefix_len)
                {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Adds `::/0 via gw dev index`; success when it already exists.
    ///
    /// # Errors
    /// A refused request other than "exists".
    pub async fn ensure_default_route6(
        &self,
        gw: Ipv6Addr,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build();
        match self.handle().route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add IPv6 default route via {gw}"))(e)),
        }
    }
    /// The gateway of the IPv6 default route (`::/0`) of the main table, if there is such a
    /// route with a gateway.
    ///
    /// # Errors
    /// A refused request.
    pub async fn default_route6(&self) -> Result<Option<Ipv6Addr>, NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let routes = self.main_defaults(msg, "dump IPv6 routes").await?;
        Ok(routes.iter().find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(*g),
                _ => None,
            })
        }))
    }
}
