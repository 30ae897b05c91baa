//! Hostnames from the container runtime (CRI), against a CRI server stub on a unix socket:
//! the sandbox's hostname wins over the pod name even when the runtime only learns of the
//! sandbox after ADD, host-networked pods resolve per asker, and an absent runtime does not
//! stop the fallback names.
//!
//! Driving Debian's containerd 1.6 instead was not done (see the DNS notes in the report of
//! issue 5): a sandbox needs a pause image, and no registry is reachable here.

mod common;
#[path = "dns/cri_stub.rs"]
mod cri_stub;
#[path = "dns/support.rs"]
mod support;

use std::net::Ipv4Addr;
use std::path::Path;

use common::*;
use cri_stub::{CriStub, Sandbox};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;
use smarter_testbed::{CniCall, World};
use support::*;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);

fn add_pod(w: &World, id: &str, ns: &Path, name: &str) -> Ipv4Addr {
    let mut c = w.netconf("1.1.0");
    c["datapath"] = json!("nftables");
    let add = CniCall::new("ADD", &c)
        .pod(id, ns)
        .args(&format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"));
    let out = call(w, &add);
    assert_eq!(out.status, 0, "ADD {id}: {}\n{}", out.stdout, out.stderr);
    result_ip(&out.json)
}

fn empty_resolv(w: &World) -> std::path::PathBuf {
    let p = w.data_dir().with_file_name("resolv.conf");
    std::fs::write(&p, "# no upstream\n").unwrap();
    p
}

#[test]
fn hostnames_come_from_the_runtime() {
    let Some(mut w) = world("dns-cri") else {
        return;
    };
    let sock = w.data_dir().with_file_name("cri.sock");
    let stub = CriStub::start(&sock);
    stub.add(
        "ctr-web",
        Sandbox {
            name: "web-0".into(),
            namespace: "default".into(),
            hostname: "example".into(),
            host_network: false,
            not_found_first: 3,
        },
    );
    stub.add(
        "sandbox-hostnet",
        Sandbox {
            name: "agent-x1".into(),
            namespace: "kube-system".into(),
            hostname: String::new(),
            host_network: true,
            not_found_first: 0,
        },
    );
    let mut cfg = config(&w, &empty_resolv(&w));
    cfg.cri_socket = Some(sock.clone());
    let _server = DnsServer::start(w.node(), cfg);

    let c_ns = w.add_pod_ns("client").unwrap().path().to_path_buf();
    let web_ns = w.add_pod_ns("web").unwrap().path().to_path_buf();
    let c_ip = add_pod(&w, "ctr-client", &c_ns, "client");
    let web_ip = add_pod(&w, "ctr-web", &web_ns, "web-0");
    let client = w.pod("client").unwrap();

    // The runtime's hostname, although the runtime did not know the sandbox at first.
    for tcp in [false, true] {
        assert_resolves(client, "example.", web_ip, tcp);
        assert_resolves(client, "example.default.svc.cluster.local.", web_ip, tcp);
    }
    assert!(stub.status_calls() >= 4, "asked again after NotFound");
    // The pod-name fallback is replaced, not kept beside it.
    assert_nxdomain(client, "web-0.default.svc.cluster.local.");
    // A sandbox the runtime never reports keeps its pod name.
    assert_resolves(w.node(), "client.default.svc.cluster.local.", c_ip, false);

    // Host-networked pod: the gateway for pods, loopback for the node.
    assert_resolves(
        client,
        "agent-x1.kube-system.svc.cluster.local.",
        GATEWAY,
        false,
    );
    assert_resolves(w.node(), "agent-x1.", Ipv4Addr::LOCALHOST, false);

    // Nothing upstream: SERVFAIL for other names, local names unaffected.
    let m = query(client, DNS, "example.org.", RecordType::A, false).expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let _ = &mut w;
}

#[test]
fn runtime_down_still_serves_pod_names() {
    let Some(mut w) = world("dns-cri-down") else {
        return;
    };
    let mut cfg = config(&w, &empty_resolv(&w));
    cfg.cri_socket = Some(w.data_dir().with_file_name("missing.sock"));
    let _server = DnsServer::start(w.node(), cfg);
    let ns = w.add_pod_ns("solo").unwrap().path().to_path_buf();
    let ip = add_pod(&w, "ctr-solo", &ns, "solo");
    assert_resolves(w.node(), "solo.default.svc.cluster.local.", ip, false);
    assert_resolves(w.pod("solo").unwrap(), "solo.", ip, true);
    let _ = &mut w;
}
