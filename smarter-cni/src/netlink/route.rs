//! Routes: the pod's default route and finding the node's default-route interface.

use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use nix::errno::Errno;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use super::{Netlink, NetlinkError, is_errno, request};

/// The IPv4 default route of a namespace's main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Next hop, when the route has one.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

impl Netlink {
    /// Adds `default via gw dev index`; success when it already exists.
    ///
    /// # Errors
    /// A refused request other than "exists".
    pub async fn ensure_default_route(&self, gw: Ipv4Addr, index: u32) -> Result<(), NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build();
        match self.handle().route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add default route via {gw}"))(e)),
        }
    }

    /// The default IPv4 route of the main table, if any.
    ///
    /// # Errors
    /// A refused request.
    pub async fn default_route(&self) -> Result<Option<DefaultRoute>, NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        Ok(self
            .main_defaults(msg, "dump routes")
            .await?
            .first()
            .map(|r| {
                let mut dr = DefaultRoute {
                    gateway: None,
                    oif: None,
                };
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => dr.gateway = Some(*g),
                        RouteAttribute::Oif(i) => dr.oif = Some(*i),
                        _ => {}
                    }
                }
                dr
            }))
    }

    /// The default routes (`/0`) of the main table that the dump `msg` (one family) lists.
    ///
    /// # Errors
    /// A refused request, named `what`.
    pub(super) async fn main_defaults(
        &self,
        msg: RouteMessage,
        what: &'static str,
    ) -> Result<Vec<RouteMessage>, NetlinkError> {
        let routes: Vec<RouteMessage> = self
            .handle()
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(request(what))?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
            .collect())
    }
}
