//! Which interfaces pods leave the node by, and with which addresses: one pure, tested decision
//! ([`external`] over a netlink [`Snapshot`]) that the plugin (at ADD) and the agent (on every
//! change) both make, and the [`External`] view both datapaths take. [`resolve`] is the one
//! interface the default route uses (what status shows as the preferred uplink).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::cni::UplinkSelector;
use crate::netlink::format_mac;
use crate::netlink::snapshot::{AddrState, LinkState, Snapshot};

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
    /// A layer-3 device: frames carry no Ethernet header (raw-IP modems, PPP, tun, WireGuard).
    pub l3: bool,
    /// MTU (0 when unknown).
    pub mtu: u32,
    /// Selected by `uplink` (always with `auto`): pods may leave by it. Interfaces that are
    /// not selected still get node-local-only, the leak backstop and hostPorts on their
    /// addresses; pod traffic routed to them is dropped.
    pub selected: bool,
}

/// An IPv6-only uplink's CLAT, as both datapaths are given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clat {
    /// The uplink's interface index.
    pub ifindex: u32,
    /// The uplink's name.
    pub name: String,
    /// The node's CLAT address on it: the source of every translated packet. The datapath
    /// adds it to the uplink (`/128`, no duplicate detection) so the node answers neighbour
    /// discovery for it, and removes it when the CLAT goes.
    pub addr: Ipv6Addr,
    /// The NAT64 prefix (`/96`).
    pub pref64: Ipv6Addr,
}

impl Clat {
    /// The first 96 bits of [`Self::pref64`], as the datapath's map holds them.
    #[must_use]
    pub fn pref64_bytes(&self) -> [u8; 12] {
        let mut p = [0u8; 12];
        p.copy_from_slice(&self.pref64.octets()[..12]);
        p
    }
}

/// The node's external side, as both datapaths are given it: every interface pod traffic may
/// leave by (each with the address it is masqueraded to) and every address of the node (a
/// hostPort answers on all of them, as portmap's `dst-type LOCAL` does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct External {
    /// `uplink` was absent or `auto`: every external interface, also those that appear later.
    pub all: bool,
    /// Every external interface, in ifindex order, [`Uplink::selected`] or not; an interface
    /// without a global IPv4 address has [`Ipv4Addr::UNSPECIFIED`] (nothing to masquerade to:
    /// pods cannot leave by it).
    pub uplinks: Vec<Uplink>,
    /// The interface of the main table's IPv4 default route, if it is a selected one; with a
    /// name or a list, else the first selected interface.
    pub preferred: Option<u32>,
    /// Every global IPv4 address of the node, with the ifindex holding it.
    pub node_addrs: Vec<(Ipv4Addr, u32)>,
    /// The IPv6-only uplink pods' IPv4 is translated out of, when the node has no IPv4 way
    /// off (`datapath::clat::plan`, set by `External::with_clat`).
    pub clat: Option<Clat>,
    /// Every external interface's global IPv6 address pods' ULA sources are NAT66ed to
    /// ([`nat66_addr`]), by ifindex, in ifindex order; interfaces without one are absent.
    pub uplinks6: Vec<(u32, Ipv6Addr)>,
    /// Every global IPv6 address of the node (ULAs included), with the ifindex holding it:
    /// pods' IPv6 to them is the host's.
    pub node_addrs6: Vec<(Ipv6Addr, u32)>,
}

impl External {
    /// The smallest MTU of the uplinks that have an address (`mtu: "auto"`); the CLAT's
    /// uplink counts with the translation's overhead taken off (the IPv6 header and a fragment
    /// header, [`smarter_common::clat::OVERHEAD`]).
    #[must_use]
    pub fn smallest_mtu(&self) -> Option<u32> {
        let clat = self.clat.as_ref().and_then(|c| {
            let up = self.uplinks.iter().find(|u| u.ifindex == c.ifindex)?;
            Some(up.mtu.saturating_sub(smarter_common::clat::OVERHEAD))
        });
        self.uplinks
            .iter()
            .filter(|u| u.selected && !u.addr.is_unspecified())
            .map(|u| u.mtu)
            .chain(clat)
            .filter(|m| *m >= 68)
            .min()
    }

    /// The uplink the default route uses, if any.
    #[must_use]
    pub fn preferred(&self) -> Option<&Uplink> {
        let index = self.preferred?;
        self.uplinks.iter().find(|u| u.ifindex == index)
    }
}

/// The external interfaces in `snap`, marked [`Uplink::selected`] as `selector` picks them (see
/// [`External`]). External: not the loopback, not `bridge`, not enslaved to another device (a
/// bridge port carries no traffic of its own). A named interface that does not exist is not
/// there (yet).
#[must_use]
pub fn external(selector: &UplinkSelector, snap: &Snapshot, bridge: &str) -> External {
    let names = selector.names();
    let mut uplinks: Vec<Uplink> = snap
        .links
        .iter()
        .filter(|l| !l.loopback && l.name != bridge && l.master.is_none())
        .map(|l| Uplink {
            selected: names.is_empty() || names.contains(&l.name),
            ..uplink_of(l, snap).unwrap_or_else(|| bare(l))
        })
        .collect();
    uplinks.sort_by_key(|u| u.ifindex);
    let preferred = best_route(snap)
        .and_then(|r| r.oif)
        .filter(|oif| uplinks.iter().any(|u| u.ifindex == *oif && u.selected))
        .or_else(|| {
            // A named uplink is the uplink without a default route too (a link that went down
            // took its routes with it).
            (!names.is_empty())
                .then(|| uplinks.iter().find(|u| u.selected).map(|u| u.ifindex))
                .flatten()
        });
    let node_addrs = snap
        .addrs
        .iter()
        .filter(|a| a.global)
        .map(|a| (a.addr, a.index))
        .collect();
    let uplinks6 = uplinks
        .iter()
        .filter_map(|u| nat66_addr(snap, u.ifindex).map(|a| (u.ifindex, a)))
        .collect();
    let node_addrs6 = snap.addrs6.iter().map(|a| (a.addr, a.index)).collect();
    External {
        all: names.is_empty(),
        uplinks,
        preferred,
        node_addrs,
        clat: None,
        uplinks6,
        node_addrs6,
    }
}

/// The address NAT66 masquerades pods to through interface `ifindex`: its first global IPv6
/// address in dump order that is not a ULA (`fc00::/7`, not routed on the internet). `None`:
/// none (pods' IPv6 cannot leave by it).
#[must_use]
pub fn nat66_addr(snap: &Snapshot, ifindex: u32) -> Option<Ipv6Addr> {
    snap.addrs6
        .iter()
        .filter(|a| a.index == ifindex && !a.addr.is_unique_local())
        .map(|a| a.addr)
        .find(|a| !a.is_loopback() && !a.is_multicast() && !a.is_unicast_link_local())
}

fn best_route(snap: &Snapshot) -> Option<&crate::netlink::snapshot::DefaultRouteState> {
    snap.default_routes
        .iter()
        .filter(|r| r.oif.is_some())
        .min_by_key(|r| r.metric)
}

fn bare(link: &LinkState) -> Uplink {
    Uplink {
        ifindex: link.index,
        name: link.name.clone(),
        addr: Ipv4Addr::UNSPECIFIED,
        mac: <[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or([0; 6]),
        up: link.up,
        l3: link.l3,
        mtu: link.mtu,
        selected: true,
    }
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

/// The one uplink the default route uses for `selector` in `snap`.
///
/// `Auto` (and a list) follows the main table's IPv4 default route with the lowest metric
/// (ties: the first dumped), among the selected interfaces; a named uplink is that interface
/// wherever the default route points. `None` when the interface does not exist (or there is
/// no default route) or it has no global IPv4 address: there is nothing to masquerade to.
#[must_use]
pub fn resolve(selector: &UplinkSelector, snap: &Snapshot) -> Option<Uplink> {
    let link = match selector {
        UplinkSelector::Named(name) => snap.links.iter().find(|l| &l.name == name)?,
        UplinkSelector::Auto | UplinkSelector::List(_) => {
            let oif = best_route(snap)?.oif?;
            let link = snap.links.iter().find(|l| l.index == oif)?;
            let names = selector.names();
            if !names.is_empty() && !names.contains(&link.name) {
                return None;
            }
            link
        }
    };
    uplink_of(link, snap)
}

/// `link` with the address pods are masqueraded to through it: the preferred source of a
/// default route through it when configured there, else its first global IPv4 address
/// (primaries before secondaries). `None` when it has no global IPv4 address.
fn uplink_of(link: &LinkState, snap: &Snapshot) -> Option<Uplink> {
    let on_link = |a: &&AddrState| a.index == link.index && a.global;
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
    Some(Uplink { addr, ..bare(link) })
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
