//! NAT66 on a layer-3 uplink with the real plugin (eBPF datapath): a raw-IP modem (the
//! testbed's TUN uplink `wwan0` ↔ the wan's `tun1`) with a global IPv6 address and the node's
//! IPv6 default route, as a cellular modem on a dual-stack APN presents it. `ipv6: auto` gives
//! the pod IPv6; its UDP, TCP and ping6 to the wan's IPv6 server are answered, the server sees
//! the modem's global address, and no ULA source crosses the modem link (a counter on the
//! wan's side). Skips (with a message) when not root or without `nft`.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use common::*;
use serde_json::json;
use smarter_testbed::{
    EchoServer, L3_UPLINK, Netns, WAN_L3_IF, WAN_SERVER_IP6 as SERVER6, World, skipped,
    tcp_roundtrip, udp_roundtrip,
};

/// The node's global address on the modem.
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x65, 0, 0, 0, 0, 2);
/// The wan's end of the modem link.
const WAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x65, 0, 0, 0, 0, 1);

fn must(ns: &Netns, args: &[&str]) {
    let out = ns.exec(args);
    assert!(out.is_ok(), "{args:?}: {out:?}");
}

/// IPv6 on the modem link by hand, the node's IPv6 default route through it, the server, and
/// the wan's counter of ULA sources arriving from the modem.
fn wire_ipv6(w: &World) {
    let (node, wan) = (w.node(), w.wan());
    for ns in [node, wan] {
        must(
            ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ],
        );
    }
    must(wan, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    node.ip(&format!("-6 addr add {NODE6}/64 dev {L3_UPLINK} nodad"));
    wan.ip(&format!("-6 addr add {WAN6}/64 dev {WAN_L3_IF} nodad"));
    node.ip(&format!("-6 route replace default dev {L3_UPLINK}"));
    wan.ip(&format!("-6 addr add {SERVER6}/128 dev lo"));
    smarter_testbed::watch_ula(wan, WAN_L3_IF).expect("count ULA sources on the wan side");
}

#[test]
fn nat66_through_a_raw_ip_modem() {
    let Some(mut w) = world("dual_l3") else {
        return;
    };
    if !w.node().succeeds(&["nft", "--version"]) {
        skipped("dual_l3: skipped, no nft");
        return;
    }
    if let Err(e) = w.add_l3_uplink(1500) {
        skipped(&format!("dual_l3: skipped, no layer-3 uplink: {e}"));
        return;
    }
    wire_ipv6(&w);
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    conf["uplink"] = json!(L3_UPLINK);
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    let res = add_ok(&w, &conf, "p", &ns);
    let ip6 = res["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| a.contains(':'))
        .unwrap_or_else(|| panic!("ipv6 auto on a modem with a global address: {res}"))
        .to_owned();
    assert!(ip6.starts_with("fd00:ac27::"), "{ip6}");
    let status = bpfctl_status(&w, w.bpffs_dir());
    let rows = status[0]["uplinks"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["ifname"] == L3_UPLINK && r["link"] == "l3"),
        "the modem is a layer-3 uplink: {rows:?}"
    );
    let (pod, wan) = (w.pod("p").unwrap(), w.wan());

    // ping6.
    assert!(
        pod.succeeds(&["ping", "-6", "-c", "2", "-W", "2", &SERVER6.to_string()]),
        "pod → server ping6 through the modem"
    );

    // UDP and TCP echoes: the server sees the modem's global address.
    let (udp, tcp) = (
        EchoServer::udp(wan, SERVER6, 9000),
        EchoServer::tcp(wan, SERVER6, 8000),
    );
    let t = Duration::from_secs(3);
    udp_roundtrip(pod, (SERVER6, 9000).into(), b"udp6", t).expect("UDP through NAT66");
    tcp_roundtrip(pod, (SERVER6, 8000).into(), b"hello", t).expect("TCP through NAT66");
    for (what, server) in [("udp", &udp), ("tcp", &tcp)] {
        let seen: Vec<IpAddr> = server.seen().iter().map(|p| p.ip()).collect();
        assert_eq!(seen, vec![IpAddr::V6(NODE6)], "{what} seen");
    }

    assert!(counted(&w, "ebpf", &["nat_out"]) >= 3);
    assert!(counted(&w, "ebpf", &["nat_in"]) >= 3);
    assert_eq!(counted(&w, "ebpf", &["drop_leak6"]), 0);
    assert_eq!(
        smarter_testbed::ula_counted(w.wan()),
        0,
        "no ULA source on the modem link"
    );
    // The node's own IPv6 through the modem is the host's, untouched.
    assert!(
        w.node()
            .succeeds(&["ping", "-6", "-c", "1", "-W", "2", &SERVER6.to_string()]),
        "the node's own ping6"
    );
}
