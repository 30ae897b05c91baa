//! Which interface is the node's uplink, and with which address: the pure decision
//! ([`resolve`] over a [`Snapshot`]) and the event-driven netlink side ([`watch`]).
//!
//! The decision is kept free of sockets so that it is unit-tested without root: the netlink
//! side only turns kernel dumps into a [`Snapshot`].

pub mod watch;

use std::fmt;
use std::net::Ipv4Addr;

use crate::cni::Uplink;
use crate::netlink::format_mac;

/// The uplink as the datapath needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UplinkInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// The address pods are masqueraded to: the default route's preferred source when it is
    /// on this interface, else the first global IPv4 address (primaries before secondaries).
    pub addr: Ipv4Addr,
    /// Hardware address; all zeros for devices without an Ethernet address (e.g. raw-IP
    /// `wwan0`, tunnels).
    pub mac: [u8; 6],
    /// Administratively up with carrier (`IFF_UP` and `IFF_RUNNING`).
    pub up: bool,
}

impl fmt::Display for UplinkInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ifindex {}, {}, mac {}, {})",
            self.name,
            self.ifindex,
            self.addr,
            format_mac(&self.mac),
            if self.up { "up" } else { "down" }
        )
    }
}

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

/// Everything [`resolve`] looks at, in kernel dump order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All interfaces.
    pub links: Vec<LinkState>,
    /// All IPv4 addresses.
    pub addrs: Vec<AddrState>,
    /// The main table's IPv4 default routes.
    pub default_routes: Vec<DefaultRouteState>,
}

/// Decides the uplink for `selector` from `snap`.
///
/// `Auto` follows the main table's IPv4 default route with the lowest metric (ties: the first
/// dumped); a named uplink is that interface wherever the default route points. `None` when
/// the interface does not exist (or there is no default route) or it has no global IPv4
/// address: there is nothing to masquerade to.
#[must_use]
pub fn resolve(selector: &Uplink, snap: &Snapshot) -> Option<UplinkInfo> {
    let best_route = snap
        .default_routes
        .iter()
        .filter(|r| r.oif.is_some())
        .min_by_key(|r| r.metric);
    let link = match selector {
        Uplink::Auto => {
            let oif = best_route?.oif?;
            snap.links.iter().find(|l| l.index == oif)?
        }
        Uplink::Named(name) => snap.links.iter().find(|l| &l.name == name)?,
    };
    let on_link = |a: &&AddrState| a.index == link.index && a.global;
    // The preferred source of a default route through this link wins if it is configured here.
    let pref = snap
        .default_routes
        .iter()
        .filter(|r| r.oif == Some(link.index))
        .min_by_key(|r| r.metric)
        .and_then(|r| r.pref_src)
        .filter(|src| snap.addrs.iter().filter(on_link).any(|a| a.addr == *src));
    let addr = pref.or_else(|| {
        let mut candidates: Vec<&AddrState> = snap.addrs.iter().filter(on_link).collect();
        // Stable: keeps dump order within primaries and within secondaries.
        candidates.sort_by_key(|a| a.secondary);
        candidates.first().map(|a| a.addr)
    })?;
    Some(UplinkInfo {
        ifindex: link.index,
        name: link.name.clone(),
        addr,
        mac: <[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or([0; 6]),
        up: link.up,
    })
}

#[cfg(test)]
mod tests;
