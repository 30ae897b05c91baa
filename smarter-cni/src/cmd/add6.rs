//! The IPv6 half of ADD: whether the pod gets IPv6 ([`wants_v6`], from `ipv6` and the uplink
//! snapshot), the requested address's checks, the bridge's and the pod's addresses and route,
//! and the result's entries.

use std::net::{IpAddr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv6Network};

use super::Ctx;
use super::errors::IntoCni as _;
use crate::cni::config::Ipv6Mode;
use crate::cni::{CniError, IpConfig, NetConf, Route};
use crate::datapath::uplink::External;
use crate::netlink::snapshot::Snapshot;
use crate::netlink::{LinkInfo, Links};

/// Whether a selected external interface holds a global IPv6 address (outside `subnet6`, our
/// own): what `ipv6: auto` gives pods IPv6 for, as there is then an address to masquerade
/// their IPv6 to.
#[must_use]
pub(super) fn uplink_has_v6(external: &External, snap: &Snapshot, subnet6: Ipv6Network) -> bool {
    snap.addrs6.iter().any(|a| {
        !subnet6.contains(a.addr)
            && external
                .uplinks
                .iter()
                .any(|u| u.selected && u.ifindex == a.index)
    })
}

/// Whether this pod gets IPv6: never with `off`, always with `on`; with `auto` when the
/// uplink has IPv6 ([`uplink_has_v6`]) or the runtime asked for an IPv6 address.
#[must_use]
pub(super) fn wants_v6(mode: Ipv6Mode, uplink_v6: bool, requested: Option<Ipv6Addr>) -> bool {
    match mode {
        Ipv6Mode::Off => false,
        Ipv6Mode::On => true,
        Ipv6Mode::Auto => uplink_v6 || requested.is_some(),
    }
}

/// The IPv6 address the runtime asked for, checked before anything is done: inside
/// `subnet6`, and not with `ipv6: off`.
///
/// # Errors
/// Code 7 naming the address and why.
pub(super) fn requested_ip6(ctx: &Ctx) -> Result<Option<Ipv6Addr>, CniError> {
    let conf = &ctx.conf;
    let Some(ip) = conf.requested_ip6(&ctx.env.args) else {
        return Ok(None);
    };
    let why = if conf.ipv6 == Ipv6Mode::Off {
        format!("requested IPv6 address {ip} but the network has \"ipv6\": \"off\"")
    } else if !conf.subnet6.contains(ip) {
        format!(
            "requested IPv6 address {ip} is outside subnet6 {}",
            conf.subnet6
        )
    } else {
        return Ok(Some(ip));
    };
    Err(CniError::new(CniError::INVALID_CONFIG, why, "ips"))
}

/// The pod's IPv6 address with `subnet6`'s prefix.
pub(super) fn pod_net6(conf: &NetConf, ip: Ipv6Addr) -> Ipv6Network {
    Ipv6Network::new(ip, conf.subnet6.prefix()).expect("validated prefix")
}

/// The bridge's IPv6 address, the pods' gateway (`subnet6`'s `::1`, nodad); idempotent.
///
/// # Errors
/// Netlink (102).
pub(super) async fn ensure_bridge6(
    conf: &NetConf,
    node: &dyn Links,
    bridge: &LinkInfo,
) -> Result<(), CniError> {
    node.ensure_address6(bridge.index, &conf.bridge, pod_net6(conf, conf.gateway6()))
        .await
        .into_cni()
}

/// Inside the pod: the IPv6 address (nodad) on its interface.
///
/// # Errors
/// Netlink (102).
pub(super) async fn address_pod6(
    conf: &NetConf,
    pod: &dyn Links,
    link: &LinkInfo,
    ip: Ipv6Addr,
) -> Result<(), CniError> {
    pod.ensure_address6(link.index, &link.name, pod_net6(conf, ip))
        .await
        .into_cni()
}

/// Inside the pod, once its interface is up: `::/0 via gateway6`.
///
/// # Errors
/// Netlink (102).
pub(super) async fn route_pod6(
    conf: &NetConf,
    pod: &dyn Links,
    link: &LinkInfo,
) -> Result<(), CniError> {
    pod.ensure_default_route6(conf.gateway6(), link.index)
        .await
        .into_cni()
}

/// The result's IPv6 entries: the address on the pod's interface (index 1) with its gateway,
/// and the default route.
pub(super) fn result_entries(conf: &NetConf, ip: Ipv6Addr) -> (IpConfig, Route) {
    let gateway = IpAddr::V6(conf.gateway6());
    (
        IpConfig {
            address: IpNetwork::V6(pod_net6(conf, ip)),
            gateway: Some(gateway),
            interface: Some(1),
        },
        Route::new(
            IpNetwork::V6(Ipv6Network::new(Ipv6Addr::UNSPECIFIED, 0).expect("valid")),
            Some(gateway),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::uplink::Uplink;
    use crate::netlink::snapshot::Addr6State;

    fn uplink(ifindex: u32, selected: bool) -> Uplink {
        Uplink {
            ifindex,
            name: format!("eth{ifindex}"),
            addr: std::net::Ipv4Addr::UNSPECIFIED,
            mac: [0; 6],
            up: true,
            l3: false,
            mtu: 1500,
            selected,
        }
    }

    fn snap(addrs: &[(u32, &str)]) -> Snapshot {
        Snapshot {
            addrs6: addrs
                .iter()
                .map(|&(index, a)| Addr6State {
                    index,
                    addr: a.parse().unwrap(),
                    prefix_len: 64,
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn auto_follows_a_global_ipv6_on_a_selected_uplink() {
        let ext = External {
            uplinks: vec![uplink(2, true), uplink(3, false)],
            ..External::default()
        };
        let sub = crate::cni::config::DEFAULT_SUBNET6;
        assert!(uplink_has_v6(&ext, &snap(&[(2, "2001:db8:1::2")]), sub));
        // Not selected, not external (the bridge's index), or our own subnet: no.
        assert!(!uplink_has_v6(&ext, &snap(&[(3, "2001:db8:1::2")]), sub));
        assert!(!uplink_has_v6(&ext, &snap(&[(9, "2001:db8:1::2")]), sub));
        assert!(!uplink_has_v6(&ext, &snap(&[(2, "fd00:ac27::1")]), sub));
        assert!(!uplink_has_v6(&ext, &snap(&[]), sub));
    }

    #[test]
    fn the_mode_decides_and_a_request_turns_auto_on() {
        let want: Ipv6Addr = "fd00:ac27::9".parse().unwrap();
        assert!(!wants_v6(Ipv6Mode::Off, true, Some(want)));
        assert!(wants_v6(Ipv6Mode::On, false, None));
        assert!(wants_v6(Ipv6Mode::Auto, true, None));
        assert!(!wants_v6(Ipv6Mode::Auto, false, None));
        assert!(wants_v6(Ipv6Mode::Auto, false, Some(want)));
    }

    #[test]
    fn result_entries_are_the_64_and_the_default_route() {
        let conf = NetConf::default();
        let (ip, route) = result_entries(&conf, "fd00:ac27::5".parse().unwrap());
        assert_eq!(ip.address.to_string(), "fd00:ac27::5/64");
        assert_eq!(ip.gateway.unwrap().to_string(), "fd00:ac27::1");
        assert_eq!(ip.interface, Some(1));
        assert_eq!(route.dst.to_string(), "::/0");
        assert_eq!(route.gw, ip.gateway);
    }
}
