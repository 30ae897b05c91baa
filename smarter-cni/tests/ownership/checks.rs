//! What "a live pod keeps all its traffic" means, checked from outside the node: its hostPort
//! answers from the wan, it reaches the wan through the NAT, the other live pods reach it; and
//! what "nothing without a live owner" means: every record, allocation, veth and datapath entry
//! belongs to a live pod.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use smarter_testbed::{
    CniCall, EchoServer, NODE_UPLINK_IP, WAN_SERVER_IP, World, tcp_roundtrip, udp_roundtrip,
};

use super::common::{allocations, call, node_veths, records};

/// One live pod as the test sees it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Test name of its namespace (`World::pod`).
    pub ns: String,
    /// The namespace's path (`CNI_NETNS`).
    pub netns: PathBuf,
    /// Container id.
    pub id: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its TCP hostPort (container port 7000), if any.
    pub host_port: Option<u16>,
}

/// The conflist of `dp` with the portMappings capability.
pub fn conf(w: &World, dp: &str) -> Value {
    let mut c = w.netconf("1.1.0");
    c["datapath"] = json!(dp);
    c["capabilities"] = json!({"portMappings": true});
    c
}

/// The config of an ADD of a pod with `host_port` (container port 7000) if given.
pub fn with_port(conf: &Value, host_port: Option<u16>) -> Value {
    let mut c = conf.clone();
    if let Some(p) = host_port {
        c["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": p, "containerPort": 7000, "protocol": "tcp"}]});
    }
    c
}

/// ADD; the address, or the plugin's whole answer as the error.
pub fn add(w: &World, conf: &Value, id: &str, ns: &str, port: Option<u16>) -> Result<Pod, String> {
    let netns = w.pod(ns).expect("pod namespace").path().to_path_buf();
    let out = call(
        w,
        &CniCall::new("ADD", &with_port(conf, port)).pod(id, &netns),
    );
    if out.status != 0 {
        return Err(format!("ADD {id}: {}\n{}", out.stdout, out.stderr));
    }
    Ok(Pod {
        ns: ns.into(),
        netns,
        id: id.into(),
        ip: super::common::result_ip(&out.json),
        host_port: port,
    })
}

/// DEL as containerd sends it at RemovePodSandbox for a sandbox whose namespace is gone:
/// empty `CNI_NETNS`.
pub fn late_del(w: &World, conf: &Value, id: &str, port: Option<u16>) -> Result<(), String> {
    let mut c = CniCall::new("DEL", &with_port(conf, port));
    c.container_id = Some(id.into());
    c.ifname = Some("eth0".into());
    c.netns = Some(PathBuf::new());
    let out = call(w, &c);
    if out.status == 0 {
        Ok(())
    } else {
        Err(format!("DEL {id}: {}\n{}", out.stdout, out.stderr))
    }
}

/// Asserts every pod of `pods` is fully reachable: hostPort from the wan (TCP, served in the
/// pod), the wan from the pod through the NAT (UDP and TCP), and ping from every other pod.
pub fn assert_live(w: &World, pods: &[Pod], context: &str) {
    let t = Duration::from_secs(3);
    let _tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let _udp = EchoServer::udp(w.wan(), WAN_SERVER_IP, 8001);
    for p in pods {
        let ns = w.pod(&p.ns).expect("pod namespace");
        if let Some(port) = p.host_port {
            let _srv = EchoServer::tcp(ns, Ipv4Addr::UNSPECIFIED, 7000);
            tcp_roundtrip(w.wan(), SocketAddr::from((NODE_UPLINK_IP, port)), b"hp", t)
                .unwrap_or_else(|e| panic!("{context}: hostPort {port} of {}: {e}", p.id));
        }
        tcp_roundtrip(ns, SocketAddr::from((WAN_SERVER_IP, 8000)), b"up", t)
            .unwrap_or_else(|e| panic!("{context}: {} → wan (TCP): {e}", p.id));
        udp_roundtrip(ns, SocketAddr::from((WAN_SERVER_IP, 8001)), b"up", t)
            .unwrap_or_else(|e| panic!("{context}: {} → wan (UDP): {e}", p.id));
        for q in pods.iter().filter(|q| q.id != p.id) {
            let from = w.pod(&q.ns).expect("pod namespace");
            assert!(
                super::common::ping(from, p.ip),
                "{context}: {} → {} ({})",
                q.id,
                p.id,
                p.ip
            );
        }
    }
}

/// The eBPF endpoints as (address, host veth).
fn ebpf_endpoints(w: &World) -> Vec<(Ipv4Addr, String)> {
    let Some(dp) = super::common::ebpf(w) else {
        return Vec::new();
    };
    let mut v: Vec<_> = dp
        .endpoints()
        .expect("read endpoints")
        .into_iter()
        .map(|e| (e.ip, e.host_ifname))
        .collect();
    v.sort();
    v
}

/// The eBPF hostPorts as (port, pod address).
fn ebpf_host_ports(w: &World) -> Vec<(u16, Ipv4Addr)> {
    let Some(dp) = super::common::ebpf(w) else {
        return Vec::new();
    };
    let mut v: Vec<_> = dp
        .host_ports()
        .expect("read hostports")
        .into_iter()
        .map(|(p, ip)| (p.host_port, ip))
        .collect();
    v.sort();
    v
}

/// Asserts that exactly the live pods own something: records, IPAM allocations, host veths,
/// and the active datapath's entries (eBPF endpoints and hostPorts, or the nftables
/// elements), and that `dp` is the datapath serving them.
pub fn assert_owned_by_live(w: &World, dp: &str, pods: &[Pod], context: &str) {
    let host = |p: &Pod| smarter_cni::naming::host_veth_name(&p.id, "eth0");
    let mut want_records: Vec<String> =
        pods.iter().map(|p| format!("{}+eth0.json", p.id)).collect();
    want_records.sort();
    let mut got_records = records(w);
    got_records.sort();
    assert_eq!(got_records, want_records, "{context}: records");
    let mut want_ips: Vec<String> = pods.iter().map(|p| p.ip.to_string()).collect();
    want_ips.sort();
    assert_eq!(allocations(w), want_ips, "{context}: IPAM allocations");
    let mut want_veths: Vec<String> = pods.iter().map(host).collect();
    want_veths.sort();
    let mut veths = node_veths(w);
    veths.sort();
    assert_eq!(veths, want_veths, "{context}: host veths");
    for p in pods {
        let rec: Value = serde_json::from_slice(
            &std::fs::read(
                w.state_dir()
                    .join("smartnet")
                    .join(format!("{}+eth0.json", p.id)),
            )
            .expect("record"),
        )
        .expect("record JSON");
        assert_eq!(
            rec["datapath"],
            json!(dp),
            "{context}: {} served by {dp}",
            p.id
        );
    }
    if dp == "ebpf" {
        let mut want: Vec<(Ipv4Addr, String)> = pods.iter().map(|p| (p.ip, host(p))).collect();
        want.sort();
        assert_eq!(
            ebpf_endpoints(w),
            want,
            "{context}: eBPF endpoints and owners"
        );
        let mut ports: Vec<(u16, Ipv4Addr)> = pods
            .iter()
            .filter_map(|p| p.host_port.map(|hp| (hp, p.ip)))
            .collect();
        ports.sort();
        assert_eq!(ebpf_host_ports(w), ports, "{context}: eBPF hostPorts");
    } else {
        let out = w
            .node()
            .exec(&["nft", "-j", "list", "ruleset"])
            .expect("nft list ruleset");
        let text = String::from_utf8_lossy(&out.stdout);
        for p in pods {
            assert!(
                text.contains(&host(p)) && text.contains(&p.ip.to_string()),
                "{context}: nftables elements of {}",
                p.id
            );
        }
        for v in veths_in_ruleset(&text) {
            assert!(
                want_veths.contains(&v),
                "{context}: nftables element of gone {v}"
            );
        }
    }
}

/// The `smv…` names the ruleset mentions.
fn veths_in_ruleset(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"smv") {
        let name: String = rest[i + 1..].chars().take_while(|c| *c != '"').collect();
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &rest[i + 1..];
    }
    out
}
