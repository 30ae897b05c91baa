//! Whether pods' IPv4 needs the CLAT, and through which interface with which address: one pure,
//! tested decision ([`plan`]) over the same [`Snapshot`] as [`super::uplink::external`].
//!
//! The CLAT (464XLAT's customer-side translator, RFC 6877) is on when the node has no way off
//! for IPv4 — no IPv4 default route through a selected uplink with an IPv4 address — but has
//! one for IPv6: the best IPv6 default route leaves by a selected uplink with a global IPv6
//! address. Pods' IPv4 is then NATed to [`smarter_common::clat::CLAT_V4`] and translated to
//! IPv6 from the node's CLAT address, an address of that uplink's `/64` with an interface
//! identifier of our own ([`clat_addr`]), to the NAT64 prefix (`nat64Prefix`).

use std::net::Ipv6Addr;

use super::uplink::External;
use crate::netlink::snapshot::Snapshot;

pub use super::uplink::Clat;

impl External {
    /// Adds the CLAT decision ([`plan`]) for `snap`, the snapshot `self` was decided from,
    /// with NAT64 prefix `pref64` (`None`: off).
    #[must_use]
    pub fn with_clat(mut self, snap: &Snapshot, pref64: Option<Ipv6Addr>) -> Self {
        self.clat = plan(&self, snap, pref64);
        self
    }
}

/// The CLAT `snap` calls for, given `ext` (decided from the same snapshot) and the NAT64 prefix
/// (`None`: `nat64Prefix` is `"off"`). See the module docs.
#[must_use]
pub fn plan(ext: &External, snap: &Snapshot, pref64: Option<Ipv6Addr>) -> Option<Clat> {
    let pref64 = pref64?;
    let has_v4 = |oif: u32| {
        ext.uplinks
            .iter()
            .any(|u| u.ifindex == oif && u.selected && !u.addr.is_unspecified())
    };
    if snap.default_routes.iter().filter_map(|r| r.oif).any(has_v4) {
        return None;
    }
    let oif = snap
        .default_routes6
        .iter()
        .filter(|r| r.oif.is_some())
        .min_by_key(|r| r.metric)?
        .oif?;
    let up = ext
        .uplinks
        .iter()
        .find(|u| u.ifindex == oif && u.selected)?;
    // The uplink's own address (a prefix, not an address of ours: the CLAT's is a /128).
    let own = snap
        .addrs6
        .iter()
        .filter(|a| a.index == oif && a.prefix_len <= 64)
        .min_by_key(|a| a.prefix_len != 64)?;
    Some(Clat {
        ifindex: oif,
        name: up.name.clone(),
        addr: clat_addr(own.addr, &up.name),
        pref64,
    })
}

/// The CLAT address for an uplink named `name` holding `addr`: `addr`'s `/64` with an interface
/// identifier hashed from the name (FNV-1a, so it is stable across restarts and differs per
/// uplink; the universal/local bit is cleared as for any locally made identifier).
#[must_use]
pub fn clat_addr(addr: Ipv6Addr, name: &str) -> Ipv6Addr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"smarter-cni clat ".iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut o = addr.octets();
    o[8..].copy_from_slice(&h.to_be_bytes());
    o[8] &= !0x02;
    Ipv6Addr::from(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::UplinkSelector;
    use crate::datapath::uplink::external;
    use crate::netlink::snapshot::{
        Addr6State, AddrState, DefaultRoute6State, DefaultRouteState, LinkState,
    };

    const WELL_KNOWN: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

    fn link(index: u32, name: &str, l3: bool) -> LinkState {
        LinkState {
            index,
            name: name.into(),
            mac: if l3 {
                Vec::new()
            } else {
                vec![2, 0, 0, 0, 0, index as u8]
            },
            up: true,
            l3,
            loopback: false,
            master: None,
            mtu: 1500,
        }
    }

    /// A cellular gateway: `wwan0` (raw IP) has only IPv6 and the IPv6 default route; `eth0`
    /// is the sensors' LAN with IPv4.
    fn ipv6_only() -> Snapshot {
        Snapshot {
            links: vec![link(2, "eth0", false), link(3, "wwan0", true)],
            addrs: vec![AddrState {
                index: 2,
                addr: "192.168.7.1".parse().unwrap(),
                global: true,
                secondary: false,
            }],
            default_routes: Vec::new(),
            addrs6: vec![
                Addr6State {
                    index: 3,
                    addr: "2001:db8:77::1234".parse().unwrap(),
                    prefix_len: 64,
                },
                // The CLAT's own, from an earlier decision: never a source of prefixes.
                Addr6State {
                    index: 3,
                    addr: "2001:db8:99::1".parse().unwrap(),
                    prefix_len: 128,
                },
            ],
            default_routes6: vec![DefaultRoute6State {
                oif: Some(3),
                metric: 1024,
            }],
        }
    }

    fn decide(snap: &Snapshot, pref64: Option<Ipv6Addr>) -> Option<Clat> {
        let ext = external(&UplinkSelector::Auto, snap, "cni0");
        plan(&ext, snap, pref64)
    }

    #[test]
    fn an_ipv6_only_uplink_gets_the_clat() {
        let c = decide(&ipv6_only(), Some(WELL_KNOWN)).expect("CLAT");
        assert_eq!((c.ifindex, c.name.as_str()), (3, "wwan0"));
        assert_eq!(c.addr.segments()[..4], [0x2001, 0xdb8, 0x77, 0]);
        assert_ne!(c.addr, "2001:db8:77::1234".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            c.addr,
            clat_addr("2001:db8:77::1".parse().unwrap(), "wwan0")
        );
        assert_eq!(c.pref64_bytes()[..4], [0, 0x64, 0xff, 0x9b]);
    }

    #[test]
    fn an_ipv4_default_route_means_no_clat() {
        let mut snap = ipv6_only();
        snap.default_routes.push(DefaultRouteState {
            oif: Some(2),
            pref_src: None,
            metric: 100,
        });
        assert_eq!(decide(&snap, Some(WELL_KNOWN)), None);
    }

    #[test]
    fn off_unselected_or_without_ipv6_means_no_clat() {
        assert_eq!(decide(&ipv6_only(), None), None);
        let snap = ipv6_only();
        let ext = external(&UplinkSelector::Named("eth0".into()), &snap, "cni0");
        assert_eq!(plan(&ext, &snap, Some(WELL_KNOWN)), None);
        let mut snap = ipv6_only();
        snap.addrs6.retain(|a| a.prefix_len == 128);
        assert_eq!(decide(&snap, Some(WELL_KNOWN)), None);
        let mut snap = ipv6_only();
        snap.default_routes6.clear();
        assert_eq!(decide(&snap, Some(WELL_KNOWN)), None);
    }

    #[test]
    fn the_clat_address_is_stable_and_per_uplink() {
        let a: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
        assert_eq!(clat_addr(a, "wwan0"), clat_addr(a, "wwan0"));
        assert_ne!(clat_addr(a, "wwan0"), clat_addr(a, "wwan1"));
        assert_eq!(clat_addr(a, "wwan0").octets()[8] & 0x02, 0);
    }
}
