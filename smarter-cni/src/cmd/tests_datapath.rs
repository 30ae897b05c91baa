//! The verbs' datapath logic against a fake datapath (no root, no kernel): which datapath a
//! record names, and retiring the datapath nobody uses any more.

use std::net::Ipv4Addr;

use super::Ctx;
use super::datapath::{recorded_kind, retire_unused, retire_unused_now};
use super::fakes::{self, datapath::FakeDatapaths, host::FakeHost};
use crate::cni::DatapathMode;
use crate::datapath::DatapathKind;
use crate::state::{Attachment, StateStore};

fn ctx(dir: &std::path::Path, datapath: DatapathMode, node: &FakeDatapaths) -> Ctx {
    let netns = dir.join("netns");
    fakes::ctx(dir, "DEL", "c1", &netns, datapath, &FakeHost::new(), node)
}

fn node(present: &[DatapathKind]) -> FakeDatapaths {
    FakeDatapaths::with(present)
}

fn record(ctx: &Ctx, id: &str, datapath: DatapathKind) {
    let a = Attachment {
        container_id: id.into(),
        ifname: "eth0".into(),
        netns: "/run/netns/x".into(),
        host_ifname: crate::naming::host_veth_name(id, "eth0"),
        ip: Ipv4Addr::new(172, 39, 0, 9),
        prefix: 16,
        ip6: None,
        mac: "02:00:00:00:00:09".into(),
        pod_namespace: String::new(),
        pod_name: String::new(),
        pod_uid: String::new(),
        port_mappings: Vec::new(),
        aliases: Vec::new(),
        datapath: datapath.name().into(),
        result: serde_json::Value::Null,
    };
    StateStore::open(&ctx.conf.state_dir, &ctx.conf.name)
        .unwrap()
        .save(&a)
        .unwrap();
}

#[test]
fn a_record_names_its_datapath() {
    assert_eq!(recorded_kind("ebpf").unwrap(), DatapathKind::Ebpf);
    assert_eq!(recorded_kind("nftables").unwrap(), DatapathKind::Nftables);
    // Records of earlier releases call it iptables.
    assert_eq!(recorded_kind("iptables").unwrap(), DatapathKind::Nftables);
    // Records older than the datapath field were eBPF's.
    assert_eq!(recorded_kind("").unwrap(), DatapathKind::Ebpf);
    // A name this build does not know is an error, never eBPF.
    let e = recorded_kind("xdp").unwrap_err();
    assert!(e.msg.contains("\"xdp\""), "{}", e.msg);
}

#[test]
fn the_other_datapath_goes_with_its_last_pod() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&[DatapathKind::Ebpf, DatapathKind::Nftables]);
    let c = ctx(dir.path(), DatapathMode::Ebpf, &n);
    record(&c, "a", DatapathKind::Ebpf);
    record(&c, "b", DatapathKind::Nftables);
    retire_unused(&c, DatapathKind::Ebpf);
    assert!(
        n.0.removed.lock().unwrap().is_empty(),
        "an iptables pod remains"
    );

    StateStore::open(&c.conf.state_dir, &c.conf.name)
        .unwrap()
        .remove("b", "eth0")
        .unwrap();
    retire_unused(&c, DatapathKind::Ebpf);
    assert_eq!(*n.0.removed.lock().unwrap(), [DatapathKind::Nftables]);
    assert_eq!(
        *n.0.present.lock().unwrap(),
        [DatapathKind::Ebpf],
        "the configured one stays"
    );
}

#[test]
fn del_retires_toward_the_configured_datapath() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&[DatapathKind::Ebpf, DatapathKind::Nftables]);
    // Configured for iptables, an eBPF pod was the last of its kind: its pins go.
    let c = ctx(dir.path(), DatapathMode::Nftables, &n);
    record(&c, "x", DatapathKind::Nftables);
    retire_unused_now(&c);
    assert_eq!(*n.0.removed.lock().unwrap(), [DatapathKind::Ebpf]);
    // Nothing of the other kind left: retiring again removes nothing more.
    retire_unused_now(&c);
    assert_eq!(n.0.removed.lock().unwrap().len(), 1);
}

#[test]
fn unreadable_records_keep_both_datapaths() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&[DatapathKind::Ebpf, DatapathKind::Nftables]);
    let mut c = ctx(dir.path(), DatapathMode::Ebpf, &n);
    // A state directory that cannot be created (a file in its place): in use, keep both.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    c.conf.state_dir = blocker.join("state");
    retire_unused(&c, DatapathKind::Ebpf);
    assert!(n.0.removed.lock().unwrap().is_empty());
}
