//! The nftables datapath in a world of throwaway network namespaces ([`crate::world::nft`]):
//! masquerade, anti-spoofing, deny ranges, node-local-only, hostPort (also hairpin), detach
//! and removal here; `hostIP`, per-pod traffic and the LAN of an `uplink: auto` node in
//! `nft/external.rs`; a dual-stack network's IPv6 in `nft/dual_stack.rs`. Skips with a message when not root or without `nft`. Never
//! touches the root namespace: `nft` and the API run on threads that entered the node namespace.

mod dual_stack;
mod external;

use std::net::Ipv4Addr;

use crate::world::nft::{GATEWAY, NftWorld, can_run, config, endpoint, sa, tcp_ok};
use smarter_cni::datapath::HostPortSpec;
use smarter_cni::datapath::nftables::{NftablesDatapath, NftablesError};
use smarter_testbed::{EchoServer, NODE_UPLINK_IP, WAN_ROUTER_IP, WAN_SERVER_IP};

#[test]
fn nft_datapath_in_namespaces() {
    if !can_run("nft_datapath_in_namespaces") {
        return;
    }
    let nw = NftWorld::new("nft");
    let (node, wan, pod2, pod3) = (nw.node(), nw.w.wan(), nw.pod(2), nw.pod(3));
    node.run(NftablesDatapath::available)
        .expect("nftables available in the node namespace");
    let dp = nw.ensure(&config(&["uplink0"], &[]));
    assert_eq!(
        dp,
        nw.ensure(&config(&["uplink0"], &[])),
        "ensure is idempotent"
    );
    let web = HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: 6,
        host_ip: None,
    };
    node.run(|| {
        dp.attach_endpoint(&endpoint(2), &[web])?;
        dp.attach_endpoint(&endpoint(2), &[web])?;
        dp.attach_endpoint(&endpoint(3), &[])
    })
    .expect("attach");
    let (eps, ports, check) = node.run(|| {
        (
            dp.endpoints(),
            dp.host_ports(),
            dp.check_endpoint(&endpoint(2)),
        )
    });
    assert_eq!(eps.expect("endpoints").len(), 2);
    assert_eq!(
        ports.expect("host ports"),
        vec![(web, Ipv4Addr::new(172, 39, 0, 2))]
    );
    assert_eq!(check.expect("check"), Vec::<String>::new());

    // pod → wan: masqueraded to the uplink address and the NAT port range.
    let server = EchoServer::tcp(wan, WAN_ROUTER_IP, 7000);
    tcp_ok(pod2, sa(WAN_ROUTER_IP, 7000)).expect("pod → wan");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].ip(), NODE_UPLINK_IP);
    assert!(
        (61000..=64999).contains(&seen[0].port()),
        "NAT port {seen:?}"
    );
    assert!(pod2.ping(WAN_SERVER_IP), "ICMP to the internet");
    let (ip2, ip3) = (endpoint(2).ip, endpoint(3).ip);
    assert!(pod2.ping(ip3) && pod3.ping(ip2), "pod ↔ pod");
    assert!(nw.counter(&dp, "nat_masquerade") > 0);

    // Anti-spoofing: another source address, then another MAC.
    pod2.ip("addr add 172.39.0.50/16 dev eth0");
    assert!(
        !pod2.succeeds(&["ping", "-c1", "-W1", "-I", "172.39.0.50", "172.39.0.3"]),
        "spoofed source must be dropped"
    );
    pod2.ip("addr del 172.39.0.50/16 dev eth0");
    assert!(nw.counter(&dp, "drop_spoof_ip") + nw.counter(&dp, "drop_spoof_arp") > 0);
    pod2.ip("link set eth0 address 02:00:00:00:00:99");
    assert!(!pod2.ping(ip3), "spoofed MAC must be dropped");
    pod2.ip("link set eth0 address 02:00:00:00:00:02");
    assert!(pod2.ping(ip3), "own MAC works again");

    // Deny ranges (ensure again keeps the elements).
    nw.ensure(&config(&["uplink0"], &["203.0.113.0/24"]));
    assert!(!pod2.ping(WAN_SERVER_IP), "denied range");
    assert!(pod2.ping(WAN_ROUTER_IP), "allowed range");
    assert!(nw.counter(&dp, "drop_deny") > 0);

    // Node-local-only: a wan host routing to the pod subnet gets nowhere.
    wan.ip(&format!("route add 172.39.0.0/16 via {NODE_UPLINK_IP}"));
    assert!(!wan.ping(ip2), "wan must not reach pods");
    assert!(nw.counter(&dp, "drop_nodelocal") > 0);

    // hostPort from the wan, hairpin from the other pod and from the node itself.
    let pod_server = EchoServer::tcp(pod2, Ipv4Addr::UNSPECIFIED, 80);
    let hp = sa(NODE_UPLINK_IP, 8080);
    tcp_ok(wan, hp).expect("hostPort from wan");
    tcp_ok(pod3, hp).expect("hostPort hairpin from a pod");
    tcp_ok(node, hp).expect("hostPort from the node");
    let peers: Vec<Ipv4Addr> = pod_server
        .seen()
        .iter()
        .map(|p| match p.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(a) => panic!("IPv6 peer {a}"),
        })
        .collect();
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert_eq!(peers[0], WAN_ROUTER_IP, "the wan client is not NATed");
    assert_eq!(peers[1], GATEWAY, "hairpin is masqueraded");
    let conflict = node.run(|| dp.attach_endpoint(&endpoint(3), &[web]));
    assert!(
        matches!(&conflict, Err(NftablesError::HostPortTaken { port: 8080, owner, .. }) if owner == "172.39.0.2:80"),
        "{conflict:?}"
    );

    // Detach: elements and hostPorts go, twice is fine.
    let (eps, ports, check) = node
        .run(|| {
            dp.detach_endpoint(ip2, &endpoint(2).host_ifname)?;
            dp.detach_endpoint(ip2, &endpoint(2).host_ifname)?;
            Ok::<_, NftablesError>((
                dp.endpoints()?,
                dp.host_ports()?,
                dp.check_endpoint(&endpoint(2))?,
            ))
        })
        .expect("detach");
    assert_eq!(eps, vec![endpoint(3)]);
    assert!(ports.is_empty());
    assert!(!check.is_empty(), "check reports the missing endpoint");
    assert!(tcp_ok(wan, hp).is_err(), "hostPort is gone");
    drop(pod_server);

    // Remove: no table left, twice is fine, open says so.
    let gone = node
        .run(|| {
            NftablesDatapath::remove("smartnet")?;
            NftablesDatapath::remove("smartnet")?;
            NftablesDatapath::open("smartnet")
        })
        .expect("remove");
    assert_eq!(gone, None);
    let listing = node.exec(&["nft", "list", "tables"]).expect("nft list");
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains("smarter_"),
        "tables left"
    );
}
