//! The gateway topologies of a world: a LAN with a sensor, a backup uplink with fail-over, a
//! layer-3 (TUN) uplink, and the list of external interfaces. Each builds its own world (all
//! namespaces, removed on drop); skips when not root.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering;

use smarter_testbed::{
    L3_UPLINK, LAN_HOST_IP, LAN_IF, LAN_NODE_IP, NODE_BACKUP_IP, NODE_L3_IP, NODE_UPLINK_IP, Netns,
    UPLINK, UPLINK_BACKUP, WAN_L3_IP, WAN_SERVER_IP, World, require_root, skipped,
};

fn world(test: &str) -> Option<World> {
    require_root(test).then(|| World::new(test).expect("world"))
}

/// `ip route get <to>` in `ns`: the output device and the source address.
fn route_get(ns: &Netns, to: Ipv4Addr) -> Option<(String, String)> {
    let out = ns.exec(&["ip", "route", "get", &to.to_string()]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let word_after = |key: &str| {
        let mut words = text.split_whitespace();
        words.find(|w| *w == key)?;
        words.next().map(str::to_owned)
    };
    Some((word_after("dev")?, word_after("src")?))
}

fn assert_route(ns: &Netns, to: Ipv4Addr, dev: &str, src: Ipv4Addr) {
    assert_eq!(
        route_get(ns, to),
        Some((dev.to_owned(), src.to_string())),
        "ip route get {to} in {}",
        ns.name()
    );
}

#[test]
fn lan_sensor_reaches_the_node_and_routes_pods_to_it() {
    let Some(mut w) = world("topo_lan") else {
        return;
    };
    w.add_lan().expect("add LAN");
    let lan = w.lan().expect("the LAN");
    assert!(w.node().ping(LAN_HOST_IP), "node → sensor");
    assert!(lan.ping(LAN_NODE_IP), "sensor → node");
    assert_route(lan, "172.39.0.7".parse().unwrap(), "eth0", LAN_HOST_IP);
    assert_eq!(
        route_get(lan, WAN_SERVER_IP),
        None,
        "the sensor has no default route"
    );
    assert_route(w.node(), LAN_HOST_IP, LAN_IF, LAN_NODE_IP);
    // The primary uplink keeps the default route.
    assert_route(w.node(), WAN_SERVER_IP, UPLINK, NODE_UPLINK_IP);
    assert!(w.add_lan().is_err(), "a second LAN is refused");
}

#[test]
fn backup_uplink_takes_over_and_gives_back() {
    let Some(mut w) = world("topo_failover") else {
        return;
    };
    w.add_backup_uplink().expect("add backup uplink");
    let node = w.node();
    assert_route(node, WAN_SERVER_IP, UPLINK, NODE_UPLINK_IP);
    for round in 0..2 {
        w.fail_over().expect("fail over");
        assert_route(node, WAN_SERVER_IP, UPLINK_BACKUP, NODE_BACKUP_IP);
        assert!(
            node.ping(WAN_SERVER_IP),
            "round {round}: wan via the backup"
        );
        w.fail_back().expect("fail back");
        assert_route(node, WAN_SERVER_IP, UPLINK, NODE_UPLINK_IP);
        assert!(node.ping(WAN_SERVER_IP), "round {round}: wan via uplink0");
    }
    // Both defaults are there, the primary one preferred.
    let out = node.exec(&["ip", "route", "show", "default"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "two default routes: {text}");
    assert!(text.contains("metric 200"), "{text}");
}

/// Whether this machine can make TUN devices (else the layer-3 tests skip): opening the clone
/// device creates nothing and fails where the kernel has no tun driver.
fn have_tun(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => true,
        Err(e) => {
            skipped(&format!(
                "SKIP {test}: no TUN devices here (/dev/net/tun: {e})"
            ));
            false
        }
    }
}

#[test]
fn l3_uplink_relays_raw_ip_both_ways() {
    if !have_tun("topo_l3") {
        return;
    }
    let Some(mut w) = world("topo_l3") else {
        return;
    };
    w.add_l3_uplink(1428).expect("add layer-3 uplink");
    let node = w.node();
    let link = node.exec(&["ip", "-d", "link", "show", L3_UPLINK]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    assert!(link.contains("link/none"), "no Ethernet header: {link}");
    assert!(link.contains("mtu 1428"), "{link}");
    assert!(link.contains("tun type tun"), "{link}");
    assert_route(node, WAN_SERVER_IP, L3_UPLINK, NODE_L3_IP);
    assert!(node.ping(WAN_L3_IP), "node → its peer over the relay");
    assert!(node.ping(WAN_SERVER_IP), "node → wan server over the relay");
    assert!(w.wan().ping(NODE_L3_IP), "wan → node over the relay");
    // The MTU holds: 1400 bytes of ICMP payload fit in 1428, 1450 do not (DF set).
    let big = |size: &str| {
        node.succeeds(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            size,
            &WAN_L3_IP.to_string(),
        ])
    };
    assert!(big("1400"), "1428-byte packets cross");
    assert!(!big("1450"), "packets over the MTU are refused with DF");
    // uplink0 stays, with its address, as a non-default external interface.
    assert_route(
        node,
        "198.51.100.1".parse().unwrap(),
        UPLINK,
        NODE_UPLINK_IP,
    );
    let relay = w.l3_relay().expect("a relay");
    assert!(relay.counts().a_to_b.load(Ordering::Relaxed) >= 4);
    assert!(relay.counts().b_to_a.load(Ordering::Relaxed) >= 4);
}

#[test]
fn external_links_name_the_far_side_of_every_interface() {
    if !have_tun("topo_external_links") {
        return;
    }
    let Some(mut w) = world("topo_external_links") else {
        return;
    };
    let names = |w: &World| -> Vec<(String, String, String)> {
        w.external_links()
            .iter()
            .map(|l| {
                (
                    l.node_if.to_owned(),
                    l.far_ns.name().rsplit('-').next().unwrap().to_owned(),
                    l.far_if.to_owned(),
                )
            })
            .collect()
    };
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(names(&w), vec![s("uplink0", "wan", "wan0")]);
    w.add_lan().unwrap();
    w.add_backup_uplink().unwrap();
    w.add_l3_uplink(1428).unwrap();
    assert_eq!(
        names(&w),
        vec![
            s("uplink0", "wan", "wan0"),
            s("uplink1", "wan", "wan2"),
            s("wwan0", "wan", "tun1"),
            s("lan0", "lan", "eth0"),
        ]
    );
    let l3: Vec<bool> = w.external_links().iter().map(|l| l.layer3).collect();
    assert_eq!(l3, [false, false, true, false]);
    // Every far side answers a ping to the node's address on that link.
    for l in w.external_links() {
        let ip = l.node_ip.expect("every link has IPv4 without a NAT64");
        assert_eq!(l.node_ip6, None);
        assert!(l.far_ns.ping(ip), "{} → {ip}", l.far_if);
    }
}

#[test]
fn reboot_wires_every_topology_again() {
    if !have_tun("topo_reboot") {
        return;
    }
    let Some(mut w) = world("topo_reboot") else {
        return;
    };
    w.add_lan().unwrap();
    w.add_backup_uplink().unwrap();
    w.add_l3_uplink(1428).unwrap();
    w.reboot(smarter_testbed::BootId::New).expect("reboot");
    let node = w.node();
    assert_route(node, WAN_SERVER_IP, L3_UPLINK, NODE_L3_IP);
    assert!(node.ping(WAN_SERVER_IP), "via the new relay");
    assert!(node.ping(LAN_HOST_IP), "the LAN is back");
    assert!(w.wan().ping(NODE_BACKUP_IP), "the backup uplink is back");
}

#[test]
fn dropping_a_world_removes_its_topology() {
    if !have_tun("topo_drop") {
        return;
    }
    let Some(mut w) = world("topo_drop") else {
        return;
    };
    w.add_lan().unwrap();
    w.add_l3_uplink(1400).unwrap();
    let names: Vec<String> = [w.node(), w.wan(), w.lan().unwrap()]
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    drop(w);
    for n in names {
        assert!(
            !Path::new("/run/netns").join(&n).exists(),
            "namespace {n} left"
        );
    }
}
