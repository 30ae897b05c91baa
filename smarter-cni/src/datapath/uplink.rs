//! Which interface is the node's uplink, and with which address: one pure, tested decision
//! ([`resolve`] over a netlink [`Snapshot`]) that the plugin (at ADD) and the agent (on every
//! change) both make, and the [`Uplink`] type both datapaths take.

use std::fmt;
use std::net::Ipv4Addr;

use crate::cni::UplinkSelector;
use crate::netlink::format_mac;
use crate::netlink::snapshot::{AddrState, Snapshot};

/// The node's uplink, as both datapaths and the agent see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uplink {
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

impl fmt::Display for Uplink {
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

/// Decides the uplink for `selector` from `snap`.
///
/// `Auto` follows the main table's IPv4 default route with the lowest metric (ties: the first
/// dumped); a named uplink is that interface wherever the default route points. `None` when
/// the interface does not exist (or there is no default route) or it has no global IPv4
/// address: there is nothing to masquerade to.
#[must_use]
pub fn resolve(selector: &UplinkSelector, snap: &Snapshot) -> Option<Uplink> {
    let best_route = snap
        .default_routes
        .iter()
        .filter(|r| r.oif.is_some())
        .min_by_key(|r| r.metric);
    let link = match selector {
        UplinkSelector::Auto => {
            let oif = best_route?.oif?;
            snap.links.iter().find(|l| l.index == oif)?
        }
        UplinkSelector::Named(name) => snap.links.iter().find(|l| &l.name == name)?,
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
    Some(Uplink {
        ifindex: link.index,
        name: link.name.clone(),
        addr,
        mac: <[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or([0; 6]),
        up: link.up,
    })
}

/// Whether interface `ifindex` (in this namespace) holds IPv4 address `addr`.
#[must_use]
pub fn interface_has(ifindex: u32, addr: Ipv4Addr) -> bool {
    let Ok(name) = nix::net::if_::if_indextoname(ifindex) else {
        return false;
    };
    nix::ifaddrs::getifaddrs().is_ok_and(|mut all| {
        all.any(|a| {
            a.interface_name.as_bytes() == name.as_bytes()
                && a.address
                    .and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))
                    == Some(addr)
        })
    })
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
