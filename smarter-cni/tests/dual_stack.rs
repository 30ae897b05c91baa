//! Dual-stack pods with the real plugin binary, on both datapaths: which pods get IPv6
//! (`ipv6` and the uplink's global IPv6 address), what ADD sets up for them (address, route,
//! the bridge's gateway, the IPAM files, the result) and that DEL takes it all back.
//! Pod-to-pod and NAT66 traffic are the datapaths' tests.

mod common;

use std::net::Ipv6Addr;
use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{CniCall, Netns, World};

fn text(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec(args).expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv6 address files of the network's IPAM directory.
fn allocations6(w: &World) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(w.data_dir().join("smartnet")) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<Ipv6Addr>().is_ok())
        .collect();
    v.sort();
    v
}

fn ips(res: &Value) -> Vec<String> {
    res["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_owned())
        .collect()
}

/// The `/64` address of a dual-stack result.
fn result_ip6(res: &Value) -> String {
    ips(res)
        .into_iter()
        .find(|a| a.contains(':'))
        .unwrap_or_else(|| panic!("no IPv6 in {res}"))
}

fn pod_ns(w: &mut World, name: &str) -> PathBuf {
    w.add_pod_ns(name).unwrap().path().to_path_buf()
}

fn conf_with(w: &World, dp: &str, ipv6: Option<&str>) -> Value {
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    if let Some(mode) = ipv6 {
        conf["ipv6"] = json!(mode);
    }
    conf
}

fn dual_stack_on(dp: &str) {
    let Some(mut w) = world(&format!("dual_{dp}")) else {
        return;
    };
    if dp == "nftables"
        && let Err(why) = nftables_usable(&w)
    {
        eprintln!("SKIP dual_stack nftables: {why}");
        return;
    }
    // auto without a global IPv6 address: IPv4 only.
    let conf = conf_with(&w, dp, None);
    let ns0 = pod_ns(&mut w, "pod0");
    let res = add_ok(&w, &conf, "c0", &ns0);
    assert_eq!(ips(&res).len(), 1, "{dp}: auto without IPv6: {res}");
    assert_eq!(allocations6(&w), Vec::<String>::new());
    // Nothing to masquerade IPv6 to: the node's IPv6 forwarding is left alone.
    let fwd = text(w.node(), &["sysctl", "-n", "net.ipv6.conf.all.forwarding"]);
    assert_eq!(
        fwd.trim(),
        "0",
        "{dp}: IPv6 forwarding turned on without an IPv6 uplink"
    );
    let out = call(&w, &CniCall::new("DEL", &conf).pod("c0", &ns0));
    assert_eq!(out.status, 0, "{}", out.stdout);

    // ipv6: off, even with a global IPv6 address: IPv4 only.
    w.add_ipv6().expect("a dual-stack uplink");
    let off = conf_with(&w, dp, Some("off"));
    let res = add_ok(&w, &off, "c0", &ns0);
    assert_eq!(ips(&res).len(), 1, "{dp}: ipv6 off: {res}");
    assert_eq!(allocations6(&w), Vec::<String>::new());
    let out = call(&w, &CniCall::new("DEL", &off).pod("c0", &ns0));
    assert_eq!(out.status, 0, "{}", out.stdout);

    // auto with the uplink's global IPv6: both families.
    let res = add_ok(&w, &conf, "c1", &ns0);
    let a = result_ip6(&res);
    assert_eq!(ips(&res).len(), 2, "{dp}: {res}");
    assert!(a.starts_with("fd00:ac27::") && a.ends_with("/64"), "{a}");
    let v6 = res["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == a)
        .unwrap();
    assert_eq!(
        (v6["gateway"].as_str(), v6["interface"].as_u64()),
        (Some("fd00:ac27::1"), Some(1))
    );
    assert!(
        res["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "::/0" && r["gw"] == "fd00:ac27::1"),
        "{res}"
    );
    let pod0 = w.pod("pod0").unwrap();
    let addrs = text(pod0, &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    let line = addrs
        .lines()
        .find(|l| l.contains(&format!("inet6 {a} ")))
        .unwrap_or_else(|| panic!("{dp}: no {a} on eth0: {addrs}"));
    assert!(!line.contains("tentative"), "nodad: {line}");
    let route = text(pod0, &["ip", "-6", "route", "show", "default"]);
    assert!(route.contains("via fd00:ac27::1 dev eth0"), "{route}");
    let bridge = text(
        w.node(),
        &["ip", "-6", "-o", "addr", "show", "dev", "smartnet0"],
    );
    assert!(bridge.contains("inet6 fd00:ac27::1/64"), "{bridge}");
    let ip6 = a.split('/').next().unwrap().to_owned();
    assert_eq!(allocations6(&w), std::slice::from_ref(&ip6));
    let file = std::fs::read(w.data_dir().join("smartnet").join(&ip6)).unwrap();
    assert_eq!(file, b"c1\r\neth0");
    assert!(w.data_dir().join("smartnet/last_reserved_ip.1").is_file());
    // CHECK passes with the dual-stack result.
    let mut checked = conf.clone();
    checked["prevResult"] = res.clone();
    let out = call(&w, &CniCall::new("CHECK", &checked).pod("c1", &ns0));
    assert_eq!(out.status, 0, "{dp}: CHECK: {}\n{}", out.stdout, out.stderr);
    // Without its IPv6 default route, CHECK says so.
    w.pod("pod0").unwrap().ip("-6 route del default");
    let out = call(&w, &CniCall::new("CHECK", &checked).pod("c1", &ns0));
    assert_ne!(out.status, 0, "{dp}: CHECK without ::/0");
    assert!(
        out.stdout
            .contains("IPv6 default route is not via fd00:ac27::1"),
        "{dp}: {}",
        out.stdout
    );
    w.pod("pod0")
        .unwrap()
        .ip("-6 route add default via fd00:ac27::1 dev eth0");

    // A second pod: another address, `ipv6: on` without asking the uplink; its hostPort
    // answers on both families, and bpfctl lists both.
    let on = conf_with(&w, dp, Some("on"));
    let ns1 = pod_ns(&mut w, "pod1");
    let mut mapped = on.clone();
    mapped["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let res1 = add_ok(&w, &mapped, "c2", &ns1);
    let b = result_ip6(&res1);
    assert_ne!(a, b);
    let hp = bpfctl_json(&w, w.bpffs_dir(), "hostports");
    let rows: Vec<(&str, &str, u64, u64)> = hp
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default();
            let n = |k: &str| r[k].as_u64().unwrap_or_default();
            (
                s("protocol"),
                s("pod_ip"),
                n("host_port"),
                n("container_port"),
            )
        })
        .collect();
    let b_ip = b.split('/').next().unwrap();
    let v4 = result_ip(&res1).to_string();
    assert_eq!(
        rows,
        vec![("tcp", v4.as_str(), 8080, 80), ("tcp", b_ip, 8080, 80)],
        "{dp}: bpfctl hostports"
    );
    if dp == "ebpf" {
        // Its NAT66 flow, as bpfctl lists it beside IPv4's.
        let server = smarter_testbed::WAN_SERVER_IP6.to_string();
        let pod1 = w.pod("pod1").unwrap();
        assert!(pod1.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &server]));
        let ct = bpfctl_json(&w, w.bpffs_dir(), "ct");
        let node6 = smarter_testbed::NODE_DUAL_IP6.to_string();
        assert!(
            ct.as_array()
                .expect("rows")
                .iter()
                .any(|r| r["proto"] == "icmpv6"
                    && r["pod_ip"] == b_ip
                    && r["remote_ip"] == server.as_str()
                    && r["nat_ip"] == node6.as_str()),
            "bpfctl ct lists the ping6's NAT66 flow: {ct}"
        );
        // `ct delete` removes exactly that flow (by its echo identifier), `ct flush --pod`
        // the pod's NAT66 flows.
        let id = ct
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["proto"] == "icmpv6" && r["pod_ip"] == b_ip)
            .and_then(|r| r["pod_port"].as_u64())
            .expect("the echo identifier");
        let gone = bpfctl_json(
            &w,
            w.bpffs_dir(),
            &format!("ct delete --proto icmp --pod [{b_ip}]:{id} --remote [{server}]:0 --yes"),
        );
        assert_eq!(gone[0]["removed_flows"], 1, "ct delete: {gone}");
        let pod_flows = |w: &World| bpfctl_json(w, w.bpffs_dir(), &format!("ct --pod {b_ip}"));
        assert_eq!(pod_flows(&w), json!([]), "deleted");
        assert!(pod1.succeeds(&["ping", "-6", "-c", "1", "-W", "2", &server]));
        assert_eq!(
            pod_flows(&w).as_array().map(Vec::len),
            Some(1),
            "a new flow"
        );
        let flushed = bpfctl_json(&w, w.bpffs_dir(), &format!("ct flush --pod {b_ip} --yes"));
        assert_eq!(flushed[0]["removed_flows"], 1, "ct flush: {flushed}");
        assert_eq!(pod_flows(&w), json!([]), "flushed");
    }
    assert_eq!(allocations6(&w).len(), 2);
    let bridge = text(
        w.node(),
        &["ip", "-6", "-o", "addr", "show", "dev", "smartnet0"],
    );
    assert_eq!(bridge.matches("fd00:ac27::1/64").count(), 1, "{bridge}");

    // DEL removes them, twice over.
    for (id, ns) in [("c1", &ns0), ("c2", &ns1)] {
        for round in 0..2 {
            let out = call(&w, &CniCall::new("DEL", &conf).pod(id, ns));
            assert_eq!(out.status, 0, "{dp}: DEL {id} #{round}: {}", out.stdout);
        }
    }
    assert_eq!(allocations6(&w), Vec::<String>::new());
    assert_no_leaks(&w, dp);

    // A failure after the IPv6 allocation takes it back.
    let out = call(
        &w,
        &CniCall::new("ADD", &on)
            .pod("c3", &ns0)
            .env("SMARTER_CNI_FAIL_AT", "after-ipam6"),
    );
    assert_eq!(out.code(), Some(5), "{}", out.stdout);
    assert_eq!(allocations6(&w), Vec::<String>::new());
    assert_no_leaks(&w, "after-ipam6");
}

#[test]
fn dual_stack_pods_nftables() {
    dual_stack_on("nftables");
}

#[test]
fn dual_stack_pods_ebpf() {
    dual_stack_on("ebpf");
}
