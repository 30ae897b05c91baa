//! The IPv6-only uplink with a real NAT64 (tayga in the wan), without the plugin: the node,
//! with no IPv4 route off it, reaches the wan's IPv4 servers at `64:ff9b::<IPv4>`, and a path
//! MTU below the node's comes back as ICMPv6 "packet too big". Skips when not root or without
//! tayga.

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use smarter_testbed::nat64::{NAT64_POOL, TAYGA_IP6};
use smarter_testbed::{
    EchoServer, FAR_MTU, FAR_SERVER_IP, NODE_UPLINK_IP6, Netns, UPLINK, WAN_ROUTER_IP6,
    WAN_SERVER_IP, World, nat64_addr, require_root, skipped, spawn_in, tcp_roundtrip,
    udp_roundtrip,
};

const T: Duration = Duration::from_secs(5);

/// A world with the NAT64 (and the far namespace first when `far`), or `None` when the test
/// skips.
fn world(test: &str, far: bool) -> Option<World> {
    if !require_root(test) {
        return None;
    }
    let mut w = World::new(test).expect("world");
    if far {
        w.add_far().expect("add far");
    }
    match w.add_nat64() {
        Ok(()) => Some(w),
        Err(e) if e.to_string().contains("tayga not installed") => {
            skipped(&format!("SKIP {test}: {e}"));
            None
        }
        Err(e) => panic!("add_nat64: {e}"),
    }
}

fn text(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Counts, on the ingress of both ends of the uplink, the IPv4 (and ARP) and the IPv6 frames.
fn count_uplink_families(w: &World) {
    for (ns, dev) in [(w.node(), UPLINK), (w.wan(), "wan0")] {
        let rules = format!(
            "add table netdev audit {{ counter v4 {{}}; counter v6 {{}}; \
             chain in {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; \
             meta protocol {{ ip, arp }} counter name \"v4\"; \
             meta protocol ip6 counter name \"v6\"; }}; }}"
        );
        text(ns, &["nft", &rules]);
    }
}

/// The packets counted as `family` ("v4" or "v6") on the uplink's ends, node side first.
fn counted(w: &World, family: &str) -> [u64; 2] {
    [w.node(), w.wan()].map(|ns| {
        let out = text(ns, &["nft", "list", "counter", "netdev", "audit", family]);
        let mut words = out.split_whitespace();
        words.find(|x| *x == "packets");
        words.next().and_then(|n| n.parse().ok()).expect(&out)
    })
}

#[test]
fn the_node_reaches_ipv4_servers_through_the_nat64_only() {
    let Some(mut w) = world("nat64_basic", false) else {
        return;
    };
    assert!(w.has_nat64());
    assert!(w.add_nat64().is_err(), "a second NAT64 is refused");
    let node = w.node();
    // No IPv4 off the node: no address on the uplink, no route through it, no default.
    assert_eq!(text(node, &["ip", "-4", "addr", "show", "dev", UPLINK]), "");
    assert_eq!(text(node, &["ip", "-4", "route", "show"]), "");
    assert!(!node.succeeds(&["ip", "-4", "route", "get", &WAN_SERVER_IP.to_string()]));
    let route = text(node, &["ip", "-6", "route", "show", "default"]);
    assert!(
        route.contains(&format!("via {WAN_ROUTER_IP6} dev {UPLINK}")),
        "{route}"
    );
    assert!(
        w.wan()
            .succeeds(&["ping", "-c1", "-W2", &NODE_UPLINK_IP6.to_string()])
    );
    assert!(node.succeeds(&["ping", "-c1", "-W2", &TAYGA_IP6.to_string()]));
    let link = &w.external_links()[0];
    assert_eq!((link.node_if, link.node_ip), (UPLINK, None));
    assert_eq!(link.node_ip6, Some(NODE_UPLINK_IP6));

    count_uplink_families(&w);
    let to = |port| SocketAddr::from((nat64_addr(WAN_SERVER_IP), port));
    let tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 7001);
    tcp_roundtrip(node, to(7001), b"over the NAT64", T).expect("TCP echo");
    let udp = EchoServer::udp(w.wan(), WAN_SERVER_IP, 7002);
    udp_roundtrip(node, to(7002), b"a datagram", T).expect("UDP echo");
    // The IPv4 servers saw tayga's pool addresses as the client.
    for peer in tcp.seen().into_iter().chain(udp.seen()) {
        let SocketAddr::V4(peer) = peer else {
            panic!("an IPv6 peer {peer}");
        };
        assert_eq!(peer.ip().octets()[..3], NAT64_POOL.octets()[..3], "{peer}");
    }
    let [node_v4, wan_v4] = counted(&w, "v4");
    assert_eq!((node_v4, wan_v4), (0, 0), "IPv4 on the IPv6-only uplink");
    assert!(counted(&w, "v6").iter().all(|n| *n > 0));
    drop((tcp, udp));

    // A boot wires the uplink IPv6-only again; tayga runs on.
    w.reboot(smarter_testbed::BootId::New).expect("reboot");
    assert_eq!(text(w.node(), &["ip", "-4", "route", "show"]), "");
    let _tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 7003);
    tcp_roundtrip(w.node(), to(7003), b"after a boot", T).expect("TCP echo after a boot");
}

/// `mtu N` of `ip -6 route get <to>` in `ns`, when the route has one (a learnt path MTU).
fn route_mtu(ns: &Netns, to: Ipv6Addr) -> Option<u32> {
    mtu_of(&text(ns, &["ip", "-6", "route", "get", &to.to_string()]))
}

/// `mtu N` in the output of `ip route get`.
fn mtu_of(out: &str) -> Option<u32> {
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

#[test]
fn a_smaller_ipv4_path_mtu_comes_back_as_packet_too_big() {
    let Some(w) = world("nat64_ptb", true) else {
        return;
    };
    let far = nat64_addr(FAR_SERVER_IP);
    let node = w.node();
    count_uplink_families(&w);
    let _echo = EchoServer::udp(w.far().expect("far"), FAR_SERVER_IP, 7004);
    udp_roundtrip(node, SocketAddr::from((far, 7004)), b"small", T).expect("small UDP echo");
    assert_eq!(route_mtu(node, far), None, "no path MTU learnt yet");
    // 1400 bytes of UDP: 1448 as IPv6 (fits the uplink), 1428 as IPv4 with DF (tayga sets
    // it: IPv6 is never fragmented by routers), over the far link's 1280.
    // Sent until the node learnt a smaller path MTU (a datagram may be lost on a busy
    // machine); `ip` started by this thread runs in the node namespace too.
    let mtu = spawn_in(node, move || {
        let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind");
        s.connect((far, 7004)).expect("connect");
        let deadline = Instant::now() + T;
        loop {
            s.send(&[0x5a; 1400]).expect("send");
            std::thread::sleep(Duration::from_millis(100));
            let out = std::process::Command::new("ip")
                .args(["-6", "route", "get", &far.to_string()])
                .output()
                .expect("ip route get");
            let mtu = mtu_of(&String::from_utf8_lossy(&out.stdout));
            if mtu.is_some() || Instant::now() > deadline {
                break mtu;
            }
        }
    })
    .join()
    .expect("sender");
    // tayga's translation of "fragmentation needed, MTU 1280": 1280 + 20 (RFC 7915).
    assert_eq!(mtu, Some(FAR_MTU + 20), "the path MTU the node learnt");
    assert_eq!(
        route_mtu(node, far),
        Some(FAR_MTU + 20),
        "in the node's route cache"
    );
    let [node_v4, wan_v4] = counted(&w, "v4");
    assert_eq!((node_v4, wan_v4), (0, 0), "IPv4 on the IPv6-only uplink");
}

#[test]
fn tayga_goes_with_the_world_also_on_a_panic() {
    if !require_root("nat64_drop") {
        return;
    }
    let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    let Some(w) = world("nat64_drop", false) else {
        return;
    };
    let pid = w.tayga_pid().expect("tayga runs");
    let names = [w.node().name().to_owned(), w.wan().name().to_owned()];
    assert!(!gone(pid));
    drop(w);
    assert!(gone(pid), "tayga {pid} left");
    for n in names {
        assert!(
            !Path::new("/run/netns").join(&n).exists(),
            "namespace {n} left"
        );
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let w = world("nat64_panic", false).expect("world");
        tx.send((
            w.tayga_pid().expect("tayga runs"),
            w.wan().name().to_owned(),
        ))
        .unwrap();
        panic!("a test fails with a NAT64 world");
    })
    .join();
    assert!(panicked.is_err());
    let (pid, wan) = rx.recv().expect("the world was built");
    assert!(gone(pid), "tayga {pid} left after a panic");
    assert!(
        !Path::new("/run/netns").join(&wan).exists(),
        "namespace {wan} left"
    );
}
