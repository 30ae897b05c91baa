//! The netlink side of the uplink tracker: one rtnetlink socket subscribed to the link,
//! address and route multicast groups of both families (like `ip monitor link address route`;
//! IPv6 for an IPv6-only uplink's CLAT), also used for the dumps that build a [`Snapshot`].
//!
//! The socket stays in the network namespace it was created in: create the watch on a thread
//! (and runtime) that is inside the namespace to watch.

use std::io;
use std::net::Ipv6Addr;

use futures::StreamExt as _;
use futures::channel::mpsc::UnboundedReceiver;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{Handle, MulticastGroup};
use tokio::task::JoinHandle;

use crate::cni::UplinkSelector;
use crate::datapath::uplink::{External, external};
use crate::netlink::snapshot::{self, MAIN_TABLE, Snapshot, route_table};

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
    selector: UplinkSelector,
    bridge: String,
    nat64_prefix: Option<Ipv6Addr>,
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
    /// Subscribes in the calling thread's network namespace. `nat64_prefix`: what an
    /// IPv6-only uplink's CLAT translates to (`None`: no CLAT).
    ///
    /// # Errors
    /// [`WatchError::Socket`] when the socket cannot be opened or bound to the groups.
    pub fn subscribe(
        selector: UplinkSelector,
        bridge: String,
        nat64_prefix: Option<Ipv6Addr>,
    ) -> Result<Self, WatchError> {
        let (handle, events, task) = connect()?;
        Ok(Self {
            selector,
            bridge,
            nat64_prefix,
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
    pub fn selector(&self) -> &UplinkSelector {
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
        snapshot::dump(&self.handle)
            .await
            .map_err(|(what, source)| WatchError::Dump { what, source })
    }

    /// Dumps and decides the node's external side.
    ///
    /// # Errors
    /// [`WatchError::Dump`] when a dump fails.
    pub async fn external(&self) -> Result<External, WatchError> {
        let snap = self.snapshot().await?;
        Ok(external(&self.selector, &snap, &self.bridge).with_clat(&snap, self.nat64_prefix))
    }
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

fn connect() -> Result<(Handle, Events, JoinHandle<()>), WatchError> {
    let (conn, handle, events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv6Route,
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
