//! Dual-stack pods through the eBPF datapath end to end: a world like `ebpf_nat`'s with IPv6
//! added by hand (the pods' ULA subnet fd00:ac27::/64 on the bridge and the pods, the node's
//! uplink 2001:db8:1::2/64 ↔ the wan's 2001:db8:1::1/64, and no route back to the ULAs on the
//! wan, so only NAT66 can work): a pod's UDP, TCP and ping6 reach the wan, which sees the
//! node's global address, and no ULA source ever shows on the wan link. Skips (with a
//! message) when not root.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use ipnetwork::Ipv6Network;
use smarter_cni::datapath::ebpf::EbpfDatapath;
use smarter_cni::datapath::{AttachMode, CtTimeouts, DatapathConfig, External, Uplink, V6Config};
use smarter_testbed::{NODE_UPLINK_IP, POD_BRIDGE, POD_IF, UPLINK, WAN_UPLINK_IF, World};

use crate::world::{POD_IPS, bridged, ebpf_config, endpoint_spec};

const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);
const POD6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 2),
    Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 3),
];
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x22], [2, 0, 0, 0x5e, 0, 0x23]];

/// Fields drop in order: the datapath handle, then the world.
struct Nat6World {
    dp: EbpfDatapath,
    cfg: DatapathConfig,
    w: World,
}

impl Nat6World {
    fn new() -> Self {
        let pods: Vec<_> = (0..2)
            .map(|i| (format!("p{i}"), format!("hv{i}"), MACS[i], POD_IPS[i]))
            .collect();
        let w = bridged("ebpf_nat6", &pods);
        let node = w.node();
        node.ip(&format!("-6 addr add {GATEWAY6}/64 dev {POD_BRIDGE} nodad"));
        node.ip(&format!("-6 addr add {NODE6}/64 dev {UPLINK} nodad"));
        w.wan()
            .ip(&format!("-6 addr add {WAN6}/64 dev {WAN_UPLINK_IF} nodad"));
        for (i, ip6) in POD6.iter().enumerate() {
            let pod = w.pod(&format!("p{i}")).expect("pod");
            pod.ip(&format!("-6 addr add {ip6}/64 dev {POD_IF} nodad"));
            pod.ip(&format!("-6 route add default via {GATEWAY6} dev {POD_IF}"));
        }
        let cfg = DatapathConfig {
            v6: Some(V6Config {
                subnet: Ipv6Network::new(Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 0), 64)
                    .unwrap(),
                gateway: GATEWAY6,
            }),
            ..ebpf_config()
        };
        let lock_dir = w.state_dir().join("smartnet");
        let dp = EbpfDatapath::open_or_load(w.bpffs_dir(), "smartnet", &lock_dir, &cfg)
            .expect("load datapath");
        let bridge_mac = node.mac(POD_BRIDGE).expect("bridge MAC");
        let specs: Vec<_> = (0..2)
            .map(|i| {
                let mut spec = endpoint_spec(node, i, POD_IPS[i], MACS[i]);
                spec.ip6 = Some(POD6[i]);
                spec
            })
            .collect();
        node.run(|| {
            for spec in &specs {
                // As the plugin's ADD does: the port's pointer to its endpoint (the source MAC
                // of IPv6 frames is checked against it), then the endpoint.
                dp.set_iface(spec.host_ifindex, spec.ip).expect("set iface");
                dp.attach_endpoint(spec, AttachMode::Auto)
                    .expect("attach endpoint");
            }
            let up = Uplink {
                ifindex: nix::net::if_::if_nametoindex(UPLINK).unwrap(),
                name: UPLINK.into(),
                addr: NODE_UPLINK_IP,
                mac: [0; 6],
                up: true,
                l3: false,
                mtu: 1500,
                selected: true,
            };
            let bridge = nix::net::if_::if_nametoindex(POD_BRIDGE).unwrap();
            dp.set_bridge(bridge, bridge_mac).expect("set bridge");
            dp.set_nat((61000, 65535), &CtTimeouts::default())
                .expect("set nat");
            let external = External {
                all: true,
                preferred: Some(up.ifindex),
                node_addrs: vec![(NODE_UPLINK_IP, up.ifindex)],
                uplinks6: vec![(up.ifindex, NODE6)],
                node_addrs6: vec![(NODE6, up.ifindex), (GATEWAY6, bridge)],
                uplinks: vec![up],
                clat: None,
            };
            dp.set_external(&external, AttachMode::Auto)
                .expect("serve the uplink");
        });
        Self { dp, cfg, w }
    }

    fn verdict(&self, name: &str) -> u64 {
        self.dp
            .verdict_stats()
            .unwrap()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map_or(0, |(_, p, _)| p)
    }
}

#[test]
fn nat66_pod_to_wan_udp_tcp_ping6() {
    // Root and `nft` (the wan's counter of ULA sources).
    if !crate::world::nft::can_run("nat66_pod_to_wan_udp_tcp_ping6") {
        return;
    }
    let w = Nat6World::new();
    let wan = w.w.wan();
    smarter_testbed::watch_ula(wan, WAN_UPLINK_IF).expect("count ULA sources on the wan");
    let p0 = w.w.pod("p0").expect("pod");
    let p1 = w.w.pod("p1").expect("pod");

    // pod → pod over IPv6 (redirected) and pod → the gateway (the host's).
    assert!(
        p0.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &POD6[1].to_string()]),
        "pod → pod over IPv6: {:?} {:?} {:?}",
        w.dp.config(),
        w.dp.verdict_stats().unwrap(),
        p0.exec(&["ip", "-6", "neigh"])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    );
    assert!(p0.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &GATEWAY6.to_string()]));

    // ping6 to the wan.
    assert!(
        p0.succeeds(&["ping", "-6", "-c", "2", "-W", "2", &WAN6.to_string()]),
        "pod → wan ping6"
    );

    // UDP: the wan sees the node's global address.
    let sock = wan.run(|| UdpSocket::bind((WAN6, 9000)).expect("bind udp"));
    let server = smarter_testbed::spawn_in(wan, move || {
        let mut buf = [0u8; 16];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, peer) = sock.recv_from(&mut buf).expect("a datagram");
        sock.send_to(&buf[..n], peer).expect("echo");
        peer
    });
    let echoed = p1.run(|| {
        let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"udp6", (WAN6, 9000)).unwrap();
        let mut buf = [0u8; 16];
        let n = s.recv(&mut buf).expect("the echo through NAT66");
        buf[..n].to_vec()
    });
    assert_eq!(echoed, b"udp6");
    assert_eq!(
        server.join().unwrap().ip(),
        IpAddr::V6(NODE6),
        "udp seen from the node"
    );

    // TCP likewise.
    let listener = wan.run(|| TcpListener::bind((WAN6, 8000)).expect("bind tcp"));
    let server = smarter_testbed::spawn_in(wan, move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("echo");
        peer
    });
    let echoed = p0.run(|| {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((WAN6, 8000)), Duration::from_secs(3))
                .expect("connect through NAT66");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("reply through NAT66");
        buf
    });
    assert_eq!(&echoed, b"hello");
    assert_eq!(
        server.join().unwrap().ip(),
        IpAddr::V6(NODE6),
        "tcp seen from the node"
    );

    assert!(w.verdict("nat_out") >= 3 && w.verdict("nat_in") >= 3);
    assert_eq!(w.verdict("drop_leak6"), 0);
    assert_eq!(
        smarter_testbed::ula_counted(w.w.wan()),
        0,
        "no ULA source on the wan link"
    );

    // CHECK sees the IPv6 endpoint.
    let node = w.w.node();
    let mut spec = endpoint_spec(node, 1, POD_IPS[1], MACS[1]);
    spec.ip6 = Some(POD6[1]);
    assert_eq!(
        node.run(|| w.dp.check_endpoint(&spec)).unwrap(),
        Vec::<String>::new()
    );
    spec.ip6 = Some(POD6[0]);
    let diffs = node.run(|| w.dp.check_endpoint(&spec)).unwrap();
    assert!(
        diffs.len() == 1 && diffs[0].contains(&POD6[0].to_string()),
        "{diffs:?}"
    );

    // A program upgrade (another build's object recorded): the new programs go into the pinned
    // tail-call array too, and NAT66 keeps working, its flow included.
    let before = w.dp.program_id();
    let lock_dir = w.w.state_dir().join("smartnet");
    std::fs::write(lock_dir.join("ebpf-smartnet.object"), "0000000000000000").unwrap();
    let upgraded =
        w.w.node()
            .run(|| EbpfDatapath::open_or_load(w.w.bpffs_dir(), "smartnet", &lock_dir, &w.cfg))
            .expect("upgrade");
    assert_ne!(upgraded.program_id(), before, "the programs were swapped");
    let nat_in = w.verdict("nat_in");
    assert!(
        p1.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &WAN6.to_string()]),
        "NAT66 after the upgrade"
    );
    assert!(
        w.verdict("nat_in") > nat_in,
        "through the upgraded programs"
    );
    drop(upgraded);

    // A pod's IPv6 endpoint and its NAT66 flows go with it.
    let hv0 = "hv0";
    w.w.node()
        .run(|| w.dp.detach_endpoint(POD_IPS[0], hv0))
        .expect("detach");
    assert!(
        !p0.succeeds(&["ping", "-6", "-c", "1", "-W", "1", &WAN6.to_string()]),
        "a detached pod's IPv6 no longer leaves"
    );
    assert!(
        p1.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &WAN6.to_string()]),
        "the other pod's still does"
    );

    // NAT66 flows expire as IPv4's do (the agent's GC): none at the defaults, p1's (UDP,
    // ping) at one second.
    let shortest = CtTimeouts {
        tcp_established: 1,
        tcp_other: 1,
        udp: 1,
        icmp: 1,
    };
    assert_eq!(w.dp.ct_gc(&CtTimeouts::default()).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        w.dp.ct_gc(&shortest).unwrap() >= 2,
        "p1's NAT66 flows collected"
    );
    assert_eq!(w.dp.ct_gc(&shortest).unwrap(), 0, "nothing left");
}

/// An IPv6 endpoint whose pod has no IPv4 endpoint any more (a DEL killed between its steps)
/// has no owner: GC's sweep removes it, and only it; the other pod keeps its IPv6.
#[test]
fn gc_removes_ipv6_endpoints_without_an_owner() {
    use aya::maps::{HashMap, Map, MapData};
    use smarter_common::{EndpointKey, EndpointValue, LAYOUT_VERSION, maps};

    if !smarter_testbed::require_root("gc_removes_ipv6_endpoints_without_an_owner") {
        return;
    }
    let w = Nat6World::new();
    let [p0, p1] = [0, 1].map(|i| w.w.pod(&format!("p{i}")).expect("pod"));
    let ping = |p: &smarter_testbed::Netns| {
        p.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &WAN6.to_string()])
    };
    assert!(ping(p0) && ping(p1), "both pods' IPv6 through NAT66");
    assert_eq!(w.dp.remove_ownerless_endpoints6().unwrap(), 0, "all owned");

    // Half a DEL: pod 0's IPv4 endpoint gone, its IPv6 one left.
    let pin = w.w.bpffs_dir().join(format!(
        "smartnet/v{LAYOUT_VERSION}/maps/{}",
        maps::ENDPOINTS
    ));
    let map = Map::from_map_data(MapData::from_pin(&pin).unwrap()).unwrap();
    let mut endpoints: HashMap<MapData, EndpointKey, EndpointValue> = map.try_into().unwrap();
    endpoints
        .remove(&EndpointKey::from_octets(POD_IPS[0].octets()))
        .unwrap();

    assert_eq!(w.dp.remove_ownerless_endpoints6().unwrap(), 1, "pod 0's");
    assert_eq!(w.dp.remove_ownerless_endpoints6().unwrap(), 0, "once");
    assert!(ping(p1), "the owned one stays");
}
