//! The plugin executed exactly as a runtime does (environment + stdin, inside a `node`
//! namespace entered with nsenter), against throwaway namespace worlds.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

use common::*;
use serde_json::json;
use smarter_testbed::{CniCall, spawn_in};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);

#[test]
fn add_several_pods_then_traffic_then_del_for_every_version() {
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let Some(mut w) = world("add_traffic_del") else {
            return;
        };
        let conf = w.netconf(version);
        let mut pods = Vec::new();
        for i in 0..3 {
            let ns = w
                .add_pod_ns(&format!("pod{i}"))
                .unwrap()
                .path()
                .to_path_buf();
            let id = format!("ctr{i}");
            let res = add_ok(&w, &conf, &id, &ns);
            // Result shape per version.
            assert_eq!(res["cniVersion"], version);
            assert_eq!(res["interfaces"][1]["name"], "eth0");
            assert_eq!(res["interfaces"][1]["sandbox"], ns.display().to_string());
            assert_eq!(res["ips"][0]["gateway"], "172.39.0.1");
            assert_eq!(res["ips"][0]["interface"], 1);
            assert_eq!(res["ips"][0].get("version").is_some(), version == "0.4.0");
            let ip = result_ip(&res);
            assert!(ip.octets()[..2] == [172, 39] && ip != GATEWAY, "{ip}");
            pods.push((id, ns, ip));
        }
        let ips: Vec<_> = pods.iter().map(|p| p.2).collect();
        assert_eq!(endpoints(&w), ips, "one endpoint entry per pod");
        assert_eq!(node_veths(&w).len(), 3);

        // pod ↔ pod and pod → gateway, ICMP and TCP.
        let ns0 = w.pod("pod0").unwrap();
        let ns1 = w.pod("pod1").unwrap();
        assert!(ping(ns0, ips[1]), "{version}: pod0 → pod1 ping");
        assert!(ping(ns1, ips[0]), "{version}: pod1 → pod0 ping");
        assert!(ping(ns0, GATEWAY), "{version}: pod0 → gateway ping");
        assert!(ping(w.node(), ips[2]), "{version}: node → pod2 ping");
        tcp_echo(ns0, ns1, ips[0]);

        for (i, (id, ns, _)) in pods.iter().enumerate() {
            let out = call(&w, &CniCall::new("DEL", &conf).pod(id, ns));
            assert_eq!(out.status, 0, "DEL {id}: {}", out.stdout);
            assert_eq!(out.stdout, "", "DEL prints nothing on success");
            assert_eq!(
                pod_links(w.pod(&format!("pod{i}")).unwrap()),
                Vec::<String>::new()
            );
        }
        assert_no_leaks(&w, version);
        // The bridge keeps its fixed MAC however ports come and go.
        let want = smarter_cni::naming::bridge_mac("smartnet0");
        let want = want
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let link = w
            .node()
            .exec(&["ip", "-o", "link", "show", "smartnet0"])
            .unwrap();
        assert!(
            String::from_utf8_lossy(&link.stdout).contains(&want),
            "bridge MAC {want}"
        );
    }
}

/// A TCP echo between two pods, driven from threads that entered the pod namespaces.
fn tcp_echo(
    server_ns: &smarter_testbed::Netns,
    client_ns: &smarter_testbed::Netns,
    server_ip: Ipv4Addr,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_in(server_ns, move || {
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 7777)).unwrap();
        tx.send(()).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    rx.recv().unwrap();
    let client = spawn_in(client_ns, move || {
        let mut s = TcpStream::connect((server_ip, 7777)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&client.join().unwrap(), b"hello");
    server.join().unwrap();
}

#[test]
fn del_is_idempotent_and_survives_a_vanished_namespace() {
    let Some(mut w) = world("del_idempotent") else {
        return;
    };
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "c1", &ns);
    for round in 0..2 {
        let out = call(&w, &CniCall::new("DEL", &conf).pod("c1", &ns));
        assert_eq!(out.status, 0, "DEL round {round}: {}", out.stdout);
    }
    assert_no_leaks(&w, "after two DELs");

    // The pod namespace is gone before DEL (the runtime already removed it).
    add_ok(&w, &conf, "c2", &ns);
    w.remove_pod_ns(&ns);
    let out = call(&w, &CniCall::new("DEL", &conf).pod("c2", &ns));
    assert_eq!(out.status, 0, "DEL with namespace gone: {}", out.stdout);
    assert_no_leaks(&w, "after DEL with namespace gone");

    // DEL for something never added.
    let out = call(&w, &CniCall::new("DEL", &conf).pod("never", &ns));
    assert_eq!(out.status, 0, "{}", out.stdout);
}

#[test]
fn add_twice_is_an_error_and_keeps_the_first() {
    let Some(mut w) = world("add_twice") else {
        return;
    };
    let conf = w.netconf("1.0.0");
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    let first = add_ok(&w, &conf, "c1", &ns);
    let out = call(&w, &CniCall::new("ADD", &conf).pod("c1", &ns));
    assert_ne!(out.status, 0);
    assert_eq!(out.code(), Some(104), "{}", out.stdout);
    assert_eq!(endpoints(&w), vec![result_ip(&first)]);
    assert_eq!(node_veths(&w).len(), 1);
}

#[test]
fn check_passes_then_reports_tampering() {
    let Some(mut w) = world("check") else { return };
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    let res = add_ok(&w, &conf, "c1", &ns);
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = res.clone();
    let out = call(&w, &CniCall::new("CHECK", &check_conf).pod("c1", &ns));
    assert_eq!(out.status, 0, "clean CHECK: {}", out.stdout);

    let ip = result_ip(&res);
    let pod = w.pod("pod").unwrap();
    pod.exec(&["ip", "addr", "del", &format!("{ip}/16"), "dev", "eth0"])
        .unwrap();
    let out = call(&w, &CniCall::new("CHECK", &check_conf).pod("c1", &ns));
    assert_eq!(out.code(), Some(105), "{}", out.stdout);
    assert!(
        out.msg().contains(&ip.to_string()),
        "names the missing address: {}",
        out.msg()
    );

    // Host side tampered too: veth detached from the bridge.
    let host = &node_veths(&w)[0];
    w.node()
        .exec(&["ip", "link", "set", host, "nomaster"])
        .unwrap();
    let out = call(&w, &CniCall::new("CHECK", &check_conf).pod("c1", &ns));
    assert!(out.msg().contains("not attached"), "{}", out.msg());

    // CHECK without prevResult is a config error.
    let out = call(&w, &CniCall::new("CHECK", &conf).pod("c1", &ns));
    assert_eq!(out.code(), Some(7), "{}", out.stdout);
}

#[test]
fn gc_removes_everything_not_valid() {
    let Some(mut w) = world("gc") else { return };
    let conf = w.netconf("1.1.0");
    let mut ips = Vec::new();
    for i in 0..3 {
        let ns = w
            .add_pod_ns(&format!("pod{i}"))
            .unwrap()
            .path()
            .to_path_buf();
        ips.push(result_ip(&add_ok(&w, &conf, &format!("c{i}"), &ns)));
    }
    let mut gc_conf = conf.clone();
    gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let out = call(&w, &CniCall::new("GC", &gc_conf));
    assert_eq!(out.status, 0, "GC: {}\n{}", out.stdout, out.stderr);
    assert_eq!(endpoints(&w), vec![ips[1]]);
    assert_eq!(allocations(&w), vec![ips[1].to_string()]);
    assert_eq!(node_veths(&w).len(), 1);
    assert_eq!(records(&w).len(), 1);
    assert!(
        ping(w.pod("pod1").unwrap(), GATEWAY),
        "the valid pod still works"
    );
}

#[test]
fn status_reports_whether_adds_can_be_served() {
    let Some(w) = world("status") else { return };
    let conf = w.netconf("1.1.0");
    let out = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(out.status, 0, "{}", out.stdout);
    // A bpffsDir that is not a bpf file system: `auto` falls back to nftables and can serve,
    // `ebpf` cannot.
    let mut bad = conf.clone();
    bad["bpffsDir"] = json!(w.state_dir());
    let out = call(&w, &CniCall::new("STATUS", &bad));
    assert_eq!(out.status, 0, "auto falls back to nftables: {}", out.stdout);
    bad["datapath"] = json!("ebpf");
    let out = call(&w, &CniCall::new("STATUS", &bad));
    assert_eq!(out.code(), Some(50), "{}", out.stdout);
    assert!(out.msg().contains("eBPF"), "{}", out.stdout);
}

/// Twenty concurrent first ADDs on a fresh node (a node that boots with 20 pending pods),
/// with every CPU also busy, so that races in the node-wide setup show: every ADD succeeds,
/// with eBPF active. Several fresh nodes per run.
#[test]
fn twenty_concurrent_adds_get_distinct_addresses() {
    let _load = smarter_testbed::load::CpuLoad::busy_all();
    for round in 0..3 {
        twenty_concurrent_first_adds(round);
    }
}

fn twenty_concurrent_first_adds(round: u32) {
    let Some(mut w) = world("concurrent") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    let nss: Vec<_> = (0..20)
        .map(|i| w.add_pod_ns(&format!("p{i}")).unwrap().path().to_path_buf())
        .collect();
    let w = std::sync::Arc::new(w);
    let handles: Vec<_> = nss
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            let (w, conf) = (w.clone(), conf.clone());
            std::thread::spawn(move || result_ip(&add_ok(&w, &conf, &format!("c{i}"), &ns)))
        })
        .collect();
    let mut ips: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "round {round}: 20 distinct addresses");
    assert_eq!(
        endpoints(&w),
        ips,
        "round {round}: all 20 attached in the eBPF map"
    );
    assert_eq!(node_veths(&w).len(), 20, "round {round}");
}

#[test]
fn injected_failures_roll_back_completely() {
    let Some(mut w) = world("rollback") else {
        return;
    };
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    for step in ["after-ipam", "after-veth", "after-pod", "after-datapath"] {
        let out = call(
            &w,
            &CniCall::new("ADD", &conf)
                .pod("c1", &ns)
                .env("SMARTER_CNI_FAIL_AT", step),
        );
        assert_eq!(out.code(), Some(5), "{step}: {}", out.stdout);
        assert!(out.msg().contains(step));
        assert_no_leaks(&w, step);
        assert_eq!(
            pod_links(w.pod("pod").unwrap()),
            Vec::<String>::new(),
            "{step}: pod interface left"
        );
    }
    // And a clean ADD still works afterwards.
    add_ok(&w, &conf, "c1", &ns);
}

/// containerd's CNI library sends port mappings with Go field names (no JSON tags on
/// go-cni's `PortMapping`). ADD maps the port (reached from the wan), DEL with the same
/// config succeeds and leaves nothing, on both datapaths; a DEL whose runtimeConfig cannot
/// be read at all still removes the attachment.
#[test]
fn containerd_go_field_names_in_port_mappings() {
    use smarter_testbed::{EchoServer, NODE_UPLINK_IP, tcp_roundtrip};
    use std::net::SocketAddr;
    use std::time::Duration;
    for dp in ["ebpf", "nftables"] {
        let Some(mut w) = world("containerd_portmap") else {
            return;
        };
        let mut conf = w.netconf("1.0.0");
        conf["datapath"] = json!(dp);
        conf["capabilities"] = json!({"portMappings": true});
        conf["runtimeConfig"] = json!({"portMappings": [
            {"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}
        ]});
        let ns = w.add_pod_ns("web").unwrap().path().to_path_buf();
        add_ok(&w, &conf, "web", &ns);
        let _srv = EchoServer::tcp(w.pod("web").unwrap(), Ipv4Addr::UNSPECIFIED, 80);
        tcp_roundtrip(
            w.wan(),
            SocketAddr::from((NODE_UPLINK_IP, 8080)),
            b"hi",
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("{dp}: hostPort from Go-named keys: {e}"));
        let out = call(&w, &CniCall::new("DEL", &conf).pod("web", &ns));
        assert_eq!(out.status, 0, "{dp}: DEL: {}\n{}", out.stdout, out.stderr);
        assert!(
            tcp_roundtrip(
                w.wan(),
                SocketAddr::from((NODE_UPLINK_IP, 8080)),
                b"x",
                Duration::from_secs(1)
            )
            .is_err(),
            "{dp}: mapping gone after DEL"
        );
        assert_no_leaks(&w, dp);

        // A runtimeConfig this plugin cannot read refuses ADD (code 7) but not DEL.
        let ns2 = w.add_pod_ns("other").unwrap().path().to_path_buf();
        let mut plain = w.netconf("1.0.0");
        plain["datapath"] = json!(dp);
        add_ok(&w, &plain, "other", &ns2);
        let mut unreadable = plain.clone();
        unreadable["runtimeConfig"] = json!({"portMappings": [{"HostPort": "eighty"}]});
        let out = call(&w, &CniCall::new("ADD", &unreadable).pod("third", &ns2));
        assert_eq!(
            (out.code(), out.json["cniVersion"].as_str()),
            (Some(7), Some("1.0.0")),
            "{dp}: {}",
            out.stdout
        );
        let out = call(&w, &CniCall::new("DEL", &unreadable).pod("other", &ns2));
        assert_eq!(out.status, 0, "{dp}: DEL: {}\n{}", out.stdout, out.stderr);
        assert_no_leaks(&w, dp);
    }
}

/// The `smarter_<network>` nftables tables in the node namespace.
fn nft_tables(w: &smarter_testbed::World) -> Vec<String> {
    let out = w
        .node()
        .exec(&["nft", "list", "tables"])
        .expect("nft list tables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(" smarter_smartnet"))
        .map(str::to_owned)
        .collect()
}

/// A node that served pods on both datapaths: the nftables tables go with the last
/// nftables pod — at its DEL, and likewise at a GC that removes it — while the eBPF pod
/// keeps working (NAT to the wan, the gateway), not only at the next ADD.
#[test]
fn nft_tables_go_with_the_last_nft_pod_while_ebpf_pods_run() {
    use smarter_testbed::NODE_UPLINK_IP;
    let Some(mut w) = world("retire_nft") else {
        return;
    };
    if let Err(e) = nftables_usable(&w) {
        smarter_testbed::skipped(&format!(
            "SKIP nft_tables_go_with_the_last_nft_pod_while_ebpf_pods_run: no nftables ({e})"
        ));
        return;
    }
    let mut nft = w.netconf("1.1.0");
    nft["datapath"] = json!("nftables");
    let mut ebpf = w.netconf("1.1.0");
    ebpf["datapath"] = json!("ebpf");
    let ns_old = w.add_pod_ns("old").unwrap().path().to_path_buf();
    let ns_new = w.add_pod_ns("new").unwrap().path().to_path_buf();
    add_ok(&w, &nft, "old", &ns_old);
    assert_eq!(
        nft_tables(&w).len(),
        2,
        "inet and bridge tables after the nftables ADD"
    );
    // The conflist now says eBPF: a new pod on eBPF while the old one still uses nftables.
    let new_ip = result_ip(&add_ok(&w, &ebpf, "new", &ns_new));
    assert_eq!(nft_tables(&w).len(), 2, "kept while the old pod uses them");

    let out = call(&w, &CniCall::new("DEL", &ebpf).pod("old", &ns_old));
    assert_eq!(out.status, 0, "DEL: {}\n{}", out.stdout, out.stderr);
    assert_eq!(
        nft_tables(&w),
        Vec::<String>::new(),
        "tables gone with the last nftables pod"
    );
    let srv = wan_roundtrip(&w, "new");
    assert_eq!(
        srv.seen()[0].ip(),
        NODE_UPLINK_IP,
        "the eBPF pod's NAT still works"
    );
    assert!(ping(w.pod("new").unwrap(), GATEWAY));
    assert_eq!(endpoints(&w), vec![new_ip]);
    drop(srv);

    // The same through GC: an nftables pod the runtime no longer lists.
    add_ok(&w, &nft, "old", &ns_old);
    assert_eq!(nft_tables(&w).len(), 2);
    let mut gc = ebpf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "new", "ifname": "eth0"}]);
    let out = call(&w, &CniCall::new("GC", &gc));
    assert_eq!(out.status, 0, "GC: {}\n{}", out.stdout, out.stderr);
    assert_eq!(nft_tables(&w), Vec::<String>::new(), "tables gone after GC");
    let srv = wan_roundtrip(&w, "new");
    assert_eq!(srv.seen()[0].ip(), NODE_UPLINK_IP);

    let out = call(&w, &CniCall::new("DEL", &ebpf).pod("new", &ns_new));
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert_no_leaks(&w, "both datapaths");
}
