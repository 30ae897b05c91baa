//! A world without a wan and pods wired by hand (for tests of a datapath's own engine): what
//! they have, what they refuse, and that everything goes on drop. Skips when not root.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use smarter_testbed::{POD_BRIDGE, POD_GATEWAY, POD_IF, World, require_root};

const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x21], [2, 0, 0, 0x5e, 0, 0x22]];
const IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 39, 0, 21), Ipv4Addr::new(172, 39, 0, 22)];

#[test]
fn a_world_without_a_wan_has_the_node_alone() {
    if !require_root("a_world_without_a_wan_has_the_node_alone") {
        return;
    }
    let mut w = World::without_wan("no_wan").expect("world");
    let links = w.node().exec(&["ip", "-o", "link", "show"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert!(w.external_links().is_empty());
    assert!(w.add_far().is_err(), "no wan to put a far server behind");
    assert!(w.add_backup_uplink().is_err(), "no wan for a backup uplink");
    assert!(
        w.add_l3_uplink(1400).is_err(),
        "no wan for a layer-3 uplink"
    );
    assert!(
        w.external_links().is_empty(),
        "a refused uplink is not listed"
    );
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wan().name().len())).is_err(),
        "wan() panics"
    );
    assert!(w.bpffs_mount().is_dir(), "the world's bpffs");
    let pod = w.add_pod_ns("pod").expect("pod").path().to_path_buf();
    w.wire_pod("pod", "hv0", MACS[0]).expect("wire");
    assert!(w.node().mac("hv0").is_ok(), "the host side has a MAC");
    let pod_ns = w.pod("pod").unwrap();
    assert_eq!(pod_ns.mac(POD_IF).expect("pod MAC"), MACS[0]);
    assert!(w.wire_pod("nobody", "hv1", MACS[1]).is_err(), "no such pod");
    drop(w);
    assert!(!pod.exists(), "the pod namespace goes with the world");
}

#[test]
fn bridged_pods_reach_each_other_and_the_gateway() {
    if !require_root("bridged_pods_reach_each_other_and_the_gateway") {
        return;
    }
    let mut w = World::new("bridged").expect("world");
    w.add_pod_bridge().expect("bridge");
    let mut paths: Vec<PathBuf> = Vec::new();
    for (i, (ip, mac)) in IPS.into_iter().zip(MACS).enumerate() {
        let ns = w
            .add_bridged_pod(&format!("p{i}"), &format!("hv{i}"), mac, ip)
            .expect("pod");
        paths.push(ns.path().to_path_buf());
    }
    let p0 = w.pod("p0").unwrap();
    assert!(p0.ping(IPS[1]), "pod → pod over the bridge");
    assert!(p0.ping(POD_GATEWAY), "pod → gateway");
    let port = w.node().exec(&["ip", "-o", "link", "show", "hv1"]).unwrap();
    assert!(
        String::from_utf8_lossy(&port.stdout).contains(&format!("master {POD_BRIDGE}")),
        "the host veth is a bridge port"
    );
    // Deleting the host side takes the pod's side with it; wiring again restores the link.
    w.node().ip("link del hv1");
    assert!(!p0.ping(IPS[1]));
    w.wire_pod("p1", "hv1", MACS[1]).expect("rewire");
    assert_eq!(w.pod("p1").unwrap().mac(POD_IF).unwrap(), MACS[1]);
    drop(w);
    assert!(paths.iter().all(|p| !p.exists()), "pods removed on drop");
}
