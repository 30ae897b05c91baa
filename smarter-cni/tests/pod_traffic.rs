//! Per-pod traffic per external interface, end to end on the eBPF datapath: a named pod
//! exchanges UDP with the wan server through the plugin; `smarter-bpfctl traffic` and the
//! real agent's metrics count it on the uplink in both directions, and `status` lists the
//! uplink among the external interfaces the network serves.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{CniCall, EchoServer, NODE_UPLINK_IP, UPLINK, WAN_SERVER_IP, World};

/// Bounds a wait; never asserts speed.
const DEADLINE: Duration = Duration::from_secs(15);
/// The agent's metrics address: the loopback of the world's node namespace.
const METRICS: &str = "127.0.0.1:19402";
/// UDP round trips the pod makes.
const SENT: u64 = 5;
const MSG: &[u8] = b"metered-link-probe-0123456789";
/// The smallest IPv4 packet that carries [`MSG`] (IP and UDP headers): what each counted
/// packet is at least (the Ethernet header comes on top on an Ethernet uplink).
const MIN_PACKET: u64 = 20 + 8 + MSG.len() as u64;

fn ctl(w: &World, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", w.node().path().display()))
        .arg(env!("CARGO_BIN_EXE_smarter-bpfctl"))
        .arg("--bpffs-dir")
        .arg(w.bpffs_dir())
        .arg("--state-dir")
        .arg(w.state_dir())
        .args(args)
        .output()
        .expect("run smarter-bpfctl")
}

/// `smarter-bpfctl traffic <args> -o json`, parsed.
fn traffic(w: &World, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["traffic"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let out = ctl(w, &all);
    assert!(
        out.status.success(),
        "{all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("traffic JSON")
        .as_array()
        .cloned()
        .expect("a JSON array")
}

/// The value of the sample named exactly `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn pod_udp_through_the_uplink_is_counted_both_ways() {
    let Some(mut w) = world("pod_traffic") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    let ns = w.add_pod_ns("web").unwrap().path().to_path_buf();
    let add = CniCall::new("ADD", &conf)
        .pod("ctr-web", &ns)
        .args("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0");
    let out = call(&w, &add);
    assert_eq!(out.status, 0, "ADD: {}\n{}", out.stdout, out.stderr);
    let ip = result_ip(&out.json).to_string();

    let srv = EchoServer::udp(w.wan(), WAN_SERVER_IP, 9000);
    for _ in 0..SENT {
        smarter_testbed::udp_roundtrip(
            w.pod("web").unwrap(),
            SocketAddr::from((WAN_SERVER_IP, 9000)),
            MSG,
            Duration::from_secs(3),
        )
        .expect("UDP round trip to the wan");
    }
    let seen = srv.seen();
    assert!(
        seen.len() >= SENT as usize && seen.iter().all(|p| p.ip() == NODE_UPLINK_IP),
        "the server saw {seen:?}: every datagram NATed to the uplink"
    );
    drop(srv);

    // bpfctl: the pod's rows on the uplink, named, both directions.
    let rows = traffic(&w, &[]);
    let row = |dir: &str| {
        rows.iter()
            .find(|r| {
                r["pod_ip"] == ip.as_str() && r["interface"] == UPLINK && r["direction"] == dir
            })
            .unwrap_or_else(|| panic!("no {dir} row for {ip} on {UPLINK}: {rows:?}"))
            .clone()
    };
    let mut counted = Vec::new();
    for dir in ["out", "in"] {
        let r = row(dir);
        assert_eq!(
            (&r["network"], &r["pod_namespace"], &r["pod_name"]),
            (&json!("smartnet"), &json!("shop"), &json!("web-0")),
            "{r}"
        );
        assert!(r["ifindex"].as_u64().is_some_and(|i| i > 0), "{r}");
        let (packets, bytes) = (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap());
        assert!(
            packets >= SENT,
            "{dir}: {packets} packets counted, {SENT} sent: {r}"
        );
        assert!(
            bytes >= packets * MIN_PACKET,
            "{dir}: {bytes} bytes for {packets}: {r}"
        );
        counted.push((dir, packets, bytes));
    }
    // Filters, and the table.
    let only = traffic(&w, &["--pod", &ip, "--interface", UPLINK]);
    assert!(only.len() >= 2, "{only:?}");
    assert!(
        only.iter()
            .all(|r| r["pod_ip"] == ip.as_str() && r["interface"] == UPLINK)
    );
    assert_eq!(
        traffic(&w, &["--interface", "nosuch0"]),
        Vec::<Value>::new()
    );
    let table = ctl(&w, &["traffic"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.trim_start().starts_with("NETWORK") && table.contains("web-0"),
        "{table}"
    );

    // status: the uplink among the external interfaces served, as the default route's.
    let status = bpfctl_status(&w, w.bpffs_dir());
    let s = &status.as_array().expect("status rows")[0];
    assert_eq!(s["uplink"], UPLINK);
    let up = s["uplinks"]
        .as_array()
        .expect("uplinks")
        .iter()
        .find(|u| u["ifname"] == UPLINK)
        .unwrap_or_else(|| panic!("{UPLINK} not served: {s}"))
        .clone();
    assert_eq!(
        (&up["addr"], &up["link"], &up["default_route"]),
        (
            &json!(NODE_UPLINK_IP.to_string()),
            &json!("ethernet"),
            &json!(true)
        ),
        "{up}"
    );
    assert!(up["mtu"].as_u64().is_some_and(|m| m >= 1280), "{up}");
    assert_eq!(up["ifindex"], row("out")["ifindex"]);
    let human = ctl(&w, &["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    let line = format!(
        "uplink {UPLINK} (ifindex {}): NAT to {NODE_UPLINK_IP}, ethernet, mtu {}, default route",
        up["ifindex"], up["mtu"]
    );
    assert!(human.lines().any(|l| l == line), "{line} not in:\n{human}");

    // The agent's metrics: the same counters (no traffic since), labelled by the pod's name.
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &w,
        &conf,
        dir.path(),
        &["--metrics-addr", METRICS, "--log", "warn"],
    );
    let end = Instant::now() + DEADLINE;
    let text = loop {
        let text = smarter_testbed::scrape_metrics(w.node(), METRICS);
        if text.contains("smarter_pod_interface_bytes_total") {
            break text;
        }
        assert!(Instant::now() < end, "no per-pod metrics: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for (dir, packets, bytes) in counted {
        let labels = format!(
            "{{network=\"smartnet\",namespace=\"shop\",pod=\"web-0\",interface=\"{UPLINK}\",\
             direction=\"{dir}\"}}"
        );
        let p = sample(
            &text,
            &format!("smarter_pod_interface_packets_total{labels}"),
        );
        let b = sample(&text, &format!("smarter_pod_interface_bytes_total{labels}"));
        assert!(
            p.is_some_and(|p| p >= packets),
            "{dir} packets {p:?} < {packets}:\n{text}"
        );
        assert!(
            b.is_some_and(|b| b >= bytes),
            "{dir} bytes {b:?} < {bytes}:\n{text}"
        );
    }
    drop(agent);

    let out = call(&w, &CniCall::new("DEL", &conf).pod("ctr-web", &ns));
    assert_eq!(out.status, 0, "DEL: {}", out.stdout);
    assert_eq!(
        traffic(&w, &["--pod", &ip]),
        Vec::<Value>::new(),
        "counters go with DEL"
    );
}
