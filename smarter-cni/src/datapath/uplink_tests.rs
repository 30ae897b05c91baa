//! The uplink decision over hand-made snapshots: no sockets, no root.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{External, Uplink, external, resolve};
use crate::cni::UplinkSelector;
use crate::netlink::snapshot::{Addr6State, AddrState, DefaultRouteState, LinkState, Snapshot};

const MAC0: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

fn link(index: u32, name: &str, mac: &[u8], up: bool) -> LinkState {
    LinkState {
        index,
        name: name.into(),
        mac: mac.to_vec(),
        up,
        l3: false,
        loopback: name == "lo",
        master: None,
        mtu: 1500,
    }
}

fn addr(index: u32, a: [u8; 4]) -> AddrState {
    AddrState {
        index,
        addr: Ipv4Addr::from(a),
        global: true,
        secondary: false,
    }
}

fn route(oif: u32, metric: u32) -> DefaultRouteState {
    DefaultRouteState {
        oif: Some(oif),
        pref_src: None,
        metric,
    }
}

/// lo, eth0 (2) with 198.51.100.2, wlan0 (3) with 203.0.113.9, default via eth0.
fn gateway() -> Snapshot {
    Snapshot {
        links: vec![
            link(1, "lo", &[0; 6], true),
            link(2, "eth0", &MAC0, true),
            link(3, "wlan0", &MAC1, true),
        ],
        addrs: vec![
            AddrState {
                global: false,
                ..addr(1, [127, 0, 0, 1])
            },
            addr(2, [198, 51, 100, 2]),
            addr(3, [203, 0, 113, 9]),
        ],
        default_routes: vec![route(2, 0)],
        ..Snapshot::default()
    }
}

fn info(ifindex: u32, name: &str, a: [u8; 4], mac: [u8; 6], up: bool) -> Uplink {
    Uplink {
        ifindex,
        name: name.into(),
        addr: Ipv4Addr::from(a),
        mac,
        up,
        l3: false,
        mtu: 1500,
        selected: true,
    }
}

#[test]
fn auto_follows_the_default_route() {
    let snap = gateway();
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap),
        Some(info(2, "eth0", [198, 51, 100, 2], MAC0, true))
    );
}

#[test]
fn auto_follows_the_default_route_when_it_moves() {
    let mut snap = gateway();
    snap.default_routes = vec![route(3, 0)];
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap),
        Some(info(3, "wlan0", [203, 0, 113, 9], MAC1, true))
    );
}

#[test]
fn auto_picks_the_lowest_metric() {
    let mut snap = gateway();
    snap.default_routes = vec![route(2, 600), route(3, 100)];
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.ifindex),
        Some(3)
    );
    snap.default_routes = vec![route(2, 100), route(3, 600)];
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.ifindex),
        Some(2)
    );
}

#[test]
fn no_default_route_means_no_auto_uplink() {
    let mut snap = gateway();
    snap.default_routes.clear();
    assert_eq!(resolve(&UplinkSelector::Auto, &snap), None);
    snap.default_routes = vec![DefaultRouteState {
        oif: None,
        pref_src: None,
        metric: 0,
    }];
    assert_eq!(resolve(&UplinkSelector::Auto, &snap), None);
}

#[test]
fn named_uplink_ignores_the_default_route() {
    let snap = gateway();
    assert_eq!(
        resolve(&UplinkSelector::Named("wlan0".into()), &snap),
        Some(info(3, "wlan0", [203, 0, 113, 9], MAC1, true))
    );
    let mut no_route = snap.clone();
    no_route.default_routes.clear();
    assert_eq!(
        resolve(&UplinkSelector::Named("wlan0".into()), &no_route).map(|u| u.ifindex),
        Some(3)
    );
    assert_eq!(resolve(&UplinkSelector::Named("wwan0".into()), &snap), None);
}

#[test]
fn address_changes_are_followed() {
    let mut snap = gateway();
    snap.addrs[1] = addr(2, [198, 51, 100, 77]);
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.addr),
        Some(Ipv4Addr::new(198, 51, 100, 77))
    );
    // Address gone (DHCP lease lost): nothing to masquerade to.
    snap.addrs.remove(1);
    assert_eq!(resolve(&UplinkSelector::Auto, &snap), None);
}

#[test]
fn link_scope_addresses_are_not_used() {
    let mut snap = gateway();
    snap.addrs[1] = AddrState {
        global: false,
        ..addr(2, [169, 254, 3, 4])
    };
    assert_eq!(resolve(&UplinkSelector::Auto, &snap), None);
}

#[test]
fn primaries_win_over_secondaries() {
    let mut snap = gateway();
    snap.addrs.insert(
        1,
        AddrState {
            secondary: true,
            ..addr(2, [198, 51, 100, 50])
        },
    );
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.addr),
        Some(Ipv4Addr::new(198, 51, 100, 2))
    );
}

#[test]
fn preferred_source_wins_when_it_is_on_the_link() {
    let mut snap = gateway();
    snap.addrs.push(addr(2, [198, 51, 100, 60]));
    snap.default_routes[0].pref_src = Some(Ipv4Addr::new(198, 51, 100, 60));
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.addr),
        Some(Ipv4Addr::new(198, 51, 100, 60))
    );
    // A src that is not on the uplink (stale route) is ignored.
    snap.default_routes[0].pref_src = Some(Ipv4Addr::new(10, 9, 9, 9));
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.addr),
        Some(Ipv4Addr::new(198, 51, 100, 2))
    );
}

#[test]
fn link_down_is_reported_not_hidden() {
    let mut snap = gateway();
    snap.links[1].up = false;
    assert_eq!(
        resolve(&UplinkSelector::Named("eth0".into()), &snap),
        Some(info(2, "eth0", [198, 51, 100, 2], MAC0, false))
    );
}

#[test]
fn devices_without_ethernet_address_get_a_zero_mac() {
    let mut snap = gateway();
    snap.links[1].mac.clear();
    assert_eq!(
        resolve(&UplinkSelector::Auto, &snap).map(|u| u.mac),
        Some([0; 6])
    );
}

#[test]
fn display_is_readable() {
    let u = info(2, "eth0", [198, 51, 100, 2], MAC0, true);
    assert_eq!(
        u.to_string(),
        "eth0 (ifindex 2, 198.51.100.2, mac 02:00:00:00:00:10, up)"
    );
}

/// `gateway()` plus the bridge (4) with its port (5), a LAN (6, 192.168.50.1) and a raw-IP
/// modem (7, no address yet).
fn edge() -> Snapshot {
    let mut snap = gateway();
    snap.links.push(link(4, "cni0", &MAC1, true));
    snap.links.push(LinkState {
        master: Some(4),
        ..link(5, "smv0123", &MAC0, true)
    });
    snap.links.push(link(6, "lan0", &MAC0, true));
    snap.links.push(LinkState {
        l3: true,
        mtu: 1428,
        ..link(7, "wwan0", &[], false)
    });
    snap.addrs.push(addr(4, [172, 39, 0, 1]));
    snap.addrs.push(addr(6, [192, 168, 50, 1]));
    snap
}

fn names(e: &External) -> Vec<(&str, Ipv4Addr)> {
    e.uplinks
        .iter()
        .filter(|u| u.selected)
        .map(|u| (u.name.as_str(), u.addr))
        .collect()
}

#[test]
fn auto_is_every_external_interface() {
    let e = external(&UplinkSelector::Auto, &edge(), "cni0");
    assert!(e.all);
    assert_eq!(
        names(&e),
        [
            ("eth0", Ipv4Addr::new(198, 51, 100, 2)),
            ("wlan0", Ipv4Addr::new(203, 0, 113, 9)),
            ("lan0", Ipv4Addr::new(192, 168, 50, 1)),
            ("wwan0", Ipv4Addr::UNSPECIFIED),
        ]
    );
    assert_eq!(e.preferred().map(|u| u.name.as_str()), Some("eth0"));
    let wwan = &e.uplinks[3];
    assert!(wwan.l3 && wwan.mtu == 1428 && wwan.mac == [0; 6]);
    // `mtu: auto` looks at the uplinks pods can leave by: wwan0 has no address yet.
    assert_eq!(e.smallest_mtu(), Some(1500));
    let mut modem_up = edge();
    modem_up.addrs.push(addr(7, [10, 64, 0, 2]));
    let with_modem = external(&UplinkSelector::Auto, &modem_up, "cni0");
    assert_eq!(with_modem.smallest_mtu(), Some(1428));
    // The gateway is a node address (a hostPort answers on it), loopback's is not global.
    assert!(e.node_addrs.contains(&(Ipv4Addr::new(172, 39, 0, 1), 4)));
    assert_eq!(e.node_addrs.len(), 4);
}

#[test]
fn a_list_or_a_name_restricts() {
    let list = UplinkSelector::List(vec!["wwan0".into(), "eth0".into(), "gone0".into()]);
    let e = external(&list, &edge(), "cni0");
    assert!(!e.all);
    assert_eq!(
        names(&e),
        [
            ("eth0", Ipv4Addr::new(198, 51, 100, 2)),
            ("wwan0", Ipv4Addr::UNSPECIFIED)
        ]
    );
    // The others stay external (backstop, node-local-only, hostPorts), not selected.
    assert_eq!(e.uplinks.len(), 4);
    let e = external(&UplinkSelector::Named("lan0".into()), &edge(), "cni0");
    assert_eq!(names(&e), [("lan0", Ipv4Addr::new(192, 168, 50, 1))]);
    // The default route is not through lan0: the named one is still the uplink.
    assert_eq!(e.preferred().map(|u| u.name.as_str()), Some("lan0"));
    assert_eq!(resolve(&list, &edge()).map(|u| u.ifindex), Some(2));
    let only_lan = UplinkSelector::List(vec!["lan0".into()]);
    assert_eq!(resolve(&only_lan, &edge()), None);
}

fn addr6(index: u32, a: &str) -> Addr6State {
    Addr6State {
        index,
        addr: a.parse().unwrap(),
        prefix_len: 64,
    }
}

#[test]
fn each_interface_gets_its_first_global_non_ula_ipv6_address() {
    let mut snap = edge();
    // eth0 (2): a ULA first, then two global ones; the bridge (4) holds the pods' gateway.
    snap.addrs6.push(addr6(2, "fd12::2"));
    snap.addrs6.push(addr6(2, "2001:db8:1::2"));
    snap.addrs6.push(addr6(2, "2001:db8:1::3"));
    snap.addrs6.push(addr6(4, "fd00:ac27::1"));
    // lan0 (6): only a ULA: pods' IPv6 cannot leave by it.
    snap.addrs6.push(addr6(6, "fd99::1"));
    let e = external(&UplinkSelector::Auto, &snap, "cni0");
    let eth0: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    assert_eq!(e.uplinks6, [(2, eth0)]);
    // Every global address is the node's, ULAs and the bridge's included.
    assert_eq!(e.node_addrs6.len(), 5);
    assert!(
        e.node_addrs6
            .contains(&("fd00:ac27::1".parse().unwrap(), 4))
    );
    assert!(e.node_addrs6.contains(&(eth0, 2)));
    // Without IPv6 addresses, nothing.
    let none = external(&UplinkSelector::Auto, &edge(), "cni0");
    assert!(none.uplinks6.is_empty() && none.node_addrs6.is_empty());
}
