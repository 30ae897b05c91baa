//! The node-local DNS server (`smarter_cni::dns`) in namespace worlds: pods added and deleted
//! with the real plugin, names resolved from pods and from the node over UDP and TCP,
//! forwarding to a fake upstream in the `wan` namespace, and bad input.

mod common;
#[path = "dns/support.rs"]
mod support;

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{Value, json};
use smarter_cni::dns::query::make_query;
use smarter_testbed::{CniCall, WAN_ROUTER_IP, WAN_SERVER_IP, World, spawn_in};
use support::*;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
const SECOND: Duration = Duration::from_secs(1);

fn write_resolv(path: &Path, server: Ipv4Addr) {
    // Replaced by rename, as resolvconf and NetworkManager do.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("# test\nnameserver {server}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn resolv_file(w: &World) -> PathBuf {
    let dir = w.data_dir().with_file_name("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("resolv.conf");
    write_resolv(&p, WAN_SERVER_IP);
    p
}

fn conf(w: &World, datapath: &str) -> Value {
    let mut c = w.netconf("1.1.0");
    c["datapath"] = json!(datapath);
    c
}

/// ADD with pod name and namespace (and aliases); returns the pod address.
fn add_pod(w: &World, conf: &Value, id: &str, ns: &Path, name: &str, aliases: &[&str]) -> Ipv4Addr {
    let mut c = conf.clone();
    if !aliases.is_empty() {
        c["runtimeConfig"] = json!({"aliases": {"smartnet": aliases}});
    }
    let add = CniCall::new("ADD", &c)
        .pod(id, ns)
        .args(&format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"));
    let out = call(w, &add);
    assert_eq!(out.status, 0, "ADD {id}: {}\n{}", out.stdout, out.stderr);
    let res = &out.json;
    assert_eq!(
        res["dns"],
        json!({
            "nameservers": ["169.254.0.2"],
            "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        }),
        "the result points the pod at the node-local DNS"
    );
    result_ip(res)
}

fn del_pod(w: &World, conf: &Value, id: &str, ns: &Path) {
    let out = call(w, &CniCall::new("DEL", conf).pod(id, ns));
    assert_eq!(out.status, 0, "DEL {id}: {}", out.stdout);
}

fn bridge_has_listen_address(w: &World) -> bool {
    let out = w
        .node()
        .exec(&["ip", "-o", "addr", "show", "dev", "smartnet0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("169.254.0.2/32")
}

fn names_resolve_and_go(datapath: &str) {
    let Some(mut w) = world(&format!("dns-names-{datapath}")) else {
        return;
    };
    let resolv = resolv_file(&w);
    let _upstream = FakeUpstream::start(
        w.wan(),
        WAN_SERVER_IP,
        "www.example.com.",
        Ipv4Addr::new(203, 0, 113, 80),
    );
    let server = DnsServer::start(w.node(), config(&w, &resolv));
    assert!(
        bridge_has_listen_address(&w),
        "the server put 169.254.0.2/32 on the bridge"
    );
    let conf = conf(&w, datapath);

    let a_ns = w.add_pod_ns("alpha").unwrap().path().to_path_buf();
    let b_ns = w.add_pod_ns("beta").unwrap().path().to_path_buf();
    let a_ip = add_pod(&w, &conf, "ctr-alpha", &a_ns, "alpha", &[]);
    let b_ip = add_pod(&w, &conf, "ctr-beta", &b_ns, "beta", &["db-alias"]);
    let alpha = w.pod("alpha").unwrap();

    // Within a second of beta's ADD, from alpha, every form over UDP, then over TCP.
    for tcp in [false, true] {
        for name in [
            "beta.",
            "beta.default.svc.cluster.local.",
            "beta.svc.cluster.local.",
            "beta.cluster.local.",
            "db-alias.",
        ] {
            assert_resolves(alpha, name, b_ip, tcp);
        }
    }
    assert_resolves(w.pod("beta").unwrap(), "alpha.", a_ip, false);
    // A process on the node.
    assert_resolves(w.node(), "beta.default.svc.cluster.local.", b_ip, false);
    assert_resolves(w.node(), "alpha.", a_ip, true);

    // PTR.
    let rev = format!(
        "{}.{}.{}.{}.in-addr.arpa.",
        b_ip.octets()[3],
        b_ip.octets()[2],
        b_ip.octets()[1],
        b_ip.octets()[0]
    );
    let (m, ok) = until(alpha, &rev, RecordType::PTR, false, SECOND, |m| {
        !m.answers.is_empty()
    });
    assert!(ok, "PTR {rev}: {m:?}");
    let m = m.unwrap();
    assert!(
        matches!(&m.answers[0].data, RData::PTR(PTR(n)) if n.to_ascii() == "beta.default.svc.cluster.local."),
        "{m:?}"
    );
    assert_eq!(m.answers[0].ttl, 5, "short TTL");

    // Unknown names in the cluster domain: NXDOMAIN; other names: forwarded.
    assert_nxdomain(alpha, "gamma.default.svc.cluster.local.");
    let (m, ok) = until(
        alpha,
        "www.example.com.",
        RecordType::A,
        false,
        SECOND,
        |m| addrs(m) == [Ipv4Addr::new(203, 0, 113, 80)],
    );
    assert!(ok, "forwarded from a pod: {m:?}");

    // DEL removes the names within a second.
    del_pod(&w, &conf, "ctr-beta", &b_ns);
    assert_nxdomain(alpha, "beta.default.svc.cluster.local.");
    assert_nxdomain(alpha, "db-alias.cluster.local.");
    let (m, ok) = until(alpha, &rev, RecordType::PTR, false, SECOND, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    });
    assert!(ok, "PTR after DEL: {m:?}");
    assert_resolves(alpha, "alpha.", a_ip, false);

    // A restarted server rebuilds the table from the records (and re-adds the address).
    server.stop().expect("clean shutdown");
    assert!(
        !bridge_has_listen_address(&w),
        "the address it added is removed on shutdown"
    );
    let server = DnsServer::start(w.node(), config(&w, &resolv));
    assert_resolves(w.node(), "alpha.default.svc.cluster.local.", a_ip, false);
    assert_nxdomain(w.node(), "beta.default.svc.cluster.local.");
    // An address it did not add is left in place.
    drop(server);
    w.node().ip("addr add 169.254.0.2/32 dev smartnet0");
    let server = DnsServer::start(w.node(), config(&w, &resolv));
    server.stop().unwrap();
    assert!(
        bridge_has_listen_address(&w),
        "an address the server found is not removed"
    );
    del_pod(&w, &conf, "ctr-alpha", &a_ns);
    let _ = &mut w;
}

#[test]
fn names_resolve_and_go_nftables() {
    names_resolve_and_go("nftables");
}

#[test]
fn names_resolve_and_go_ebpf() {
    names_resolve_and_go("ebpf");
}

#[test]
fn forwarding_follows_resolv_conf_and_servfails_when_down() {
    let Some(w) = world("dns-forward") else {
        return;
    };
    let resolv = resolv_file(&w);
    let first = FakeUpstream::start(
        w.wan(),
        WAN_SERVER_IP,
        "www.example.com.",
        Ipv4Addr::new(203, 0, 113, 80),
    );
    let cfg = config(&w, &resolv);
    let stats = cfg.stats.clone();
    let _server = DnsServer::start(w.node(), cfg);
    let node = w.node();
    for tcp in [false, true] {
        let m = query(node, DNS, "www.example.com.", RecordType::A, tcp).expect("answer");
        assert_eq!(addrs(&m), [Ipv4Addr::new(203, 0, 113, 80)], "tcp={tcp}");
        assert!(m.metadata.recursion_available && !m.metadata.authoritative);
    }
    assert_eq!(
        first.asked.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the second answer came from the cache"
    );
    let m = query(node, DNS, "nothing.example.com.", RecordType::A, false).expect("answer");
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "upstream's NXDOMAIN passed on"
    );

    // resolv.conf replaced: the new upstream answers within a second.
    let second = FakeUpstream::start(
        w.wan(),
        WAN_ROUTER_IP,
        "www.example.com.",
        Ipv4Addr::new(203, 0, 113, 81),
    );
    write_resolv(&resolv, WAN_ROUTER_IP);
    let (m, ok) = until(
        node,
        "www.example.com.",
        RecordType::A,
        false,
        SECOND,
        |m| addrs(m) == [Ipv4Addr::new(203, 0, 113, 81)],
    );
    assert!(ok, "new upstream after resolv.conf changed: {m:?}");

    // Upstream down: SERVFAIL, over UDP and TCP; local names still served.
    drop(second);
    drop(first);
    for tcp in [false, true] {
        let m = query(
            node,
            DNS,
            &format!("down-{tcp}.example.net."),
            RecordType::A,
            tcp,
        )
        .expect("an answer, not silence");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "tcp={tcp}"
        );
    }
    let store = smarter_cni::state::StateStore::open(&w.state_dir(), "smartnet").unwrap();
    store
        .save(&record("ctr-x", Ipv4Addr::new(172, 39, 0, 77), "xenon"))
        .unwrap();
    assert_resolves(
        node,
        "xenon.default.svc.cluster.local.",
        Ipv4Addr::new(172, 39, 0, 77),
        false,
    );
    // The counters saw it all: forwarded (UDP, TCP), SERVFAIL on both, local answers.
    use smarter_cni::dns::stats::{Result as Counted, Transport};
    assert!(
        stats.get(Transport::Udp, Counted::Forwarded) >= 2,
        "{:?}",
        stats.snapshot()
    );
    assert!(
        stats.get(Transport::Tcp, Counted::Forwarded) >= 1,
        "{:?}",
        stats.snapshot()
    );
    assert!(
        stats.get(Transport::Udp, Counted::ServFail) >= 1,
        "{:?}",
        stats.snapshot()
    );
    assert!(
        stats.get(Transport::Tcp, Counted::ServFail) >= 1,
        "{:?}",
        stats.snapshot()
    );
    assert!(
        stats.get(Transport::Udp, Counted::Local) >= 1,
        "{:?}",
        stats.snapshot()
    );
    // Other files in the directory (lock files) are ignored.
    std::fs::write(w.state_dir().join("smartnet/lock"), b"").unwrap();
    assert!(store.remove("ctr-x", "eth0").unwrap());
    assert_nxdomain(node, "xenon.default.svc.cluster.local.");
}

/// A record as the plugin writes it (for tests that need a name without a pod).
fn record(id: &str, ip: Ipv4Addr, name: &str) -> smarter_cni::state::Attachment {
    smarter_cni::state::Attachment {
        container_id: id.into(),
        ifname: "eth0".into(),
        netns: "/nonexistent".into(),
        host_ifname: "smv-none".into(),
        ip,
        prefix: 16,
        ip6: None,
        mac: "02:00:00:00:00:01".into(),
        pod_namespace: "default".into(),
        pod_name: name.into(),
        pod_uid: String::new(),
        port_mappings: vec![],
        aliases: vec![],
        datapath: "nftables".into(),
        result: json!({"ips": [{"address": format!("{ip}/16"), "gateway": GATEWAY.to_string()}]}),
    }
}

#[test]
fn bad_input_and_floods_do_not_stop_other_clients() {
    let Some(mut w) = world("dns-bad-input") else {
        return;
    };
    let resolv = resolv_file(&w);
    let _server = DnsServer::start(w.node(), config(&w, &resolv));
    let conf = conf(&w, "nftables");
    let a_ns = w.add_pod_ns("alpha").unwrap().path().to_path_buf();
    let b_ns = w.add_pod_ns("beta").unwrap().path().to_path_buf();
    let a_ip = add_pod(&w, &conf, "ctr-alpha", &a_ns, "alpha", &[]);
    let b_ip = add_pod(&w, &conf, "ctr-beta", &b_ns, "beta", &[]);
    let (alpha, beta) = (w.pod("alpha").unwrap(), w.pod("beta").unwrap());
    assert_resolves(beta, "alpha.", a_ip, false);

    // A header-only query (question count 1, no question): FORMERR with its id.
    let mut q = make_query("beta.", RecordType::A).to_vec().unwrap();
    q.truncate(14);
    let formerr = spawn_in(alpha, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        s.set_read_timeout(Some(SECOND)).unwrap();
        s.send_to(&q, DNS).unwrap();
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("FORMERR answer");
        (n >= 12 && buf[..2] == q[..2], buf[3] & 0x0f)
    })
    .join()
    .unwrap();
    assert_eq!(formerr, (true, 1), "same id, rcode FORMERR");

    // Garbage, oversized datagrams, a response, and a flood of queries from alpha; truncated
    // and idle TCP connections held open while beta asks.
    let held = spawn_in(alpha, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let mut junk = vec![0xffu8; 9000];
        let _ = s.send_to(&junk[..1], DNS);
        let _ = s.send_to(&[0u8; 12], DNS);
        let _ = s.send_to(&junk, DNS);
        junk.truncate(600);
        let _ = s.send_to(&junk, DNS);
        let _ = s.send_to(
            &make_query("x.", RecordType::A)
                .into_response()
                .to_vec()
                .unwrap(),
            DNS,
        );
        let q = make_query("beta.", RecordType::A).to_vec().unwrap();
        for _ in 0..5000 {
            let _ = s.send_to(&q, DNS);
        }
        let mut conns = Vec::new();
        for i in 0..24 {
            let Ok(mut c) = TcpStream::connect_timeout(&DNS, SECOND) else {
                continue;
            };
            let _ = match i % 3 {
                0 => c.write_all(&[0x01, 0x00, 1, 2, 3]), // announces 256, sends 3
                1 => c.write_all(&[0x00, 0x05, 1, 2, 3, 4, 5]), // too short to be DNS
                _ => Ok(()),                              // idle
            };
            conns.push(c);
        }
        conns
    })
    .join()
    .unwrap();
    for tcp in [false, true] {
        assert_resolves(beta, "alpha.default.svc.cluster.local.", a_ip, tcp);
    }
    drop(held);
    // The flooder is served again once its budget refills.
    let (m, ok) = until(
        alpha,
        "beta.",
        RecordType::A,
        false,
        Duration::from_secs(5),
        |m| addrs(m) == [b_ip],
    );
    assert!(ok, "alpha answered again after its flood: {m:?}");
    del_pod(&w, &conf, "ctr-alpha", &a_ns);
    del_pod(&w, &conf, "ctr-beta", &b_ns);
}
