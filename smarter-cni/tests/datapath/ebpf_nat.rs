//! The eBPF NAT datapath end to end in a throwaway world ([`crate::world::NatWorld`]): pods reach
//! each other, the node and the wan (which has no route back to the pods, so only SNAT can
//! work), deny ranges and inbound traffic to pod addresses are dropped, conntrack is visible and
//! flushed per pod. Skips (with a message) when not root.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use crate::world::{NatWorld, POD_IPS};
use ipnetwork::Ipv4Network;
use smarter_cni::datapath::{EbpfError, HostPortSpec};
use smarter_testbed::{
    FAR_SERVER_IP, NODE_UPLINK_IP as NODE_UPLINK, WAN_ROUTER_IP as WAN_ROUTER,
    WAN_SERVER_IP as WAN_SERVER,
};

#[test]
fn nat_pod_to_pod_deny_node_local_and_conntrack() {
    if !smarter_testbed::require_root("nat_pod_to_pod_deny_node_local_and_conntrack") {
        return;
    }
    let mut w = NatWorld::new();
    let [p0, p1] = w.pods();

    // pod → pod (redirect_peer after ARP through the bridge) and pod → node.
    assert!(p0.ping(POD_IPS[1]), "pod0 → pod1");
    assert!(w.verdict("redirect_pod") >= 2, "both directions redirected");
    assert!(p0.ping(Ipv4Addr::new(172, 39, 0, 1)), "pod → gateway");
    assert!(p1.ping(NODE_UPLINK), "pod → node uplink address");
    // Any other node address (node-local DNS lives on one): the FIB says local → host stack.
    w.node().ip("addr add 169.254.0.2/32 dev smartnet0");
    assert!(
        p1.ping(Ipv4Addr::new(169, 254, 0, 2)),
        "pod → another node address"
    );

    // pod → wan TCP: the server sees the uplink address, the reply comes back.
    let listener = w
        .wan()
        .run(|| TcpListener::bind((WAN_ROUTER, 8000)).expect("bind"));
    let server = smarter_testbed::spawn_in(w.wan(), move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("echo");
        peer
    });
    let echoed = p0.run(|| {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from((WAN_ROUTER, 8000)),
            Duration::from_secs(3),
        )
        .expect("connect through the NAT");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("reply through the NAT");
        buf
    });
    assert_eq!(&echoed, b"hello");
    let peer = server.join().unwrap();
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(NODE_UPLINK),
        "the wan sees the uplink"
    );

    // ICMP echo to a wan server (203.0.113.1 on the wan's lo).
    assert!(p0.ping(WAN_SERVER), "pod → wan server");
    assert!(p1.ping(WAN_SERVER), "pod1 → wan server");
    assert!(w.verdict("nat_out") >= 4 && w.verdict("nat_in") >= 4);

    // Conntrack shows both pods' flows, TCP established or closing.
    let ct = w.dp.ct_entries().unwrap();
    assert!(
        ct.iter().any(|e| e.proto == 6
            && e.pod_ip == POD_IPS[0]
            && e.remote_port == 8000
            && e.nat_ip == NODE_UPLINK
            && e.state != "new"),
        "{ct:?}"
    );
    assert!(
        ct.iter().any(|e| e.proto == 1 && e.pod_ip == POD_IPS[1]),
        "{ct:?}"
    );

    // hostPort: wan → uplink:8080 → pod0:80, the pod sees the wan's address.
    let tcp80 = |proto| HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: proto,
        host_ip: None,
    };
    w.dp.set_host_ports(POD_IPS[0], &[tcp80(6)]).unwrap();
    w.dp.set_host_ports(POD_IPS[0], &[tcp80(6)]).unwrap();
    let taken =
        w.dp.set_host_ports(POD_IPS[1], &[tcp80(17), tcp80(6)])
            .unwrap_err();
    assert!(
        matches!(taken, EbpfError::HostPortTaken { port: 8080, holder, .. } if holder == POD_IPS[0]),
        "{taken}"
    );
    assert_eq!(
        w.dp.host_ports().unwrap(),
        vec![(tcp80(6), POD_IPS[0])],
        "all or nothing"
    );
    // A dual-stack pod's mappings without hostIP answer on the node's IPv6 addresses too;
    // one with a hostIP (IPv4-only) does not; they go with the pod's IPv4 ones.
    let ula: Ipv6Addr = "fd00:ac27::3".parse().unwrap();
    let on_ip = HostPortSpec {
        host_port: 8443,
        host_ip: Some(NODE_UPLINK),
        ..tcp80(6)
    };
    w.dp.set_host_ports6(POD_IPS[0], ula, &[tcp80(6), on_ip])
        .unwrap();
    assert_eq!(w.dp.host_ports6().unwrap(), vec![(tcp80(6), ula)]);
    let listener = p0.run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).expect("bind"));
    let server = smarter_testbed::spawn_in(p0, move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("echo");
        peer
    });
    let echoed = w.wan().run(|| {
        let to = SocketAddr::from((NODE_UPLINK, 8080));
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("hostPort");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"inbnd").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("hostPort reply");
        buf
    });
    assert_eq!(&echoed, b"inbnd");
    assert_eq!(
        server.join().unwrap().ip(),
        std::net::IpAddr::V4(WAN_ROUTER)
    );
    assert_eq!(w.verdict("hostport_in"), 1);
    let closed = w.wan().run(|| {
        TcpStream::connect_timeout(
            &SocketAddr::from((NODE_UPLINK, 8081)),
            Duration::from_secs(1),
        )
    });
    assert!(closed.is_err(), "unmapped port stays closed");
    assert_eq!(w.dp.remove_host_ports(POD_IPS[0]).unwrap(), 1);
    assert!(w.dp.host_ports().unwrap().is_empty());
    assert!(w.dp.host_ports6().unwrap().is_empty(), "IPv6 twins removed");

    // Deny ranges.
    assert!(
        p0.ping(Ipv4Addr::new(203, 0, 113, 200)),
        "reachable before deny"
    );
    w.dp.set_deny(&["203.0.113.128/25".parse::<Ipv4Network>().unwrap()])
        .unwrap();
    assert_eq!(w.dp.deny().unwrap().len(), 1);
    assert!(
        !p0.ping(Ipv4Addr::new(203, 0, 113, 200)),
        "denied range dropped"
    );
    assert!(w.verdict("drop_deny") >= 1);
    assert!(p0.ping(WAN_SERVER), "the rest of the wan still works");

    // Node-local only: a wan host routing the pod subnet via the node still cannot reach a pod.
    w.wan().ip("route add 172.39.0.0/16 via 198.51.100.2");
    assert!(!w.wan().ping(POD_IPS[0]), "inbound to a pod IP dropped");
    assert!(w.verdict("drop_nodelocal") >= 1);

    // PMTU discovery through the NAT: a far server behind a 1280-byte link of the wan router.
    w.w.add_far().expect("the far namespace");
    let [_, p1] = w.pods();
    assert!(p1.ping(FAR_SERVER_IP), "far server reachable");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", p1.name()))
        .args([
            "ping", "-M", "do", "-s", "1400", "-c", "3", "-i", "0.3", "-W", "1",
        ])
        .arg(FAR_SERVER_IP.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mtu = 1280") || text.contains("mtu=1280"),
        "the pod learns the path MTU through the NAT: {text}"
    );
    assert!(w.verdict("icmp_error_in") >= 1);

    // Conntrack flush per pod (what DEL does) and GC.
    let flushed = w.dp.ct_flush_pod(POD_IPS[0]).unwrap();
    assert!(
        flushed >= 3,
        "tcp, hostPort tcp and icmp flows of pod0, got {flushed}"
    );
    let left = w.dp.ct_entries().unwrap();
    assert!(left.iter().all(|e| e.pod_ip != POD_IPS[0]), "{left:?}");
    assert!(left.iter().any(|e| e.pod_ip == POD_IPS[1]));
    // The shortest timeouts the configuration allows (1 s; 0 means "not configured yet" and
    // never expires, the one rule the kernel applies too): idle past them, everything goes.
    let shortest = smarter_cni::datapath::CtTimeouts {
        tcp_established: 1,
        tcp_other: 1,
        udp: 1,
        icmp: 1,
    };
    assert!(
        w.dp.ct_gc(&smarter_cni::datapath::CtTimeouts::default())
            .unwrap()
            == 0
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert!(w.dp.ct_gc(&shortest).unwrap() >= 1);
    assert!(w.dp.ct_entries().unwrap().is_empty());

    // Uplink detach: idempotent.
    w.node().run(|| {
        w.dp.detach_external().unwrap();
        w.dp.detach_external().unwrap();
    });
}
