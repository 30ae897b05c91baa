//! The uplink decision over hand-made snapshots: no sockets, no root.

use std::net::Ipv4Addr;

use super::{Uplink, resolve};
use crate::cni::UplinkSelector;
use crate::netlink::snapshot::{AddrState, DefaultRouteState, LinkState, Snapshot};

const MAC0: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

fn link(index: u32, name: &str, mac: &[u8], up: bool) -> LinkState {
    LinkState {
        index,
        name: name.into(),
        mac: mac.to_vec(),
        up,
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
    }
}

fn info(ifindex: u32, name: &str, a: [u8; 4], mac: [u8; 6], up: bool) -> Uplink {
    Uplink {
        ifindex,
        name: name.into(),
        addr: Ipv4Addr::from(a),
        mac,
        up,
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
