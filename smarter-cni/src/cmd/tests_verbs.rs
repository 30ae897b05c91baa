//! ADD, CHECK, DEL and GC against the in-memory node ([`super::fakes`]): no root, no kernel.
//! Each test asserts what is left on the node — links in every namespace, addresses, routes,
//! datapath endpoints, allocations and records — not only the verb's answer.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use super::fakes::{
    self,
    datapath::FakeDatapaths,
    host::{FakeHost, NODE},
};
use super::fault::{FailAfter, Step};
use super::{Ctx, add, boot, check, del, gc};
use crate::cni::config::Ipv6Mode;
use crate::cni::{CniError, DatapathMode, ValidAttachment};
use crate::datapath::DatapathKind;
use crate::naming::host_veth_name;

/// One fake node with its stores in a temporary directory.
pub(super) struct Node {
    dir: tempfile::TempDir,
    pub(super) host: FakeHost,
    pub(super) dps: FakeDatapaths,
    /// The `ipv6` of every ctx made.
    pub(super) ipv6: Ipv6Mode,
}

impl Node {
    pub(super) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            host: FakeHost::new(),
            dps: FakeDatapaths::default(),
            ipv6: Ipv6Mode::Auto,
        }
    }

    /// The "namespace file" of pod `id` (a plain file: the fake keys namespaces by path).
    pub(super) fn netns(&self, id: &str) -> PathBuf {
        let p = self.dir.path().join(format!("netns-{id}"));
        if !p.exists() {
            std::fs::write(&p, b"").unwrap();
        }
        p
    }

    pub(super) fn ctx(&self, verb: &str, id: &str) -> Ctx {
        let netns = self.netns(id);
        let mut c = fakes::ctx(
            self.dir.path(),
            verb,
            id,
            &netns,
            DatapathMode::Ebpf,
            &self.host,
            &self.dps,
        );
        c.conf.ipv6 = self.ipv6;
        c
    }

    pub(super) fn ns(&self, id: &str) -> String {
        self.netns(id).display().to_string()
    }

    pub(super) fn add(&self, id: &str) -> Result<serde_json::Value, CniError> {
        run(add::add(&self.ctx("ADD", id)))
    }

    pub(super) fn del(&self, id: &str) -> Result<(), CniError> {
        run(del::del(&self.ctx("DEL", id)))
    }

    /// Asserts that pod `id` left nothing: no veth end, allocation (of either family),
    /// record or endpoint.
    pub(super) fn assert_gone(&self, id: &str) {
        let c = self.ctx("DEL", id);
        let host = host_veth_name(id, "eth0");
        assert!(
            !self.host.link_names(NODE).contains(&host),
            "{host} remains"
        );
        assert!(
            !self.host.link_names(&self.ns(id)).contains(&"eth0".into()),
            "eth0 remains in the pod"
        );
        assert_eq!(c.ipam().unwrap().lookup(id, "eth0").unwrap(), None);
        assert_eq!(c.ipam6().unwrap().lookup(id, "eth0").unwrap(), None);
        assert!(c.state().unwrap().load(id, "eth0").unwrap().is_none());
        assert!(
            !self.dps.attached().iter().any(|(_, _, h)| *h == host),
            "endpoint of {id} remains"
        );
        let w = self.host.world.lock().unwrap();
        let ports: Vec<u32> = w.ns[NODE].links.iter().map(|l| l.info.index).collect();
        assert!(
            w.fdb.iter().all(|(port, _)| ports.contains(port)),
            "an FDB entry of {host} remains"
        );
    }
}

pub(super) fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn add_wires_the_pod_through_the_bridge_and_records_it() {
    let n = Node::new();
    let res = n.add("a").expect("ADD");
    let c = n.ctx("ADD", "a");
    let (bridge, gw, subnet) = (&c.conf.bridge, c.conf.gateway, c.conf.subnet);

    let br = n.host.link(NODE, bridge).expect("the bridge");
    assert!(br.info.up);
    assert_eq!(br.addrs, [Ipv4Network::new(gw, subnet.prefix()).unwrap()]);
    let host = host_veth_name("a", "eth0");
    let veth = n.host.link(NODE, &host).expect("the host veth");
    assert_eq!(
        (veth.info.controller, veth.info.up),
        (Some(br.info.index), true)
    );

    let pod = n.ns("a");
    assert!(n.host.link(&pod, "lo").unwrap().info.up, "lo is up");
    let eth0 = n.host.link(&pod, "eth0").expect("eth0 in the pod");
    assert!(eth0.info.up);
    let ip = eth0.addrs[0].ip();
    assert!(subnet.contains(ip) && ip != gw, "{ip}");
    assert_eq!(eth0.addrs, [Ipv4Network::new(ip, subnet.prefix()).unwrap()]);
    let route = n.host.world.lock().unwrap().ns[&pod].default_route.clone();
    assert_eq!(
        route.map(|r| (r.gateway, r.oif)),
        Some((Some(gw), Some(eth0.info.index)))
    );

    assert_eq!(n.dps.attached(), [(DatapathKind::Ebpf, ip, host.clone())]);
    assert_eq!(n.dps.0.bridges.lock().unwrap()[0].ifindex, br.info.index);
    assert_eq!(
        n.host.world.lock().unwrap().prepared,
        std::slice::from_ref(bridge)
    );
    // The host veth's sysctls are set and the bridge knows the pod's MAC on its port.
    assert_eq!(
        n.host.world.lock().unwrap().guarded,
        std::slice::from_ref(&host)
    );
    let mac: [u8; 6] = eth0.info.mac.as_slice().try_into().unwrap();
    assert_eq!(n.host.world.lock().unwrap().fdb, [(veth.info.index, mac)]);
    let record = c
        .state()
        .unwrap()
        .load("a", "eth0")
        .unwrap()
        .expect("record");
    assert_eq!((record.ip, record.datapath.as_str()), (ip, "ebpf"));
    assert_eq!(record.mac, crate::netlink::format_mac(&eth0.info.mac));
    assert_eq!(c.ipam().unwrap().lookup("a", "eth0").unwrap(), Some(ip));

    assert_eq!(
        res["ips"][0]["address"],
        format!("{ip}/{}", subnet.prefix())
    );
    assert_eq!(res["interfaces"][0]["name"], host);
    assert_eq!(res["interfaces"][1]["sandbox"], pod);
    assert_eq!(res["ips"][0]["gateway"], gw.to_string());
}

#[test]
fn pods_share_the_bridge_and_get_distinct_addresses() {
    let n = Node::new();
    n.add("a").unwrap();
    n.add("b").unwrap();
    let c = n.ctx("ADD", "a");
    let bridges = n
        .host
        .link_names(NODE)
        .into_iter()
        .filter(|l| *l == c.conf.bridge)
        .count();
    assert_eq!(bridges, 1);
    let ips: Vec<Ipv4Addr> = n.dps.attached().iter().map(|(_, ip, _)| *ip).collect();
    assert_eq!(ips.len(), 2);
    assert_ne!(ips[0], ips[1]);
}

#[test]
fn a_second_add_of_the_same_attachment_is_refused_and_changes_nothing() {
    let n = Node::new();
    n.add("a").unwrap();
    let before = (n.host.link_names(NODE), n.dps.attached());
    let err = n.add("a").unwrap_err();
    assert_eq!(err.code, CniError::ATTACHMENT_EXISTS, "{}", err.msg);
    assert_eq!((n.host.link_names(NODE), n.dps.attached()), before);
}

/// Every step of ADD that can fail — netlink in the node and in the pod, the datapath, and
/// the injected faults between steps — leaves no trace of the pod, its IPv6 address included
/// (the pods here get IPv6: `ipv6: on`).
#[test]
fn a_failed_add_leaves_nothing_behind_whichever_step_fails() {
    let netlink = [
        "create_veth@node",
        "attach_to_bridge@node",
        "add_port_mac@node",
        "ensure_address6@node",
        "connect@pod",
        "set_up@pod",
        "ensure_address@pod",
        "ensure_address6@pod",
        "ensure_default_route@pod",
        "ensure_default_route6@pod",
    ];
    for op in netlink {
        let mut n = Node::new();
        n.ipv6 = Ipv6Mode::On;
        n.host.fail_on(op);
        let err = n.add("a").unwrap_err();
        assert_eq!(err.code, CniError::NETLINK, "{op}: {}", err.msg);
        n.assert_gone("a");
    }
    for step in Step::ALL {
        let mut n = Node::new();
        n.ipv6 = Ipv6Mode::On;
        let mut c = n.ctx("ADD", "a");
        c.faults = Box::leak(Box::new(FailAfter(step)));
        let err = run(add::add(&c)).unwrap_err();
        assert!(err.msg.contains(step.as_str()), "{step}: {}", err.msg);
        n.assert_gone("a");
    }
    let mut n = Node::new();
    n.ipv6 = Ipv6Mode::On;
    *n.dps.0.refuse_attach.lock().unwrap() = true;
    assert!(n.add("a").is_err());
    n.assert_gone("a");
    // A failure is not sticky: the same pod then comes up.
    *n.dps.0.refuse_attach.lock().unwrap() = false;
    n.add("a").expect("ADD after the failure");
}

#[test]
fn check_passes_after_add_and_names_every_difference() {
    let n = Node::new();
    let res = n.add("a").unwrap();
    let checking = || {
        let mut c = n.ctx("CHECK", "a");
        c.conf.prev_result = Some(res.clone());
        run(check::check(&c))
    };
    checking().expect("CHECK right after ADD");

    let host = host_veth_name("a", "eth0");
    n.host.edit(NODE, &host, |l| l.info.up = false);
    n.host.edit(&n.ns("a"), "eth0", |l| {
        l.addrs.clear();
        l.info.mac = vec![2, 0, 0, 0, 0, 1];
    });
    n.dps.0.endpoints.lock().unwrap().clear();
    let err = checking().unwrap_err();
    assert_eq!(err.code, CniError::CHECK_MISMATCH);
    for want in [
        format!("{host} is down"),
        "eth0 lacks".into(),
        "eth0 MAC is 02:00:00:00:00:01".into(),
        "has no endpoint".into(),
    ] {
        assert!(err.msg.contains(&want), "{want:?} not in {}", err.msg);
    }
}

#[test]
fn check_of_an_unknown_attachment_is_code_3() {
    let n = Node::new();
    let mut c = n.ctx("CHECK", "ghost");
    c.conf.prev_result = Some(serde_json::json!({"cniVersion": "1.1.0", "ips": []}));
    let err = run(check::check(&c)).unwrap_err();
    assert_eq!(err.code, CniError::UNKNOWN_CONTAINER, "{}", err.msg);
}

#[test]
fn del_removes_everything_and_succeeds_again_when_it_is_gone() {
    let n = Node::new();
    n.add("a").unwrap();
    n.add("b").unwrap();
    n.del("a").expect("DEL");
    n.assert_gone("a");
    n.del("a").expect("a second DEL");
    // The namespace itself gone (the runtime removed it first): DEL still succeeds.
    std::fs::remove_file(n.netns("b")).unwrap();
    let mut c = n.ctx("DEL", "b");
    c.env.netns = None;
    run(del::del(&c)).expect("DEL without a namespace");
    n.assert_gone("b");
    assert!(n.dps.attached().is_empty());
}

#[test]
fn a_failed_del_keeps_the_record_so_a_retry_finishes_the_job() {
    let n = Node::new();
    n.add("a").unwrap();
    n.host.fail_on("delete_link@node");
    let err = n.del("a").unwrap_err();
    assert!(err.msg.contains("delete_link"), "{}", err.msg);
    let c = n.ctx("DEL", "a");
    assert!(c.state().unwrap().load("a", "eth0").unwrap().is_some());
    n.host.fail.lock().unwrap().clear();
    n.del("a").expect("the retry");
    n.assert_gone("a");
}

#[test]
fn gc_removes_what_is_not_valid_and_keeps_what_is() {
    let n = Node::new();
    n.add("keep").unwrap();
    n.add("stale").unwrap();
    // An orphan veth and an orphan endpoint nobody recorded (an ADD killed midway).
    let orphan = host_veth_name("killed", "eth0");
    run(async {
        let node = super::Host::node(&n.host).unwrap();
        let ns = crate::netlink::NetnsFile::open(n.netns("killed")).unwrap();
        node.create_veth(&orphan, "eth0", &ns, 1500, None)
            .await
            .unwrap();
    });
    let mut spec = n.dps.0.endpoints.lock().unwrap()[0].1.clone();
    spec.ip = Ipv4Addr::new(172, 39, 9, 9);
    spec.host_ifname = orphan.clone();
    n.dps
        .0
        .endpoints
        .lock()
        .unwrap()
        .push((DatapathKind::Ebpf, spec, Vec::new()));

    let gc_with = |valid: Option<Vec<ValidAttachment>>| {
        let mut c = n.ctx("GC", "keep");
        c.conf.valid_attachments = valid;
        run(gc::gc(&c))
    };
    let err = gc_with(None).unwrap_err();
    assert_eq!(
        err.code,
        CniError::INVALID_CONFIG,
        "no list is not an empty list"
    );
    assert_eq!(n.dps.attached().len(), 3, "a refused GC removes nothing");

    let keep = ValidAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    };
    gc_with(Some(vec![keep])).expect("GC");
    n.assert_gone("stale");
    assert!(
        !n.host.link_names(NODE).contains(&orphan),
        "orphan veth remains"
    );
    assert!(n.host.link_names(&n.ns("killed")).iter().all(|l| l == "lo"));
    let left: Vec<String> = n.dps.attached().into_iter().map(|(_, _, h)| h).collect();
    assert_eq!(left, [host_veth_name("keep", "eth0")]);
    let c = n.ctx("GC", "keep");
    assert!(c.state().unwrap().load("keep", "eth0").unwrap().is_some());
}

/// After a boot: the record of a pod whose veth and namespace are gone is retired (its
/// allocation, endpoint and record), a live pod's is kept, a torn record is swept, and the
/// boot is recorded so the next call does nothing; the late DEL of the retired pod succeeds.
#[test]
fn after_a_boot_records_without_veth_or_namespace_are_retired() {
    use super::Host as _;
    let n = Node::new();
    n.add("dead").expect("ADD dead");
    n.add("live").expect("ADD live");
    let c = n.ctx("ADD", "live");
    let dir = c.state().unwrap().dir().to_path_buf();
    std::fs::write(dir.join("torn+eth0.json"), b"{\"contai").unwrap();
    // The power cut: the dead pod's namespace and veth are gone.
    std::fs::remove_file(n.netns("dead")).unwrap();
    let node = n.host.node().unwrap();
    run(node.delete_link(&host_veth_name("dead", "eth0"))).unwrap();
    // The netns helper re-creates its file on demand: point the record at a path that is gone.
    let rec_path = dir.join("dead+eth0.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    rec["netns"] = serde_json::json!("/run/netns/gone-with-the-boot");
    std::fs::write(&rec_path, rec.to_string()).unwrap();

    let done = run(boot::reconcile(&c)).expect("reconcile");
    assert!(done.ran);
    assert_eq!(done.retired, ["dead/eth0"]);
    assert_eq!(done.torn, ["torn+eth0.json"]);
    n.assert_gone("dead");
    assert!(c.state().unwrap().load("live", "eth0").unwrap().is_some());
    assert_eq!(n.dps.attached().len(), 1, "the live pod's endpoint stays");
    assert!(!run(boot::reconcile(&c)).unwrap().ran, "once per boot");
    n.del("dead")
        .expect("the late DEL of a retired pod succeeds");
    assert!(c.state().unwrap().load("live", "eth0").unwrap().is_some());
}
