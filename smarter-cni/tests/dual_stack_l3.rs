//! NAT66 on a layer-3 uplink with the real plugin (eBPF datapath): a raw-IP modem (the
//! testbed's TUN uplink `wwan0` ↔ the wan's `tun1`) with a global IPv6 address and the node's
//! IPv6 default route, as a cellular modem on a dual-stack APN presents it. `ipv6: auto` gives
//! the pod IPv6; its UDP, TCP and ping6 to the wan's IPv6 server are answered, the server sees
//! the modem's global address, and no ULA source crosses the modem link (a counter on the
//! wan's side). Skips (with a message) when not root or without `nft`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use serde_json::json;
use smarter_testbed::{L3_UPLINK, Netns, WAN_L3_IF, WAN_SERVER_IP6 as SERVER6, World, skipped};

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
    for cmd in [
        "add table ip6 watch",
        "add chain ip6 watch in { type filter hook prerouting priority -300 ; }",
        "add rule ip6 watch in iifname tun1 ip6 saddr fc00::/7 counter",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        must(wan, &[&["nft"], args.as_slice()].concat());
    }
}

/// The packets the wan counted with a ULA source from the modem.
fn ula_on_modem_link(w: &World) -> u64 {
    let out = w
        .wan()
        .exec(&["nft", "list", "chain", "ip6", "watch", "in"])
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let at = text.find("packets ").expect("a counter") + "packets ".len();
    text[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a packet count")
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

    // UDP: the server sees the modem's global address.
    let sock = wan.run(|| UdpSocket::bind((SERVER6, 9000)).expect("bind udp"));
    let server = smarter_testbed::spawn_in(wan, move || {
        let mut buf = [0u8; 16];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, peer) = sock.recv_from(&mut buf).expect("a datagram");
        sock.send_to(&buf[..n], peer).expect("echo");
        peer
    });
    let echoed = pod.run(|| {
        let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"udp6", (SERVER6, 9000)).unwrap();
        let mut buf = [0u8; 16];
        let n = s.recv(&mut buf).expect("the echo through NAT66");
        buf[..n].to_vec()
    });
    assert_eq!(echoed, b"udp6");
    assert_eq!(server.join().unwrap().ip(), IpAddr::V6(NODE6), "udp seen");

    // TCP likewise.
    let listener = wan.run(|| TcpListener::bind((SERVER6, 8000)).expect("bind tcp"));
    let server = smarter_testbed::spawn_in(wan, move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf).expect("echo");
        peer
    });
    let echoed = pod.run(|| {
        let to = SocketAddr::from((SERVER6, 8000));
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect through NAT66");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("reply through NAT66");
        buf
    });
    assert_eq!(&echoed, b"hello");
    assert_eq!(server.join().unwrap().ip(), IpAddr::V6(NODE6), "tcp seen");

    assert!(counted(&w, "ebpf", &["nat_out"]) >= 3);
    assert!(counted(&w, "ebpf", &["nat_in"]) >= 3);
    assert_eq!(counted(&w, "ebpf", &["drop_leak6"]), 0);
    assert_eq!(ula_on_modem_link(&w), 0, "no ULA source on the modem link");
    // The node's own IPv6 through the modem is the host's, untouched.
    assert!(
        w.node()
            .succeeds(&["ping", "-6", "-c", "1", "-W", "2", &SERVER6.to_string()]),
        "the node's own ping6"
    );
}
