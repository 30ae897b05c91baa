//! What the uplink decision looks at, read from the kernel: links, IPv4 addresses and the
//! main table's IPv4 default routes (and, for an IPv6-only uplink's CLAT, the global IPv6
//! addresses and IPv6 default routes) ([`Snapshot`], dumped by [`dump`]), and the netlink
//! messages turned into it (shared with the agent's event-driven watch).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};

/// `RT_TABLE_MAIN`.
pub const MAIN_TABLE: u32 = 254;

/// One interface, as far as the uplink decision is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address as reported (any length).
    pub mac: Vec<u8>,
    /// Administratively up with carrier.
    pub up: bool,
    /// The link layer carries no Ethernet header (raw-IP modems, PPP, tun, WireGuard): any
    /// `ARPHRD_*` other than Ethernet and loopback.
    pub l3: bool,
    /// The loopback device.
    pub loopback: bool,
    /// The device it is enslaved to (a bridge port's bridge), if any.
    pub master: Option<u32>,
    /// MTU (0 when not reported).
    pub mtu: u32,
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrState {
    /// Index of the interface holding it.
    pub index: u32,
    /// The local address.
    pub addr: Ipv4Addr,
    /// Global scope (not host/link scope such as 127.0.0.1 or 169.254.x.x).
    pub global: bool,
    /// Flagged secondary by the kernel.
    pub secondary: bool,
}

/// One IPv4 default route of the main table (unicast, prefix length 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRouteState {
    /// Output interface (for multipath routes, the first next hop's).
    pub oif: Option<u32>,
    /// `src` of the route, if any.
    pub pref_src: Option<Ipv4Addr>,
    /// Route metric (priority); the lowest wins.
    pub metric: u32,
}

/// One global IPv6 address of an interface (what an IPv6-only uplink's CLAT is made from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr6State {
    /// Index of the interface holding it.
    pub index: u32,
    /// The address.
    pub addr: Ipv6Addr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// One IPv6 default route of the main table (unicast, prefix length 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute6State {
    /// Output interface (for multipath routes, the first next hop's).
    pub oif: Option<u32>,
    /// Route metric (priority); the lowest wins.
    pub metric: u32,
}

/// Everything [`resolve`] looks at, in kernel dump order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All interfaces.
    pub links: Vec<LinkState>,
    /// All IPv4 addresses.
    pub addrs: Vec<AddrState>,
    /// The main table's IPv4 default routes.
    pub default_routes: Vec<DefaultRouteState>,
    /// All global IPv6 addresses (not tentative or failed DAD).
    pub addrs6: Vec<Addr6State>,
    /// The main table's IPv6 default routes.
    pub default_routes6: Vec<DefaultRoute6State>,
}

/// Dumps links, IPv4 addresses and main-table IPv4 default routes through `handle`.
///
/// # Errors
///
/// The dump that failed (`links`, `addresses`, `routes`) and its netlink error.
pub async fn dump(handle: &Handle) -> Result<Snapshot, (&'static str, rtnetlink::Error)> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| ("links", e))?;
    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| ("addresses", e))?;
    let (routes, routes6) = dump_routes(handle).await.map_err(|(_, e)| ("routes", e))?;
    Ok(Snapshot {
        links: links.iter().map(link_state).collect(),
        addrs: addrs.iter().filter_map(addr_state).collect(),
        default_routes: routes.iter().filter_map(default_route_state).collect(),
        addrs6: addrs.iter().filter_map(addr6_state).collect(),
        default_routes6: routes6.iter().filter_map(default_route6_state).collect(),
    })
}

/// The IPv4 then the IPv6 route dump; the error names the one that failed.
async fn dump_routes(
    handle: &Handle,
) -> Result<(Vec<RouteMessage>, Vec<RouteMessage>), (&'static str, rtnetlink::Error)> {
    let v4 = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| ("dump routes", e))?;
    let v6 = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| ("dump IPv6 routes", e))?;
    Ok((v4, v6))
}

/// A link message as the decision sees it.
pub fn link_state(msg: &LinkMessage) -> LinkState {
    let flags = msg.header.flags;
    let mut state = LinkState {
        index: msg.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
        l3: !matches!(
            msg.header.link_layer_type,
            LinkLayerType::Ether | LinkLayerType::Loopback
        ),
        loopback: flags.contains(LinkFlags::Loopback),
        master: None,
        mtu: 0,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => state.name.clone_from(n),
            LinkAttribute::Address(a) => state.mac.clone_from(a),
            LinkAttribute::Controller(m) => state.master = Some(*m),
            LinkAttribute::Mtu(m) => state.mtu = *m,
            _ => {}
        }
    }
    state
}

/// An IPv4 address message as the decision sees it (`None` for other families).
pub fn addr_state(msg: &AddressMessage) -> Option<AddrState> {
    let mut local = None;
    let mut address = None;
    let mut secondary = msg.header.flags.contains(AddressHeaderFlags::Secondary);
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
            AddressAttribute::Flags(f) => {
                secondary |= f.contains(AddressFlags::Secondary);
            }
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    Some(AddrState {
        index: msg.header.index,
        addr: local.or(address)?,
        global: msg.header.scope == AddressScope::Universe,
        secondary,
    })
}

/// A global IPv6 address message as the decision sees it (`None` for other families, other
/// scopes, and addresses still tentative or whose duplicate detection failed).
pub fn addr6_state(msg: &AddressMessage) -> Option<Addr6State> {
    if msg.header.scope != AddressScope::Universe {
        return None;
    }
    let mut addr = None;
    let mut usable = true;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(IpAddr::V6(a)) | AddressAttribute::Local(IpAddr::V6(a)) => {
                addr = Some(*a);
            }
            AddressAttribute::Flags(f) => {
                usable &=
                    !f.contains(AddressFlags::Tentative) && !f.contains(AddressFlags::Dadfailed);
            }
            _ => {}
        }
    }
    usable.then_some(())?;
    Some(Addr6State {
        index: msg.header.index,
        addr: addr?,
        prefix_len: msg.header.prefix_len,
    })
}

/// A main-table IPv6 unicast default route as the decision sees it (`None` otherwise).
pub fn default_route6_state(msg: &RouteMessage) -> Option<DefaultRoute6State> {
    if msg.header.address_family != rtnetlink::packet_route::AddressFamily::Inet6 {
        return None;
    }
    let v4 = default_route_state(msg)?;
    Some(DefaultRoute6State {
        oif: v4.oif,
        metric: v4.metric,
    })
}

/// The routing table of a route message.
pub fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// A main-table IPv4 unicast default route as the decision sees it (`None` otherwise).
pub fn default_route_state(msg: &RouteMessage) -> Option<DefaultRouteState> {
    if msg.header.destination_prefix_length != 0
        || msg.header.kind != RouteType::Unicast
        || route_table(msg) != MAIN_TABLE
    {
        return None;
    }
    let mut state = DefaultRouteState {
        oif: None,
        pref_src: None,
        metric: 0,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => state.oif = Some(*i),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => state.pref_src = Some(*a),
            RouteAttribute::Priority(p) => state.metric = *p,
            RouteAttribute::MultiPath(hops) if state.oif.is_none() => {
                state.oif = hops.first().map(|h| h.interface_index);
            }
            _ => {}
        }
    }
    Some(state)
}

impl super::Netlink {
    /// The part of the [`Snapshot`] the uplink decision reads: the default routes, every IPv4
    /// address, and the links that hold one, carry a default route or are `named`. The
    /// plugin's ADD uses it: a node with hundreds of pods has hundreds of veths (which hold no
    /// address), and a full [`dump`] would read them all on every ADD.
    ///
    /// # Errors
    ///
    /// [`super::NetlinkError::Request`] naming the request that failed.
    pub async fn uplink_snapshot(&self, named: &[String]) -> Result<Snapshot, super::NetlinkError> {
        let err = |op: String| move |source| super::NetlinkError::Request { op, source };
        let (routes, routes6) = dump_routes(self.handle())
            .await
            .map_err(|(what, e)| err(what.into())(e))?;
        let default_routes: Vec<DefaultRouteState> =
            routes.iter().filter_map(default_route_state).collect();
        let default_routes6: Vec<DefaultRoute6State> =
            routes6.iter().filter_map(default_route6_state).collect();
        let addrs: Vec<AddressMessage> = self
            .handle()
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(err("dump addresses".into()))?;
        let addrs6: Vec<Addr6State> = addrs.iter().filter_map(addr6_state).collect();
        let addrs: Vec<AddrState> = addrs.iter().filter_map(addr_state).collect();
        let mut wanted: Vec<u32> = addrs
            .iter()
            .map(|a| a.index)
            .chain(addrs6.iter().map(|a| a.index))
            .chain(default_routes.iter().filter_map(|r| r.oif))
            .chain(default_routes6.iter().filter_map(|r| r.oif))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut links = Vec::new();
        let requests = wanted
            .into_iter()
            .map(|i| {
                (
                    format!("link {i}"),
                    self.handle().link().get().match_index(i),
                )
            })
            .chain(named.iter().map(|n| {
                (
                    format!("link {n}"),
                    self.handle().link().get().match_name(n.clone()),
                )
            }));
        for (what, request) in requests {
            match request.execute().try_next().await {
                Ok(Some(link)) => {
                    let state = link_state(&link);
                    if !links.iter().any(|l: &LinkState| l.index == state.index) {
                        links.push(state);
                    }
                }
                Ok(None) => {}
                // Gone between the dumps, or a named interface that does not exist (yet).
                Err(e) if super::is_errno(&e, nix::errno::Errno::ENODEV) => {}
                Err(e) => return Err(err(format!("get {what}"))(e)),
            }
        }
        Ok(Snapshot {
            links,
            addrs,
            default_routes,
            addrs6,
            default_routes6,
        })
    }
}
