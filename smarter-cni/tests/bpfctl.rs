//! `smarter-bpfctl` against a live namespace world with traffic flowing: every read command's
//! JSON checked against what the test created, monitor catching a real drop, careful writes
//! changing exactly what they say, and the error exits.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{NODE_UPLINK_IP, UPLINK, WAN_SERVER_IP, World};

fn ctl_cmd(w: &World, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", w.node().path().display()))
        .arg(env!("CARGO_BIN_EXE_smarter-bpfctl"))
        .arg("--bpffs-dir")
        .arg(w.bpffs_dir())
        .arg("--state-dir")
        .arg(w.state_dir())
        .args(args);
    c
}

fn ctl(w: &World, args: &[&str]) -> Output {
    ctl_cmd(w, args).output().expect("run smarter-bpfctl")
}

fn json_of(w: &World, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = ctl(w, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
        .as_array()
        .cloned()
        .expect("a JSON array")
}

#[test]
fn every_command_against_a_live_datapath() {
    let Some(mut w) = world("bpfctl") else { return };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    conf["denyCIDRs"] = json!(["203.0.113.128/25"]);
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    let mut with_port = conf.clone();
    with_port["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let ip0 = result_ip(&add_ok(&w, &with_port, "ctr0", &ns0));
    let ip1 = result_ip(&add_ok(&w, &conf, "ctr1", &ns1));
    let _srv = wan_roundtrip(&w, "pod0");
    assert!(ping(w.pod("pod1").unwrap(), WAN_SERVER_IP));

    let status = json_of(&w, &["status"]);
    assert_eq!(status.len(), 1);
    let s = &status[0];
    assert_eq!(s["network"], "smartnet");
    assert_eq!(s["layout"], smarter_common::LAYOUT_VERSION);
    assert_eq!(s["uplink"], "uplink0");
    assert_eq!(s["uplink_addr"], NODE_UPLINK_IP.to_string());
    let uplinks = s["uplinks"].as_array().unwrap();
    assert!(
        uplinks.iter().any(|u| u["ifname"] == UPLINK
            && u["addr"] == NODE_UPLINK_IP.to_string()
            && u["link"] == "ethernet"
            && u["default_route"] == true),
        "{uplinks:?}"
    );
    let attachments = s["attachments"].as_array().unwrap();
    assert_eq!(
        attachments.len(),
        5,
        "two pods, the uplink's ingress program and egress backstop, loopback: {attachments:?}"
    );
    for dir in ["ingress", "egress"] {
        assert!(
            attachments
                .iter()
                .any(|a| a["ifname"] == UPLINK && a["direction"] == dir),
            "{dir} on {UPLINK}: {attachments:?}"
        );
    }
    assert!(
        attachments.iter().all(|a| a["mode"] != "none"),
        "{attachments:?}"
    );
    let endpoints_fill = s["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["map"] == "endpoints")
        .unwrap()
        .clone();
    assert_eq!(endpoints_fill["entries"], 2);
    assert_eq!(endpoints_fill["capacity"], 1024);

    let eps = json_of(&w, &["endpoints"]);
    let ips: Vec<&str> = eps.iter().map(|e| e["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, [ip0.to_string(), ip1.to_string()]);
    assert_eq!(eps[0]["container_id"], "ctr0");
    assert!(eps[0]["packets"].as_u64().unwrap() > 0);

    let ct0 = json_of(&w, &["ct", "--pod", &ip0.to_string()]);
    assert!(
        ct0.iter().any(|c| c["proto"] == "tcp"
            && c["remote_ip"] == WAN_SERVER_IP.to_string()
            && c["remote_port"] == 8000
            && c["nat_ip"] == NODE_UPLINK_IP.to_string()),
        "{ct0:?}"
    );
    assert!(ct0.iter().all(|c| c["pod_ip"] == ip0.to_string()));
    let icmp = json_of(&w, &["nat", "--proto", "icmp"]);
    assert!(!icmp.is_empty() && icmp.iter().all(|c| c["proto"] == "icmp"));

    // traffic: pod0's TCP round trip out of and back in through the uplink, by pod address.
    let traffic = json_of(&w, &["traffic", "--pod", &ip0.to_string()]);
    for dir in ["out", "in"] {
        assert!(
            traffic.iter().any(|t| t["interface"] == UPLINK
                && t["direction"] == dir
                && t["packets"].as_u64().unwrap() > 0),
            "{dir}: {traffic:?}"
        );
    }
    assert!(traffic.iter().all(|t| t["pod_ip"] == ip0.to_string()));

    let hp = json_of(&w, &["hostports"]);
    assert_eq!(
        hp,
        vec![
            json!({"network": "smartnet", "protocol": "tcp", "host_port": 8080,
                     "pod_ip": ip0.to_string(), "container_port": 80})
        ]
    );

    let cfg = &json_of(&w, &["config"])[0];
    assert_eq!(cfg["gateway"], "172.39.0.1");
    assert_eq!(cfg["subnet"], "172.39.0.0/16");
    assert_eq!(cfg["deny"], json!(["203.0.113.128/25"]));
    assert_eq!(cfg["nat_ports"], json!([61000, 64999]));
    assert_eq!(cfg["trace"], false);

    let stats = json_of(&w, &["stats", "--interval", "0.2"]);
    let nat_out = stats.iter().find(|s| s["verdict"] == "nat_out").unwrap();
    assert!(nat_out["packets"].as_u64().unwrap() > 0);
    assert!(nat_out.get("packets_per_s").is_some());

    // monitor catches a real drop: pod1 pings a denied address.
    let mut mon = ctl_cmd(&w, &["monitor", "--count", "1", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let denied = Ipv4Addr::new(203, 0, 113, 200);
    assert!(!ping(w.pod("pod1").unwrap(), denied));
    let mut line = String::new();
    BufReader::new(mon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = mon.wait();
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(ev["verdict"], "drop_deny", "{ev}");
    assert_eq!(ev["dst"], denied.to_string());
    assert_eq!(ev["src"], ip1.to_string());

    // Writes: refused without --yes (nothing changes), then exactly pod0's flows go.
    let before = json_of(&w, &["ct"]).len();
    let refused = ctl(&w, &["ct", "flush", "--pod", &ip0.to_string()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("would remove"));
    assert_eq!(json_of(&w, &["ct"]).len(), before);
    let flushed = json_of(&w, &["ct", "flush", "--pod", &ip0.to_string(), "--yes"]);
    let removed = flushed[0]["removed_flows"].as_u64().unwrap();
    assert!(removed >= 1);
    let after = json_of(&w, &["ct"]);
    assert_eq!(after.len() as u64, before as u64 - removed);
    assert!(after.iter().all(|c| c["pod_ip"] != ip0.to_string()));
    assert!(after.iter().any(|c| c["pod_ip"] == ip1.to_string()));

    // Completions.
    let comp = ctl(&w, &["completions", "bash"]);
    assert!(comp.status.success());
    assert!(String::from_utf8_lossy(&comp.stdout).contains("smarter-bpfctl"));
}

#[test]
fn error_exits_name_the_problem() {
    let Some(w) = world("bpfctl_errors") else {
        return;
    };
    // No pins at all.
    let out = ctl(&w, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing pin root.
    let out = Command::new(env!("CARGO_BIN_EXE_smarter-bpfctl"))
        .args(["--bpffs-dir", "/nonexistent/smarter", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/smarter"));
    // Pins of another layout version only.
    std::fs::create_dir_all(w.bpffs_dir().join("oldnet/v1")).unwrap();
    let out = ctl(&w, &["--network", "oldnet", "status"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("v1"));
    // An unknown network.
    let out = ctl(&w, &["--network", "nosuch", "endpoints"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}

#[test]
fn nftables_networks_are_read_from_their_tables() {
    let Some(mut w) = world("bpfctl_nft") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("nftables");
    conf["denyCIDRs"] = json!(["203.0.113.128/25"]);
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let mut with_port = conf.clone();
    with_port["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let add = smarter_testbed::CniCall::new("ADD", &with_port)
        .pod("ctr0", &ns0)
        .args("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0");
    let out = call(&w, &add);
    assert_eq!(out.status, 0, "ADD: {}", out.stdout);
    let ip0 = result_ip(&out.json);
    // Traffic the named counters see: one NATed flow, one denied packet.
    let _srv = wan_roundtrip(&w, "pod0");
    assert!(!ping(
        w.pod("pod0").unwrap(),
        Ipv4Addr::new(203, 0, 113, 200)
    ));

    let status = json_of(&w, &["status"]);
    assert_eq!(status.len(), 1, "{status:?}");
    let s = &status[0];
    assert_eq!(s["datapath"], "nftables");
    assert_eq!(s["layout"], Value::Null);
    assert_eq!(
        s["tables"],
        json!(["inet smarter_smartnet", "bridge smarter_smartnet"])
    );
    let fill = |m: &str| {
        s["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["map"] == m)
            .unwrap()["entries"]
            .clone()
    };
    assert_eq!((fill("endpoints"), fill("hostports")), (json!(1), json!(1)));

    let eps = json_of(&w, &["endpoints"]);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["ip"], ip0.to_string());
    assert_eq!(
        (&eps[0]["pod_namespace"], &eps[0]["pod_name"]),
        (&json!("shop"), &json!("web-0"))
    );
    assert_eq!(eps[0]["container_id"], "ctr0");
    assert_eq!(
        eps[0]["packets"],
        Value::Null,
        "no per-pod counters in nftables"
    );

    let hp = json_of(&w, &["hostports"]);
    assert_eq!(hp.len(), 1);
    assert_eq!(
        (&hp[0]["host_port"], &hp[0]["pod_ip"]),
        (&json!(8080), &json!(ip0.to_string()))
    );

    let stats = json_of(&w, &["stats"]);
    let count = |v: &str| {
        stats
            .iter()
            .find(|r| r["verdict"] == v)
            .map(|r| r["packets"].as_u64().unwrap())
    };
    assert!(count("nat_masquerade").is_some_and(|n| n >= 1), "{stats:?}");
    assert!(count("drop_deny").is_some_and(|n| n >= 1), "{stats:?}");

    // traffic works on both datapaths (what nftables counts per pod and interface).
    let traffic = json_of(&w, &["traffic"]);
    assert!(
        traffic.iter().all(|t| t["pod_ip"] == ip0.to_string()),
        "{traffic:?}"
    );

    // eBPF-only commands say so (exit 6) and name the datapath.
    for cmd in [["ct"].as_slice(), &["config"], &["monitor", "--count", "1"]] {
        let out = ctl(&w, cmd);
        assert_eq!(
            out.status.code(),
            Some(6),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nftables"),
            "{cmd:?}"
        );
    }
    let out = call(
        &w,
        &smarter_testbed::CniCall::new("DEL", &conf).pod("ctr0", &ns0),
    );
    assert_eq!(out.status, 0);
}
