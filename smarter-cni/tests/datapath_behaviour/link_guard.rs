//! A pod must not configure the gateway or impersonate another pod (issue 23): router
//! advertisements, redirects, DHCPv6 server messages, spoofed neighbour advertisements and
//! frames of several ethertypes with another pod's MAC, sent from a pod through a raw socket,
//! change nothing on the node (which has IPv6 on its uplink) or in any other pod, the node's
//! traffic to the victim reaches only the victim, and the datapath counts every drop. A control
//! pair of plain namespaces proves the same router advertisement reconfigures a host that
//! listens.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smarter_common::link::link_local_of;
use smarter_testbed::packet::{
    ALL_NODES, BROADCAST, ETH_P_ARP, ETH_P_IP, Ipv4, Ipv6, arp, eth, eth_dst6, icmp4, icmp6,
    nd_body, nd_opt, ra_body, redirect_body, udp, udp6,
};
use smarter_testbed::{Netns, World, parse_mac};

use super::common::{add_ok, ping, result_ip, with_datapath, world};
use super::frames::{Capture, send};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
/// The prefix of the rogue router advertisements.
const BAD_PREFIX: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
/// The node's uplink IPv6 address (and the wan router's, `::1`).
const NODE_V6: &str = "2001:db8:1::2";
const WAN_V6: &str = "2001:db8:1::1";

/// No duplicate address detection in `ns`: addresses are never tentative, so the state the
/// test compares does not change on its own.
fn no_dad(ns: &Netns) {
    for key in ["all", "default"] {
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{key}.accept_dad=0"),
        ])
        .unwrap();
    }
}

/// Waits until no address in `ns` is tentative (those made before [`no_dad`] finish their
/// duplicate address detection), so the snapshots compare settled state.
fn settled(ns: &Netns) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(ns, &["ip", "-6", "addr"]).contains("tentative") {
        assert!(
            Instant::now() < deadline,
            "{}: addresses stay tentative",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod: its address, MAC and link-local address.
struct Pod {
    ip: Ipv4Addr,
    mac: [u8; 6],
    ll: [u8; 16],
}

fn pod_of(res: &Value) -> Pod {
    let text = res["interfaces"][1]["mac"].as_str().expect("pod MAC");
    let mac = parse_mac(text).expect("pod MAC");
    Pod {
        ip: result_ip(res),
        mac,
        ll: link_local_of(mac),
    }
}

fn text(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a rogue router or an impersonator would change: routes, addresses, neighbours (their
/// state word dropped: entries age on their own; not the uplink's), and on the node the
/// bridge's FDB.
fn snapshot(ns: &Netns, node: bool) -> Vec<String> {
    let mut out = vec![
        text(ns, &["ip", "-6", "route"]),
        text(ns, &["ip", "-6", "addr"]),
    ];
    // The uplink's neighbours are the wan's: its router's own neighbour discovery comes and
    // goes by itself (a slow guest sees its link-local address appear mid-test), and no frame
    // of a pod reaches the uplink's link.
    let uplink = format!("dev {} ", smarter_testbed::UPLINK);
    let mut neigh: Vec<String> = text(ns, &["ip", "-6", "neigh"])
        .lines()
        .filter(|l| !l.contains(&uplink))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| !w.chars().all(|c| c.is_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    neigh.sort();
    out.push(neigh.join("\n"));
    if node {
        let mut fdb: Vec<String> = text(ns, &["bridge", "fdb"])
            .lines()
            .map(str::to_owned)
            .collect();
        fdb.sort();
        out.push(fdb.join("\n"));
    }
    out
}

fn ll_text(ll: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(ll).to_string()
}

/// Every frame of the attack from `a` (MAC and link-local address) against `v`, with the
/// node's bridge link-local address `node_ll` and the bystander `b`; with the verdict class
/// each must be counted under: (RA guard, spoof, ethertype).
fn attack(a: &Pod, v: &Pod, b: &Pod, node_ll: [u8; 16]) -> (Vec<Vec<u8>>, [usize; 3]) {
    let icmp = |src, dst, kind, body: &[u8], smac| {
        let m = icmp6(src, dst, kind, body);
        Ipv6::new(src, dst, 58).frame(eth_dst6(dst, v.mac), smac, &m)
    };
    let na_body = |target, mac| nd_body(0x20, target, &nd_opt(2, mac));
    let rogue_ra = ra_body(BAD_PREFIX, Some(a.mac));
    let ra = icmp(a.ll, ALL_NODES, 134, &rogue_ra, a.mac);
    let mut ra_hbh = vec![58, 0, 1, 4, 0, 0, 0, 0];
    ra_hbh.extend_from_slice(&icmp6(a.ll, ALL_NODES, 134, &rogue_ra));
    let ra_hbh = Ipv6::new(a.ll, ALL_NODES, 0).frame(eth_dst6(ALL_NODES, v.mac), a.mac, &ra_hbh);
    let wan: [u8; 16] = WAN_V6.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dhcp = udp6(a.ll, v.ll, 547, 546, &[7, 0, 0, 1]);
    let dns = udp(4000, 53, b"dns?");
    let about = Ipv4::new(v.ip, Ipv4Addr::new(203, 0, 113, 1), 17).packet(&dns);
    let redirect4 = |to: Ipv4Addr, l2: [u8; 6]| {
        // A host redirect (code 1): use `a.ip` for the datagram `about` (its header and 8 bytes).
        let m = icmp4(5, 1, a.ip.octets(), &about[..28]);
        Ipv4::new(a.ip, to, 1).frame(l2, a.mac, &m)
    };
    let guard = vec![
        ra.clone(),
        ra.clone(),
        ra,
        ra_hbh,
        icmp(a.ll, v.ll, 137, &redirect_body(a.ll, wan, a.mac), a.mac),
        icmp(a.ll, node_ll, 137, &redirect_body(a.ll, wan, a.mac), a.mac),
        Ipv6::new(a.ll, v.ll, 17).frame(v.mac, a.mac, &dhcp),
        redirect4(GATEWAY, BROADCAST),
        redirect4(b.ip, b.mac),
    ];
    let spoof = vec![
        // The victim's address at the attacker's MAC, said by the attacker, then as the victim.
        icmp(a.ll, ALL_NODES, 136, &na_body(v.ll, a.mac), a.mac),
        icmp(v.ll, ALL_NODES, 136, &na_body(v.ll, a.mac), a.mac),
        // The node's link-local address at the attacker's MAC.
        icmp(a.ll, ALL_NODES, 136, &na_body(node_ll, a.mac), a.mac),
        // Its own address, but at the victim's MAC.
        icmp(a.ll, ALL_NODES, 136, &na_body(a.ll, v.mac), a.mac),
        // Frames with the victim's MAC: IPv6, IPv4, ARP.
        icmp(a.ll, ALL_NODES, 136, &na_body(a.ll, a.mac), v.mac),
        Ipv4::new(a.ip, GATEWAY, 17).frame(BROADCAST, v.mac, &udp(9, 9, b"x")),
        eth(
            BROADCAST,
            v.mac,
            ETH_P_ARP,
            &arp(2, a.mac, a.ip, BROADCAST, GATEWAY),
        ),
    ];
    let mut vlan = vec![0, 10];
    vlan.extend_from_slice(&ETH_P_IP.to_be_bytes());
    vlan.extend_from_slice(&Ipv4::new(a.ip, GATEWAY, 17).packet(&udp(9, 9, b"x")));
    let mut ethertypes: Vec<Vec<u8>> = (0..5)
        .map(|_| eth(BROADCAST, v.mac, 0x88b5, &[0x5a; 46]))
        .collect();
    // LLDP's ethertype, broadcast (to its own group, 01:80:c2:00:00:0e, the bridge hands a
    // frame to the port's own stack only: never forwarded, and unseen by nftables).
    ethertypes.push(eth(BROADCAST, v.mac, 0x88cc, &[0; 46]));
    ethertypes.push(eth(BROADCAST, v.mac, 0x8100, &vlan));
    let counts = [guard.len(), spoof.len(), ethertypes.len()];
    ([guard, spoof, ethertypes].concat(), counts)
}

/// Drops counted by the datapath: (RA guard, spoof, ethertype).
fn drops(w: &World, dp: &str) -> [u64; 3] {
    let spoof: &[&str] = if dp == "ebpf" {
        &["drop_spoof"]
    } else {
        &[
            "drop_spoof_ip",
            "drop_spoof_arp",
            "drop_spoof_l2",
            "drop_spoof_ip6",
        ]
    };
    with_datapath(w, dp, |d| {
        let all = d.counters().expect("counters");
        let n = |names: &[&str]| -> u64 {
            all.iter()
                .filter(|c| names.contains(&c.0.as_str()))
                .map(|c| c.1)
                .sum()
        };
        [n(&["drop_ra_guard"]), n(spoof), n(&["drop_ethertype"])]
    })
    .unwrap_or_else(|e| panic!("{dp}: open the datapath: {e}"))
    .unwrap_or_else(|| panic!("{dp}: the datapath has no state"))
}

/// The same router advertisement on a plain veth between two namespaces: the receiver takes a
/// default route and an address from it (the frames are what a rogue router sends).
fn control(w: &mut World) {
    w.add_pod_ns("ctl_a").unwrap();
    w.add_pod_ns("ctl_b").unwrap();
    let (a, b) = (w.pod("ctl_a").unwrap(), w.pod("ctl_b").unwrap());
    no_dad(b);
    let bname = b.name().to_owned();
    a.exec(&[
        "ip", "link", "add", "ca", "type", "veth", "peer", "name", "cb", "netns", &bname,
    ])
    .unwrap();
    a.exec(&["ip", "link", "set", "ca", "up"]).unwrap();
    b.exec(&["ip", "link", "set", "cb", "up"]).unwrap();
    let mac = a.mac("ca").expect("MAC of ca");
    let ll = link_local_of(mac);
    let ra = icmp6(ll, ALL_NODES, 134, &ra_body(BAD_PREFIX, Some(mac)));
    let deadline = Instant::now() + Duration::from_secs(10);
    // The receiver listens once its link is ready (it then has its link-local address).
    while !text(b, &["ip", "-6", "addr", "show", "dev", "cb"]).contains("scope link") {
        assert!(Instant::now() < deadline, "control: cb never got IPv6");
        std::thread::sleep(Duration::from_millis(50));
    }
    let frame = Ipv6::new(ll, ALL_NODES, 58).frame(eth_dst6(ALL_NODES, mac), mac, &ra);
    send(a, "ca", &[frame]);
    loop {
        let (route, addr) = (
            text(b, &["ip", "-6", "route"]),
            text(b, &["ip", "-6", "addr"]),
        );
        if route.contains("default via fe80") && addr.contains("2001:db8:bad:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "control: the router advertisement must reconfigure a host that listens:\n{route}{addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The case on one datapath.
pub fn pods_cannot_configure_the_node_or_impersonate(dp: &str) {
    let Some(mut w) = world("behaviour_link_guard") else {
        return;
    };
    control(&mut w);
    no_dad(w.node());
    no_dad(w.wan());
    w.wan()
        .exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{WAN_V6}/64"),
            "dev",
            "wan0",
            "nodad",
        ])
        .unwrap();
    w.node()
        .exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{NODE_V6}/64"),
            "dev",
            "uplink0",
            "nodad",
        ])
        .unwrap();
    w.node()
        .exec(&[
            "ip", "-6", "route", "add", "default", "via", WAN_V6, "dev", "uplink0",
        ])
        .unwrap();
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    let mut pods = Vec::new();
    for name in ["attacker", "victim", "bystander"] {
        let ns = w.add_pod_ns(name).unwrap().path().to_path_buf();
        no_dad(w.pod(name).unwrap());
        pods.push(pod_of(&add_ok(&w, &conf, name, &ns)));
    }
    let (a, v, b) = (&pods[0], &pods[1], &pods[2]);
    let (an, vn, bn) = (
        w.pod("attacker").unwrap(),
        w.pod("victim").unwrap(),
        w.pod("bystander").unwrap(),
    );
    let node = w.node();
    // The link-local one only: the bridge also holds the pods' IPv6 gateway (`subnet6`'s ::1)
    // whenever `ipv6` is not off, listed first.
    let bridge_addr = text(
        node,
        &[
            "ip",
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            "smartnet0",
            "scope",
            "link",
        ],
    );
    let node_ll: std::net::Ipv6Addr = bridge_addr
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("the bridge's link-local address");
    // Link-local IPv6 works through the datapath (neighbour discovery included), and leaves
    // neighbour entries an impersonator would want to overwrite.
    let victim_ll = ll_text(v.ll);
    assert!(
        node.succeeds(&[
            "ping",
            "-6",
            "-c1",
            "-W2",
            &format!("{victim_ll}%smartnet0")
        ]),
        "{dp}: node → victim link-local"
    );
    assert!(
        bn.succeeds(&["ping", "-6", "-c1", "-W2", &format!("{victim_ll}%eth0")]),
        "{dp}: bystander → victim link-local"
    );
    assert!(
        vn.succeeds(&["ping", "-6", "-c1", "-W2", &format!("{node_ll}%eth0")]),
        "{dp}: victim → node link-local"
    );
    assert!(
        node.succeeds(&["ping", "-6", "-c1", "-W2", WAN_V6]),
        "{dp}: node → wan over IPv6"
    );
    assert!(
        ping(node, v.ip) && ping(bn, v.ip),
        "{dp}: IPv4 to the victim"
    );
    for ns in [node, vn, bn] {
        settled(ns);
    }
    let before: Vec<Vec<String>> = vec![
        snapshot(node, true),
        snapshot(vn, false),
        snapshot(bn, false),
    ];
    let counted = drops(&w, dp);

    let capture = Capture::start(an, v.ip);
    let (frames, expected) = attack(a, v, b, node_ll.octets());
    send(an, "eth0", &frames);
    // The node's traffic to the victim reaches the victim, and only it.
    assert!(
        node.succeeds(&["ping", "-c3", "-i0.2", "-W2", &v.ip.to_string()]),
        "{dp}: node → victim after the attack"
    );
    assert!(ping(bn, v.ip), "{dp}: bystander → victim after the attack");
    assert_eq!(
        capture.stop(),
        0,
        "{dp}: frames to the victim reached the attacker"
    );

    let after = vec![
        snapshot(node, true),
        snapshot(vn, false),
        snapshot(bn, false),
    ];
    for (who, (b4, now)) in ["node", "victim", "bystander"]
        .iter()
        .zip(before.iter().zip(&after))
    {
        for (what, (x, y)) in ["ip -6 route", "ip -6 addr", "ip -6 neigh", "bridge fdb"]
            .iter()
            .zip(b4.iter().zip(now))
        {
            assert_eq!(x, y, "{dp}: {who}'s {what} changed");
        }
    }
    let now = drops(&w, dp);
    let got: Vec<u64> = now.iter().zip(counted).map(|(n, c)| n - c).collect();
    assert_eq!(
        got,
        expected.map(|e| e as u64),
        "{dp}: drops counted as (RA guard, spoof, ethertype)"
    );
}
