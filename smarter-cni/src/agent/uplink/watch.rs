//! The netlink side of the uplink tracker: one rtnetlink socket subscribed to the link, IPv4
//! address and IPv4 route multicast groups (like `ip monitor link address route`), also used
//! for the dumps that build a [`Snapshot`].
//!
//! The socket stays in the network namespace it was created in: create the watch on a thread
//! (and runtime) that is inside the namespace to watch.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt as _, TryStreamExt as _};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::sys::SocketAddr;
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::{AddrState, DefaultRouteState, LinkState, Snapshot, UplinkInfo, resolve};
use crate::cni::Uplink;

/// `RT_TABLE_MAIN`.
const MAIN_TABLE: u32 = 254;

/// An error of the uplink watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The multicast socket could not be opened or bound.
    #[error("cannot open the rtnetlink multicast socket: {0}")]
    Socket(#[source] io::Error),
    /// A dump was refused or failed.
    #[error("dump {what}: {source}")]
    Dump {
        /// What was dumped (`links`, `addresses`, `routes`).
        what: &'static str,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The connection ended (e.g. the socket overflowed); subscribe again.
    #[error("the rtnetlink multicast connection ended")]
    Closed,
}

/// A subscription to link, address and route changes of the current network namespace.
///
/// Must be created and used inside a tokio runtime (the connection runs as a task).
pub struct UplinkWatch {
    selector: Uplink,
    handle: Handle,
    events: Events,
    task: JoinHandle<()>,
}

impl Drop for UplinkWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UplinkWatch {
    /// Subscribes in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`WatchError::Socket`] when the socket cannot be opened or bound to the groups.
    pub fn subscribe(selector: Uplink) -> Result<Self, WatchError> {
        let (handle, events, task) = connect()?;
        Ok(Self {
            selector,
            handle,
            events,
            task,
        })
    }

    /// Replaces the connection with a new one (after [`WatchError::Closed`]).
    ///
    /// # Errors
    /// [`WatchError::Socket`] when the socket cannot be opened or bound to the groups.
    pub fn resubscribe(&mut self) -> Result<(), WatchError> {
        let (handle, events, task) = connect()?;
        self.task.abort();
        self.handle = handle;
        self.events = events;
        self.task = task;
        Ok(())
    }

    /// The configured uplink selector.
    #[must_use]
    pub fn selector(&self) -> &Uplink {
        &self.selector
    }

    /// Waits for the next change that may affect the uplink (any link event, IPv4 address
    /// event, or main-table IPv4 route event).
    ///
    /// # Errors
    /// [`WatchError::Closed`] when the connection ended.
    pub async fn changed(&mut self) -> Result<(), WatchError> {
        loop {
            let (msg, _) = self.events.next().await.ok_or(WatchError::Closed)?;
            if is_relevant(&msg) {
                return Ok(());
            }
        }
    }

    /// Dumps links, IPv4 addresses and main-table IPv4 default routes.
    ///
    /// # Errors
    /// [`WatchError::Dump`] when a dump fails.
    pub async fn snapshot(&self) -> Result<Snapshot, WatchError> {
        let dump = |what| move |source| WatchError::Dump { what, source };
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(dump("links"))?;
        let addrs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(dump("addresses"))?;
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(dump("routes"))?;
        Ok(Snapshot {
            links: links.iter().map(link_state).collect(),
            addrs: addrs.iter().filter_map(addr_state).collect(),
            default_routes: routes.iter().filter_map(default_route_state).collect(),
        })
    }

    /// Dumps and decides the current uplink.
    ///
    /// # Errors
    /// [`WatchError::Dump`] when a dump fails.
    pub async fn resolve(&self) -> Result<Option<UplinkInfo>, WatchError> {
        Ok(resolve(&self.selector, &self.snapshot().await?))
    }
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

fn connect() -> Result<(Handle, Events, JoinHandle<()>), WatchError> {
    let (conn, handle, events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
    ])
    .map_err(WatchError::Socket)?;
    let task = tokio::spawn(conn);
    Ok((handle, events, task))
}

fn is_relevant(msg: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    let NetlinkPayload::InnerMessage(inner) = &msg.payload else {
        return false;
    };
    match inner {
        RouteNetlinkMessage::NewLink(_)
        | RouteNetlinkMessage::DelLink(_)
        | RouteNetlinkMessage::NewAddress(_)
        | RouteNetlinkMessage::DelAddress(_) => true,
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            route_table(r) == MAIN_TABLE
        }
        _ => false,
    }
}

fn link_state(msg: &LinkMessage) -> LinkState {
    let flags = msg.header.flags;
    let mut state = LinkState {
        index: msg.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => state.name.clone_from(n),
            LinkAttribute::Address(a) => state.mac.clone_from(a),
            _ => {}
        }
    }
    state
}

fn addr_state(msg: &AddressMessage) -> Option<AddrState> {
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

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn default_route_state(msg: &RouteMessage) -> Option<DefaultRouteState> {
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
