//! One behaviour table run against both datapaths (`ebpf` and `iptables`), in the namespace
//! world of the design brief: pods added by the real plugin binary, a `wan` namespace with
//! servers that record the source address they saw.

mod common;
#[path = "datapath_behaviour/frames.rs"]
mod frames;
#[path = "datapath_behaviour/link_guard.rs"]
mod link_guard;
#[path = "datapath_behaviour/node_guard.rs"]
mod node_guard;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use link_guard::pods_cannot_configure_the_node_or_impersonate;
use node_guard::the_node_takes_no_configuration_from_pods;
use serde_json::{Value, json};
use smarter_testbed::{
    CniCall, EchoServer, FAR_SERVER_IP, NODE_UPLINK_IP, WAN_ROUTER_IP, WAN_SERVER_IP, World,
    tcp_roundtrip, udp_roundtrip,
};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
const T: Duration = Duration::from_secs(3);

/// A world with `n` pods added through the plugin with `datapath`, plus `extra` config keys.
fn setup(
    test: &str,
    datapath: &str,
    n: usize,
    extra: Value,
) -> Option<(World, Vec<Ipv4Addr>, Value)> {
    let mut w = world(test)?;
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(datapath);
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        conf[k] = v;
    }
    let mut ips = Vec::new();
    for i in 0..n {
        let ns = w
            .add_pod_ns(&format!("pod{i}"))
            .unwrap()
            .path()
            .to_path_buf();
        ips.push(result_ip(&add_ok(&w, &conf, &format!("ctr{i}"), &ns)));
    }
    Some((w, ips, conf))
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn pod_to_pod_node_and_wan(dp: &str) {
    let Some((w, ips, _)) = setup("behaviour_basic", dp, 2, json!({})) else {
        return;
    };
    let (p0, p1) = (w.pod("pod0").unwrap(), w.pod("pod1").unwrap());
    // pod ↔ pod
    assert!(ping(p0, ips[1]), "{dp}: pod0 → pod1");
    let srv = EchoServer::tcp(p1, Ipv4Addr::UNSPECIFIED, 7000);
    tcp_roundtrip(p0, sa(ips[1], 7000), b"pod-to-pod", T).unwrap_or_else(|e| panic!("{dp}: {e}"));
    assert_eq!(
        srv.seen()[0].ip(),
        std::net::IpAddr::V4(ips[0]),
        "{dp}: no NAT between pods"
    );
    // pod → node (gateway and the node's uplink address)
    assert!(ping(p0, GATEWAY), "{dp}: pod → gateway");
    assert!(ping(p0, NODE_UPLINK_IP), "{dp}: pod → node uplink address");
    // pod → wan: TCP, UDP and ICMP, source NATed to the uplink address
    let tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let udp = EchoServer::udp(w.wan(), WAN_SERVER_IP, 8001);
    for p in [p0, p1] {
        tcp_roundtrip(p, sa(WAN_SERVER_IP, 8000), b"hello wan", T)
            .unwrap_or_else(|e| panic!("{dp}: TCP {e}"));
        udp_roundtrip(p, sa(WAN_SERVER_IP, 8001), b"hello udp", T)
            .unwrap_or_else(|e| panic!("{dp}: UDP {e}"));
        assert!(ping(p, WAN_SERVER_IP), "{dp}: ICMP echo to the wan");
    }
    for peer in tcp.seen().into_iter().chain(udp.seen()) {
        assert_eq!(
            peer.ip(),
            std::net::IpAddr::V4(NODE_UPLINK_IP),
            "{dp}: wan must see the uplink address"
        );
    }
    assert_eq!(tcp.seen().len(), 2);
    assert_eq!(udp.seen().len(), 2);
}

fn pmtu_discovery_through_nat(dp: &str) {
    let Some((mut w, _, _)) = setup("behaviour_pmtu", dp, 1, json!({})) else {
        return;
    };
    w.add_far().unwrap();
    let p0 = w.pod("pod0").unwrap();
    assert!(
        ping(p0, FAR_SERVER_IP),
        "{dp}: far server reachable with small packets"
    );
    let out = p0
        .command("ping")
        .args([
            "-M",
            "do",
            "-s",
            "1400",
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
            &FAR_SERVER_IP.to_string(),
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mtu = 1280") || text.contains("mtu=1280"),
        "{dp}: the pod must learn the path MTU through the NAT (ICMP frag-needed translated): {text}"
    );
}

fn deny_list_and_node_local_only(dp: &str) {
    let deny = json!({"denyCIDRs": ["203.0.113.128/25"]});
    let Some((w, ips, _)) = setup("behaviour_deny", dp, 1, deny) else {
        return;
    };
    let p0 = w.pod("pod0").unwrap();
    assert!(
        ping(p0, WAN_SERVER_IP),
        "{dp}: allowed part of the wan works"
    );
    assert!(
        !ping(p0, Ipv4Addr::new(203, 0, 113, 200)),
        "{dp}: denied range must be dropped"
    );
    // A wan host that routes the pod subnet via the gateway still cannot reach a pod.
    w.wan()
        .exec(&[
            "ip",
            "route",
            "add",
            "172.39.0.0/16",
            "via",
            &NODE_UPLINK_IP.to_string(),
        ])
        .unwrap();
    assert!(
        !ping(w.wan(), ips[0]),
        "{dp}: inbound to a pod IP from the wan must be dropped"
    );
    let srv = EchoServer::tcp(p0, Ipv4Addr::UNSPECIFIED, 7100);
    assert!(
        tcp_roundtrip(w.wan(), sa(ips[0], 7100), b"x", Duration::from_secs(1)).is_err(),
        "{dp}: inbound TCP"
    );
    assert!(srv.seen().is_empty());
    // Outbound NAT keeps working meanwhile.
    assert!(ping(p0, WAN_ROUTER_IP), "{dp}: outbound still works");
}

fn spoofing_is_dropped(dp: &str) {
    let Some((w, _, _)) = setup("behaviour_spoof", dp, 2, json!({})) else {
        return;
    };
    let p0 = w.pod("pod0").unwrap();
    assert!(ping(p0, GATEWAY));
    // Another source address on the pod's own interface.
    p0.exec(&["ip", "addr", "add", "172.39.200.200/16", "dev", "eth0"])
        .unwrap();
    assert!(
        !p0.succeeds(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "172.39.200.200",
            &GATEWAY.to_string()
        ]),
        "{dp}: spoofed source IP must be dropped"
    );
    assert!(
        !p0.succeeds(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "172.39.200.200",
            &WAN_SERVER_IP.to_string()
        ]),
        "{dp}: spoofed source IP to the wan must be dropped"
    );
    // Another MAC on the pod's interface.
    let p1 = w.pod("pod1").unwrap();
    p1.exec(&["ip", "link", "set", "eth0", "address", "02:de:ad:be:ef:01"])
        .unwrap();
    p1.exec(&["ip", "neigh", "flush", "all"]).unwrap();
    assert!(
        !ping(p1, WAN_SERVER_IP),
        "{dp}: spoofed source MAC must be dropped"
    );
}

fn host_port_from_wan_and_hairpin(dp: &str) {
    let Some(mut w) = world("behaviour_hostport") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    let mut with_port = conf.clone();
    with_port["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}
    ]});
    add_ok(&w, &with_port, "web", &ns0);
    add_ok(&w, &conf, "client", &ns1);
    let web = w.pod("pod0").unwrap();
    let _tcp = EchoServer::tcp(web, Ipv4Addr::UNSPECIFIED, 80);
    let _udp = EchoServer::udp(web, Ipv4Addr::UNSPECIFIED, 53);
    tcp_roundtrip(w.wan(), sa(NODE_UPLINK_IP, 8080), b"from wan", T)
        .unwrap_or_else(|e| panic!("{dp}: hostPort TCP: {e}"));
    udp_roundtrip(w.wan(), sa(NODE_UPLINK_IP, 8053), b"from wan", T)
        .unwrap_or_else(|e| panic!("{dp}: hostPort UDP: {e}"));
    let client = w.pod("pod1").unwrap();
    tcp_roundtrip(client, sa(NODE_UPLINK_IP, 8080), b"hairpin", T)
        .unwrap_or_else(|e| panic!("{dp}: hairpin: {e}"));
    udp_roundtrip(client, sa(NODE_UPLINK_IP, 8053), b"hairpin", T)
        .unwrap_or_else(|e| panic!("{dp}: UDP hairpin: {e}"));
    // From the node itself (a host process connecting to its own address).
    tcp_roundtrip(w.node(), sa(NODE_UPLINK_IP, 8080), b"from the node", T)
        .unwrap_or_else(|e| panic!("{dp}: node → hostPort: {e}"));
    udp_roundtrip(w.node(), sa(NODE_UPLINK_IP, 8053), b"from the node", T)
        .unwrap_or_else(|e| panic!("{dp}: node → UDP hostPort: {e}"));
    // A port nobody mapped stays closed.
    assert!(
        tcp_roundtrip(
            w.wan(),
            sa(NODE_UPLINK_IP, 8081),
            b"x",
            Duration::from_secs(1)
        )
        .is_err()
    );
    // DEL removes the mapping.
    let out = call(&w, &CniCall::new("DEL", &with_port).pod("web", &ns0));
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert!(
        tcp_roundtrip(
            w.wan(),
            sa(NODE_UPLINK_IP, 8080),
            b"x",
            Duration::from_secs(1)
        )
        .is_err(),
        "{dp}: mapping gone after DEL"
    );
}

fn conntrack_full_still_works(dp: &str) {
    let Some((w, _, _)) = setup("behaviour_ctfull", dp, 1, json!({"ctMaxEntries": 1024})) else {
        return;
    };
    let p0 = w.pod("pod0").unwrap();
    let udp = EchoServer::udp(w.wan(), WAN_SERVER_IP, 9000);
    // 1500 distinct flows (one socket each) through a 1024-entry table.
    smarter_testbed::spawn_in(p0, || {
        for _ in 0..1500 {
            let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let _ = s.send_to(b"fill", (WAN_SERVER_IP, 9000));
            // Paced so a busy machine's receive buffer, not the datapath, never drops them.
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .unwrap();
    udp_roundtrip(p0, sa(WAN_SERVER_IP, 9000), b"still works", T)
        .unwrap_or_else(|e| panic!("{dp}: new flow after a full table: {e}"));
    assert!(udp.seen().len() > 1000, "{dp}: the fill flows went out");
}

macro_rules! behaviour_table {
    ($($name:ident),* $(,)?) => {
        mod ebpf {
            $( #[test] fn $name() { super::$name("ebpf") } )*
        }
        mod nftables {
            $( #[test] fn $name() { super::$name("nftables") } )*
        }
    };
}

behaviour_table!(
    pod_to_pod_node_and_wan,
    pmtu_discovery_through_nat,
    deny_list_and_node_local_only,
    spoofing_is_dropped,
    host_port_from_wan_and_hairpin,
    conntrack_full_still_works,
    pods_cannot_configure_the_node_or_impersonate,
    the_node_takes_no_configuration_from_pods,
);

/// Whether the running kernel has TCX links (Linux 6.6 and later).
fn kernel_has_tcx() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (6, 6)
}

/// `tcAttach: auto` picks what the kernel has: a TCX link from 6.6 (no netlink filter), else a
/// netlink clsact filter; a forced `tcx` works with TCX and is refused, saying why, without it.
#[test]
fn tc_attach_follows_the_kernel() {
    let Some(mut w) = world("behaviour_tcattach") else {
        return;
    };
    let tcx = kernel_has_tcx();
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "auto", &ns0);
    let veths = node_veths(&w);
    assert_eq!(veths.len(), 1, "one host veth: {veths:?}");
    let filters = w.node().netlink_filters(&veths[0], "smarter_pod");
    assert_eq!(
        filters,
        usize::from(!tcx),
        "auto on a kernel {} TCX: {filters} netlink filter(s)",
        if tcx { "with" } else { "without" }
    );
    assert!(
        ping(w.pod("pod0").unwrap(), WAN_SERVER_IP),
        "auto: NAT works"
    );

    let mut forced = conf.clone();
    forced["tcAttach"] = json!("tcx");
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    let out = call(&w, &CniCall::new("ADD", &forced).pod("forced", &ns1));
    if tcx {
        assert_eq!(out.status, 0, "forced tcx with TCX: {}", out.stdout);
    } else {
        assert_ne!(out.status, 0, "forced tcx without TCX must fail");
        let msg = format!("{} {}", out.msg(), out.json["details"]);
        assert!(
            msg.contains("tcx") && msg.contains("6.6"),
            "the error says tcx needs Linux 6.6: {}",
            out.stdout
        );
        assert_eq!(
            node_veths(&w).len(),
            1,
            "the failed ADD left no veth behind"
        );
    }
}
