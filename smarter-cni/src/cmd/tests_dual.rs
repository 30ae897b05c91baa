//! Dual-stack ADD, CHECK, DEL and GC against the in-memory node: which pods get IPv6
//! (`ipv6` and the uplink), what ADD sets up for them and that every verb takes it back.

use std::net::Ipv6Addr;

use ipnetwork::Ipv6Network;

use super::fakes::host::NODE;
use super::tests_verbs::{Node, run};
use super::{check, gc};
use crate::cni::config::Ipv6Mode;
use crate::cni::{CniError, ValidAttachment};
use crate::netlink::snapshot::{Addr6State, LinkState};

fn node(mode: Ipv6Mode) -> Node {
    let mut n = Node::new();
    n.ipv6 = mode;
    n
}

/// Gives the fake node an uplink `eth9` (index 900) holding `addr`.
fn uplink_with(n: &Node, addr: &str) {
    let mut w = n.host.world.lock().unwrap();
    w.uplink.links.push(LinkState {
        index: 900,
        name: "eth9".into(),
        mac: vec![2, 0, 0, 0, 0, 9],
        up: true,
        l3: false,
        loopback: false,
        master: None,
        mtu: 1500,
    });
    w.uplink.addrs6.push(Addr6State {
        index: 900,
        addr: addr.parse().unwrap(),
        prefix_len: 64,
    });
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn a_dual_stack_pod_gets_its_address_route_and_result() {
    let n = node(Ipv6Mode::On);
    let res = n.add("a").expect("ADD");
    let c = n.ctx("ADD", "a");
    let want = ip6("fd00:ac27::2");
    let net = Ipv6Network::new(want, 64).unwrap();

    let br = n.host.link(NODE, &c.conf.bridge).unwrap();
    assert_eq!(
        br.addrs6,
        [Ipv6Network::new(ip6("fd00:ac27::1"), 64).unwrap()]
    );
    let eth0 = n.host.link(&n.ns("a"), "eth0").unwrap();
    assert_eq!(eth0.addrs6, [net]);
    let route6 = n.host.world.lock().unwrap().ns[&n.ns("a")].default_route6;
    assert_eq!(route6, Some((ip6("fd00:ac27::1"), eth0.info.index)));

    assert_eq!(res["ips"].as_array().unwrap().len(), 2);
    assert_eq!(res["ips"][1]["address"], "fd00:ac27::2/64");
    assert_eq!(res["ips"][1]["gateway"], "fd00:ac27::1");
    assert_eq!(res["ips"][1]["interface"], 1);
    assert_eq!(res["routes"][1]["dst"], "::/0");
    assert_eq!(res["routes"][1]["gw"], "fd00:ac27::1");

    let record = c.state().unwrap().load("a", "eth0").unwrap().unwrap();
    assert_eq!(record.ip6, Some(want));
    assert_eq!(c.ipam6().unwrap().lookup("a", "eth0").unwrap(), Some(want));
    let spec = n.dps.0.endpoints.lock().unwrap()[0].1.clone();
    assert_eq!(spec.ip6, Some(want));

    // A second pod: another address, the bridge's unchanged.
    let res_b = n.add("b").unwrap();
    assert_eq!(res_b["ips"][1]["address"], "fd00:ac27::3/64");
    assert_eq!(n.host.link(NODE, &c.conf.bridge).unwrap().addrs6.len(), 1);
}

#[test]
fn auto_gives_ipv6_only_with_a_global_ipv6_uplink() {
    let n = node(Ipv6Mode::Auto);
    let res = n.add("a").unwrap();
    assert_eq!(res["ips"].as_array().unwrap().len(), 1);
    assert!(n.host.link(&n.ns("a"), "eth0").unwrap().addrs6.is_empty());
    let c = n.ctx("ADD", "a");
    assert!(c.ipam6().unwrap().allocations().unwrap().is_empty());
    assert!(n.host.link(NODE, &c.conf.bridge).unwrap().addrs6.is_empty());

    uplink_with(&n, "2001:db8:1::2");
    let res = n.add("b").unwrap();
    assert_eq!(res["ips"][1]["address"], "fd00:ac27::2/64");
    assert_eq!(
        c.state().unwrap().load("b", "eth0").unwrap().unwrap().ip6,
        Some(ip6("fd00:ac27::2"))
    );
}

#[test]
fn off_never_gives_ipv6_even_with_an_ipv6_uplink() {
    let n = node(Ipv6Mode::Off);
    uplink_with(&n, "2001:db8:1::2");
    let res = n.add("a").unwrap();
    assert_eq!(res["ips"].as_array().unwrap().len(), 1);
    assert_eq!(res["routes"].as_array().unwrap().len(), 1);
    let c = n.ctx("ADD", "a");
    assert!(c.ipam6().unwrap().allocations().unwrap().is_empty());
    assert_eq!(
        c.state().unwrap().load("a", "eth0").unwrap().unwrap().ip6,
        None
    );
}

#[test]
fn del_releases_the_ipv6_address_and_is_idempotent() {
    let n = node(Ipv6Mode::On);
    n.add("a").unwrap();
    n.del("a").expect("DEL");
    n.assert_gone("a");
    n.del("a").expect("a second DEL");
    // The address is free again, the round robin moves on.
    let res = n.add("b").unwrap();
    assert_eq!(res["ips"][1]["address"], "fd00:ac27::3/64");
}

#[test]
fn check_verifies_the_recorded_ipv6_address() {
    let n = node(Ipv6Mode::On);
    let res = n.add("a").unwrap();
    let checking = |prev: &serde_json::Value| {
        let mut c = n.ctx("CHECK", "a");
        c.conf.prev_result = Some(prev.clone());
        run(check::check(&c))
    };
    checking(&res).expect("CHECK right after ADD");
    let mut no_v6 = res.clone();
    no_v6["ips"].as_array_mut().unwrap().truncate(1);
    let err = checking(&no_v6).unwrap_err();
    assert!(
        err.msg.contains("does not list fd00:ac27::2/64"),
        "{}",
        err.msg
    );
    n.host.edit(&n.ns("a"), "eth0", |l| l.addrs6.clear());
    let err = checking(&res).unwrap_err();
    assert_eq!(err.code, CniError::CHECK_MISMATCH);
    assert!(
        err.msg.contains("eth0 lacks fd00:ac27::2/64"),
        "{}",
        err.msg
    );
    // The pod's `::/0` via the bridge's `::1` is checked too.
    n.host
        .world
        .lock()
        .unwrap()
        .ns
        .get_mut(&n.ns("a"))
        .unwrap()
        .default_route6 = None;
    let err = checking(&res).unwrap_err();
    assert!(
        err.msg
            .contains("IPv6 default route is not via fd00:ac27::1"),
        "{}",
        err.msg
    );
}

#[test]
fn requested_ipv6_is_honoured_or_refused_before_anything_is_done() {
    let n = node(Ipv6Mode::Auto);
    let mut c = n.ctx("ADD", "a");
    c.conf.runtime_config.ips6 = vec![ip6("fd00:ac27::42")];
    let res = run(super::add::add(&c)).expect("ADD with a requested IPv6");
    assert_eq!(res["ips"][1]["address"], "fd00:ac27::42/64");

    let mut c = n.ctx("ADD", "b");
    c.conf.runtime_config.ips6 = vec![ip6("2001:db8::42")];
    let err = run(super::add::add(&c)).unwrap_err();
    assert_eq!(err.code, CniError::INVALID_CONFIG);
    assert!(
        err.msg.contains("2001:db8::42") && err.msg.contains("outside subnet6 fd00:ac27::/64"),
        "{}",
        err.msg
    );
    n.assert_gone("b");

    let mut c = n.ctx("ADD", "b");
    c.conf.ipv6 = Ipv6Mode::Off;
    c.conf.runtime_config.ips6 = vec![ip6("fd00:ac27::43")];
    let err = run(super::add::add(&c)).unwrap_err();
    assert!(err.msg.contains("\"ipv6\": \"off\""), "{}", err.msg);
    n.assert_gone("b");
}

#[test]
fn gc_releases_the_ipv6_address_of_a_stale_attachment() {
    let n = node(Ipv6Mode::On);
    n.add("keep").unwrap();
    n.add("stale").unwrap();
    let mut c = n.ctx("GC", "keep");
    c.conf.valid_attachments = Some(vec![ValidAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }]);
    run(gc::gc(&c)).expect("GC");
    n.assert_gone("stale");
    let left: Vec<_> = c
        .ipam6()
        .unwrap()
        .allocations()
        .unwrap()
        .into_iter()
        .map(|a| a.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
}

#[test]
fn status_reports_a_full_subnet6_while_ipv6_is_not_off() {
    let n = node(Ipv6Mode::On);
    let status = |mode: Ipv6Mode| {
        let mut c = n.ctx("STATUS", "x");
        c.conf.ipv6 = mode;
        c.conf.subnet6 = "fd00:1::/120".parse().unwrap();
        run(super::status::status(&c))
    };
    // Whatever else STATUS says here (no bpffs for the eBPF datapath), not subnet6.
    assert!(!status(Ipv6Mode::On).is_err_and(|e| e.msg.contains("subnet6")));
    let mut c = n.ctx("ADD", "x");
    c.conf.subnet6 = "fd00:1::/120".parse().unwrap();
    let ipam6 = c.ipam6().unwrap();
    for i in 0..253 {
        ipam6.allocate(&format!("c{i}"), "eth0", None).unwrap();
    }
    let err = status(Ipv6Mode::On).unwrap_err();
    assert_eq!(err.code, CniError::NOT_AVAILABLE);
    assert!(err.msg.contains("subnet6 fd00:1::/120"), "{}", err.msg);
    assert!(!status(Ipv6Mode::Off).is_err_and(|e| e.msg.contains("subnet6")));
}
