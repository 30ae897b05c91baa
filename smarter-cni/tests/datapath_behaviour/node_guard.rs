//! The node does not listen to pods anyway: ADD sets `accept_ra=0`, `accept_redirects=0` (IPv6
//! and IPv4) and `send_redirects=0` on the bridge and every host veth, the bridge learns no MAC
//! from a pod port (learning and unknown-unicast flooding off, the pod's MAC static on its
//! port), and CHECK and `smarter-bpfctl status` report a sysctl that drifted.

use serde_json::json;
use smarter_cni::cmd::GUARD_SYSCTLS;
use smarter_testbed::{CniCall, Netns};

use super::common::{add_ok, call, node_veths, world};

fn sysctl(ns: &Netns, key: &str) -> String {
    let out = ns.exec(&["sysctl", "-n", key]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The node's sysctls, the bridge port flags and FDB, and the drift reports, on one datapath.
pub fn the_node_takes_no_configuration_from_pods(dp: &str) {
    let Some(mut w) = world("behaviour_node_guard") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    let ns = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let res = add_ok(&w, &conf, "ctr0", &ns);
    let node = w.node();
    let veth = node_veths(&w).pop().expect("the host veth");
    for ifname in ["smartnet0", veth.as_str()] {
        for (family, name, want) in GUARD_SYSCTLS {
            let key = format!("net.{family}.conf.{ifname}.{name}");
            assert_eq!(sysctl(node, &key), want, "{dp}: {key}");
        }
    }
    // The port learns nothing and floods no unknown unicast; the pod's MAC is static on it.
    let details = node.exec(&["ip", "-d", "link", "show", &veth]).unwrap();
    let details = String::from_utf8_lossy(&details.stdout);
    assert!(
        details.contains("learning off") && details.contains(" flood off"),
        "{dp}: port flags: {details}"
    );
    let mac = res["interfaces"][1]["mac"].as_str().expect("pod MAC");
    let fdb = node.exec(&["bridge", "fdb", "show", "dev", &veth]).unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(mac) && l.contains("master smartnet0") && l.contains("static")),
        "{dp}: the pod's MAC static on its port: {fdb}"
    );

    let mut check = conf.clone();
    check["prevResult"] = res;
    let out = call(&w, &CniCall::new("CHECK", &check).pod("ctr0", &ns));
    assert_eq!(out.status, 0, "{dp}: clean CHECK: {}", out.stdout);
    assert!(status_drift(&w, dp).is_empty(), "{dp}: no drift reported");

    // Someone turns router advertisements back on.
    for ifname in ["smartnet0", veth.as_str()] {
        node.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{ifname}.accept_ra=1"),
        ])
        .unwrap();
    }
    let out = call(&w, &CniCall::new("CHECK", &check).pod("ctr0", &ns));
    assert_eq!(
        out.code(),
        Some(105),
        "{dp}: CHECK finds the drift: {}",
        out.stdout
    );
    for ifname in ["smartnet0", veth.as_str()] {
        let said = format!("net.ipv6.conf.{ifname}.accept_ra is 1, not 0");
        assert!(
            out.msg().contains(&said),
            "{dp}: CHECK names {said}: {}",
            out.msg()
        );
        assert!(
            status_drift(&w, dp).contains(&said),
            "{dp}: bpfctl status names {said}"
        );
    }
}

/// `smarter-bpfctl status -o json`'s `sysctl_drift` of the network.
fn status_drift(w: &smarter_testbed::World, dp: &str) -> Vec<String> {
    let rows = super::common::bpfctl_status(w, w.bpffs_dir());
    rows[0]["sysctl_drift"]
        .as_array()
        .unwrap_or_else(|| panic!("{dp}: sysctl_drift in {rows}"))
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}
