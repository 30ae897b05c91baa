//! Issue 25 in the nftables datapath: a `hostIP` mapping answers only on its address, pod
//! traffic is counted per pod and external interface, and with `uplink: auto` a LAN interface
//! is an uplink like any other (masquerade to the node's LAN address, node-local-only,
//! hostPorts on the LAN address).

use std::net::{IpAddr, Ipv4Addr};

use smarter_cni::datapath::nftables::{NftablesDatapath, NftablesError};
use smarter_cni::datapath::{HostPortSpec, PodTraffic, TrafficDir};
use smarter_testbed::{EchoServer, NODE_UPLINK_IP, WAN_ROUTER_IP, WAN_SERVER_IP, udp_roundtrip};

use crate::world::nft::{
    NODE_LAN_IP, NftWorld, SENSOR_IP, T, can_run, config, endpoint, sa, tcp_ok,
};

fn tcp(host_port: u16, container_port: u16, host_ip: Option<Ipv4Addr>) -> HostPortSpec {
    HostPortSpec {
        host_port,
        container_port,
        protocol: 6,
        host_ip,
    }
}

/// The IPv4 addresses an echo server saw.
fn peers(server: &EchoServer) -> Vec<Ipv4Addr> {
    server
        .seen()
        .iter()
        .map(|p| match p.ip() {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => panic!("IPv6 peer {a}"),
        })
        .collect()
}

#[test]
fn host_ip_answers_only_on_its_address() {
    if !can_run("host_ip_answers_only_on_its_address") {
        return;
    }
    let mut nw = NftWorld::new("nft-hostip");
    nw.add_lan();
    let (node, wan, lan) = (nw.node(), nw.w.wan(), nw.lan());
    let dp = nw.ensure(&config(&[], &[]));
    let (ip2, ip3) = (endpoint(2).ip, endpoint(3).ip);
    let on_lan = tcp(8081, 80, Some(NODE_LAN_IP));
    node.run(|| {
        dp.attach_endpoint(&endpoint(2), &[on_lan])?;
        dp.attach_endpoint(&endpoint(3), &[])
    })
    .expect("attach");
    assert_eq!(
        node.run(|| dp.host_ports()).expect("host ports"),
        vec![(on_lan, ip2)],
        "host_ports reports the hostIP"
    );
    let server2 = EchoServer::tcp(nw.pod(2), Ipv4Addr::UNSPECIFIED, 80);
    let server3 = EchoServer::tcp(nw.pod(3), Ipv4Addr::UNSPECIFIED, 80);

    // On its address from the LAN, from the node itself and hairpinned from a pod...
    tcp_ok(lan, sa(NODE_LAN_IP, 8081)).expect("hostIP mapping from the LAN");
    tcp_ok(node, sa(NODE_LAN_IP, 8081)).expect("hostIP mapping from the node");
    tcp_ok(nw.pod(3), sa(NODE_LAN_IP, 8081)).expect("hostIP mapping hairpinned");
    assert_eq!(peers(&server2).len(), 3);
    // ...and not on another node address, from outside or from the node.
    assert!(tcp_ok(wan, sa(NODE_UPLINK_IP, 8081)).is_err());
    assert!(tcp_ok(node, sa(NODE_UPLINK_IP, 8081)).is_err());
    assert_eq!(peers(&server2).len(), 3, "nothing more reached the pod");

    // The port on another address is free for another pod; on every address it is not.
    let on_wan = tcp(8081, 80, Some(NODE_UPLINK_IP));
    let taken = node.run(|| dp.attach_endpoint(&endpoint(3), &[tcp(8081, 80, None)]));
    assert!(
        matches!(&taken, Err(NftablesError::HostPortTaken { port: 8081, owner, .. }) if owner == "172.39.0.2:80"),
        "{taken:?}"
    );
    node.run(|| dp.attach_endpoint(&endpoint(3), &[on_wan]))
        .expect("the same port on another address");
    tcp_ok(wan, sa(NODE_UPLINK_IP, 8081)).expect("pod3's mapping from the wan");
    assert_eq!(peers(&server3), vec![WAN_ROUTER_IP]);
    tcp_ok(lan, sa(NODE_LAN_IP, 8081)).expect("pod2's mapping still");
    assert_eq!(peers(&server2).len(), 4);

    // Detach removes the pod's address-keyed element; a new attach moves pod3's mapping to
    // every address (the old element goes in the same batch).
    node.run(|| dp.detach_endpoint(ip2, &endpoint(2).host_ifname))
        .expect("detach");
    assert!(
        tcp_ok(lan, sa(NODE_LAN_IP, 8081)).is_err(),
        "gone with pod2"
    );
    let any = tcp(8081, 80, None);
    node.run(|| dp.attach_endpoint(&endpoint(3), &[any]))
        .expect("re-attach on every address");
    assert_eq!(
        node.run(|| dp.host_ports()).expect("host ports"),
        vec![(any, ip3)]
    );
    tcp_ok(lan, sa(NODE_LAN_IP, 8081)).expect("every address: the LAN one");
    assert_eq!(peers(&server3).len(), 2);
    node.run(|| NftablesDatapath::remove("smartnet"))
        .expect("remove");
}

/// The entry of `pod` through `ifname` in `dir`.
fn entry<'a>(
    all: &'a [PodTraffic],
    pod: Ipv4Addr,
    ifname: &str,
    dir: TrafficDir,
) -> Option<&'a PodTraffic> {
    all.iter()
        .find(|t| t.pod == pod && t.ifname.as_deref() == Some(ifname) && t.dir == dir)
}

#[test]
fn pod_traffic_is_counted_per_interface() {
    if !can_run("pod_traffic_is_counted_per_interface") {
        return;
    }
    let mut nw = NftWorld::new("nft-traffic");
    nw.add_lan();
    let (node, wan, lan) = (nw.node(), nw.w.wan(), nw.lan());
    let dp = nw.ensure(&config(&[], &[]));
    let (ip2, ip3) = (endpoint(2).ip, endpoint(3).ip);
    node.run(|| {
        dp.attach_endpoint(&endpoint(2), &[])?;
        dp.attach_endpoint(&endpoint(3), &[tcp(8080, 80, None)])
    })
    .expect("attach");
    assert!(node.run(|| dp.pod_traffic()).expect("traffic").is_empty());

    // pod2: N datagrams of 1000 bytes to the wan and back, one to the LAN and back.
    static PAYLOAD: [u8; 1000] = [0x5a; 1000];
    const N: u64 = 5;
    let _wan_echo = EchoServer::udp(wan, WAN_SERVER_IP, 7001);
    let _lan_echo = EchoServer::udp(lan, SENSOR_IP, 7001);
    for _ in 0..N {
        udp_roundtrip(nw.pod(2), sa(WAN_SERVER_IP, 7001), &PAYLOAD, T).expect("pod → wan");
    }
    udp_roundtrip(nw.pod(2), sa(SENSOR_IP, 7001), &PAYLOAD, T).expect("pod → LAN");
    // pod3: a hostPort connection from the wan (counted in, and its replies out).
    let _web = EchoServer::tcp(nw.pod(3), Ipv4Addr::UNSPECIFIED, 80);
    tcp_ok(wan, sa(NODE_UPLINK_IP, 8080)).expect("hostPort from the wan");

    let (all, uplink_index) = node.run(|| {
        (
            dp.pod_traffic().expect("traffic"),
            nix::net::if_::if_nametoindex("uplink0").expect("uplink0"),
        )
    });
    let ip_len = PAYLOAD.len() as u64 + 28;
    for dir in [TrafficDir::Out, TrafficDir::In] {
        let t = entry(&all, ip2, "uplink0", dir).unwrap_or_else(|| panic!("{dir:?}: {all:?}"));
        assert_eq!(t.ifindex, uplink_index);
        assert!(t.packets >= N && t.bytes >= N * ip_len, "{t:?}");
        let t = entry(&all, ip2, "lan0", dir).unwrap_or_else(|| panic!("{dir:?}: {all:?}"));
        assert!(t.packets >= 1 && t.bytes >= ip_len, "{t:?}");
        let t = entry(&all, ip3, "uplink0", dir).unwrap_or_else(|| panic!("{dir:?}: {all:?}"));
        assert!(t.packets >= 2, "a handshake each way at least: {t:?}");
    }
    assert!(
        entry(&all, ip3, "lan0", TrafficDir::Out).is_none(),
        "pod3 sent nothing to the LAN: {all:?}"
    );
    let mut sorted = all.clone();
    sorted.sort_by_key(|t| (t.pod, t.ifindex, t.dir));
    assert_eq!(all, sorted, "sorted by pod, interface, direction");

    // Attaching again keeps counting; detach takes the pod's entries and only those.
    let again = node
        .run(|| {
            dp.attach_endpoint(&endpoint(2), &[])?;
            dp.pod_traffic()
        })
        .expect("attach again");
    let of_pod2 = |v: &[PodTraffic]| -> Vec<PodTraffic> {
        v.iter().filter(|t| t.pod == ip2).cloned().collect()
    };
    assert_eq!(of_pod2(&again), of_pod2(&all));
    let after = node
        .run(|| {
            dp.detach_endpoint(ip2, &endpoint(2).host_ifname)?;
            dp.pod_traffic()
        })
        .expect("detach");
    assert!(after.iter().all(|t| t.pod == ip3), "{after:?}");
    assert_eq!(after.len(), 2, "pod3's entries stay: {after:?}");

    // A leftover of the address (a late packet after the detach) goes with the next holder.
    node.exec(&[
        "nft",
        "add element inet smarter_smartnet traffic_in { 172.39.0.2 . \"uplink0\" }",
    ])
    .expect("a leftover element");
    let fresh = node
        .run(|| {
            dp.attach_endpoint(&endpoint(2), &[])?;
            dp.pod_traffic()
        })
        .expect("attach a new holder");
    assert!(of_pod2(&fresh).is_empty(), "{fresh:?}");
    node.run(|| NftablesDatapath::remove("smartnet"))
        .expect("remove");
}

#[test]
fn auto_uplink_makes_the_lan_an_uplink() {
    if !can_run("auto_uplink_makes_the_lan_an_uplink") {
        return;
    }
    let mut nw = NftWorld::new("nft-lan");
    nw.add_lan();
    let (node, wan, lan) = (nw.node(), nw.w.wan(), nw.lan());
    let dp = nw.ensure(&config(&[], &[]));
    let ip2 = endpoint(2).ip;
    node.run(|| dp.attach_endpoint(&endpoint(2), &[tcp(1883, 1883, None)]))
        .expect("attach");
    let broker = EchoServer::tcp(nw.pod(2), Ipv4Addr::UNSPECIFIED, 1883);

    // pod → LAN host: masqueraded to the node's LAN address; pod → wan: to the uplink's.
    let sensor = EchoServer::tcp(lan, SENSOR_IP, 7002);
    tcp_ok(nw.pod(2), sa(SENSOR_IP, 7002)).expect("pod → LAN");
    assert_eq!(peers(&sensor), vec![NODE_LAN_IP]);
    let server = EchoServer::tcp(wan, WAN_SERVER_IP, 7002);
    tcp_ok(nw.pod(2), sa(WAN_SERVER_IP, 7002)).expect("pod → wan");
    assert_eq!(peers(&server), vec![NODE_UPLINK_IP]);

    // Unsolicited LAN → pod address: dropped (node-local-only), counted.
    let before = nw.counter(&dp, "drop_nodelocal");
    assert!(!lan.ping(ip2), "LAN must not reach a pod address");
    assert!(tcp_ok(lan, sa(ip2, 1883)).is_err());
    assert!(nw.counter(&dp, "drop_nodelocal") > before);
    assert!(peers(&broker).is_empty());

    // The hostPort on the node's LAN address, from the LAN: the pod sees the sensor.
    tcp_ok(lan, sa(NODE_LAN_IP, 1883)).expect("hostPort from the LAN");
    assert_eq!(peers(&broker), vec![SENSOR_IP]);
    node.run(|| NftablesDatapath::remove("smartnet"))
        .expect("remove");
}
