//! Chaining: a conflist with smarter-cni first and Debian's reference plugins after it
//! (`tuning`, `firewall`, `portmap`), which consume `prevResult`, run for ADD, CHECK and DEL as
//! libcni runs them: in order for ADD and CHECK, in reverse for DEL, each later plugin getting
//! the previous result, CHECK and DEL getting the cached final result.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{CniCall, World, run_plugin};

const REFERENCE: &str = "/usr/lib/cni";

/// The plugin binary for `type`: ours, or Debian's reference plugins.
fn plugin_bin(kind: &str) -> PathBuf {
    if kind == "smarter-cni" {
        bin()
    } else {
        Path::new(REFERENCE).join(kind)
    }
}

/// One libcni-style invocation of every plugin of `list`; returns the final result (ADD) or
/// `Null`. Panics naming the plugin that failed.
fn run_chain(w: &World, list: &Value, verb: &str, id: &str, ns: &Path, cached: &Value) -> Value {
    let plugins = list["plugins"].as_array().expect("plugins");
    let order: Vec<&Value> = if verb == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let mut prev = cached.clone();
    for p in order {
        let mut conf = p.clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let kind = p["type"].as_str().expect("type").to_string();
        let out = run_plugin(
            w.node(),
            &plugin_bin(&kind),
            &CniCall::new(verb, &conf).pod(id, ns),
        )
        .expect("run plugin");
        assert_eq!(
            out.status, 0,
            "{verb} {kind}: {}\n{}",
            out.stdout, out.stderr
        );
        if verb == "ADD" {
            prev = out.json;
        }
    }
    if verb == "ADD" { prev } else { Value::Null }
}

#[test]
fn reference_plugins_chain_after_smarter_cni() {
    if !Path::new(REFERENCE).join("tuning").exists() {
        smarter_testbed::skipped(
            "SKIP chaining: Debian's containernetworking-plugins are not installed",
        );
        return;
    }
    let Some(mut w) = world("chaining") else {
        return;
    };
    let mut ours = w.netconf("1.0.0");
    ours.as_object_mut().unwrap().remove("cniVersion");
    ours.as_object_mut().unwrap().remove("name");
    ours["datapath"] = json!("ebpf");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "smartnet",
        "plugins": [
            ours,
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}},
            {"type": "firewall", "backend": "iptables"},
        ]
    });
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    let result = run_chain(&w, &list, "ADD", "chained", &ns, &Value::Null);
    let ip = result_ip(&result);
    assert!(
        result["interfaces"]
            .as_array()
            .is_some_and(|i| i.len() == 2),
        "the final result still carries our interfaces: {result}"
    );
    let pod = w.pod("pod").unwrap();
    let sysctl = pod
        .exec(&["sysctl", "-n", "net.ipv4.conf.eth0.accept_redirects"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sysctl.stdout).trim(),
        "0",
        "tuning ran"
    );
    assert!(
        ping(pod, "172.39.0.1".parse().unwrap()),
        "pod works after the chain"
    );
    let fw = w.node().exec(&["iptables-save", "-t", "filter"]).unwrap();
    assert!(
        String::from_utf8_lossy(&fw.stdout).contains(&ip.to_string()),
        "firewall saw our address in prevResult"
    );

    run_chain(&w, &list, "CHECK", "chained", &ns, &result);
    run_chain(&w, &list, "DEL", "chained", &ns, &result);
    assert_no_leaks(&w, "after chained DEL");
    let fw = w.node().exec(&["iptables-save", "-t", "filter"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&fw.stdout).contains(&ip.to_string()),
        "firewall rules removed"
    );
    // DEL again (the runtime retrying) still succeeds along the chain.
    run_chain(&w, &list, "DEL", "chained", &ns, &result);
}
