//! Every class of bad input gets the right CNI error code, names the offending key, value
//! or variable, and leaves nothing behind.

mod common;

use common::*;
use serde_json::json;
use smarter_testbed::CniCall;

#[test]
fn bad_input_classes_get_their_codes_and_leave_nothing() {
    let Some(mut w) = world("bad_input") else {
        return;
    };
    let good = w.netconf("1.1.0");
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();

    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // (what, call, expected code, text the message or details must contain)
    let cases: Vec<(&str, CniCall, u64, &str)> = vec![
        (
            "malformed JSON",
            CniCall {
                stdin: b"{\"cniVersion\": ".to_vec(),
                ..CniCall::new("ADD", &good).pod("c", &ns)
            },
            6,
            "",
        ),
        (
            "wrong version",
            CniCall::new("ADD", &with("cniVersion", json!("0.1.0"))).pod("c", &ns),
            1,
            "0.1.0",
        ),
        (
            "unknown key",
            CniCall::new("ADD", &with("bridgeName", json!("x"))).pod("c", &ns),
            2,
            "bridgeName",
        ),
        (
            "bad CIDR",
            CniCall::new("ADD", &with("subnet", json!("10.0.0.0/33"))).pod("c", &ns),
            7,
            "10.0.0.0/33",
        ),
        (
            "gateway outside subnet",
            CniCall::new("ADD", &with("gateway", json!("10.1.0.1"))).pod("c", &ns),
            7,
            "10.1.0.1",
        ),
        (
            "wrong type",
            CniCall::new("ADD", &with("type", json!("bridge"))).pod("c", &ns),
            7,
            "bridge",
        ),
        (
            "unknown CNI_ARGS key",
            CniCall::new("ADD", &good).pod("c", &ns).args("FOO=bar"),
            2,
            "FOO",
        ),
        (
            "missing environment",
            CniCall {
                netns: None,
                ifname: None,
                ..CniCall::new("ADD", &good).pod("c", &ns)
            },
            4,
            "CNI_NETNS",
        ),
        (
            "netns that does not exist",
            CniCall::new("ADD", &good)
                .pod("c", std::path::Path::new("/run/netns/smt-does-not-exist")),
            4,
            "CNI_NETNS",
        ),
        (
            "requested IP outside the subnet",
            CniCall::new("ADD", &good).pod("c", &ns).args("IP=10.9.9.9"),
            101,
            "10.9.9.9",
        ),
    ];
    for (what, c, code, needle) in cases {
        let out = call(&w, &c);
        assert_ne!(out.status, 0, "{what}: must fail");
        assert_eq!(out.code(), Some(code), "{what}: {}", out.stdout);
        let text = format!(
            "{} {}",
            out.msg(),
            out.json["details"].as_str().unwrap_or_default()
        );
        assert!(
            text.contains(needle),
            "{what}: error must name {needle:?}: {text}"
        );
        assert_no_leaks(&w, what);
        assert!(
            pod_links(w.pod("pod").unwrap()).is_empty(),
            "{what}: pod interface left"
        );
    }
}

#[test]
fn exhausted_subnet_names_the_subnet_and_leaves_nothing() {
    let Some(mut w) = world("exhausted") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["subnet"] = json!("10.77.0.0/30");
    conf["gateway"] = json!("10.77.0.1");
    let a = w.add_pod_ns("a").unwrap().path().to_path_buf();
    let b = w.add_pod_ns("b").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "ca", &a);
    let out = call(&w, &CniCall::new("ADD", &conf).pod("cb", &b));
    assert_eq!(out.code(), Some(100), "{}", out.stdout);
    assert!(out.msg().contains("10.77.0.0/30"), "{}", out.msg());
    assert!(pod_links(w.pod("b").unwrap()).is_empty());
    assert_eq!(node_veths(&w).len(), 1, "only the first pod's veth");
    assert_eq!(allocations(&w), vec!["10.77.0.2".to_string()]);
    // STATUS says the network cannot serve ADDs.
    let out = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(out.code(), Some(50), "{}", out.stdout);
}

#[test]
fn version_verb_answers_without_touching_anything() {
    let Some(w) = world("version") else { return };
    let out = call(
        &w,
        &CniCall::new("VERSION", &json!({"cniVersion": "1.0.0"})),
    );
    assert_eq!(out.status, 0);
    assert_eq!(out.json["cniVersion"], "1.0.0");
    assert_eq!(
        out.json["supportedVersions"],
        json!(["0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn status_and_gc_need_cni_version_1_1() {
    let Some(w) = world("verb_version") else {
        return;
    };
    let out = call(&w, &CniCall::new("STATUS", &w.netconf("1.0.0")));
    assert_eq!(out.code(), Some(1), "{}", out.stdout);
    let out = call(&w, &CniCall::new("GC", &w.netconf("1.1.0")));
    assert_eq!(
        out.code(),
        Some(7),
        "GC without valid-attachments is refused: {}",
        out.stdout
    );
}
