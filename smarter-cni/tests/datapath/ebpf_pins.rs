//! The eBPF datapath against the real kernel, in a throwaway world: its own network namespaces
//! (a `node` with two host veths, two pods) and its own bpffs instance mounted on a tempdir.
//! Nothing is created in the root namespace or under /sys/fs/bpf; RAII guards remove everything,
//! also when an assertion fails. Skips (with a message) when not root.

use std::{thread, time::Duration};

use crate::world::ebpf_config;
use crate::world::pins::{PinsWorld, has_tcx, wait_for_counters};
use aya::{
    maps::{Array, MapData},
    programs::{SchedClassifier, TcAttachType},
};
use smarter_cni::datapath::ebpf::EbpfDatapath;
use smarter_cni::datapath::{AttachMode, EbpfError, LAYOUT_VERSION, remove_network_pins};

#[test]
fn pins_are_loaded_once_reused_and_refused_when_wrong() {
    if !smarter_testbed::require_root("pins_are_loaded_once_reused_and_refused_when_wrong") {
        return;
    }
    let world = PinsWorld::new();
    let root = world.root();

    let first = world.open("smartnet").expect("first open loads");
    let dir = root.join(format!("smartnet/v{LAYOUT_VERSION}"));
    for pin in [
        "maps/endpoints",
        "maps/ep_meta",
        "maps/ep_stats",
        "maps/config",
        "progs/smarter_pod",
    ] {
        assert!(dir.join(pin).exists(), "{pin} is pinned");
    }
    assert_eq!(first.pin_dir(), dir);
    let second = world.open("smartnet").expect("second open reuses the pins");
    assert_eq!(first.program_id(), second.program_id());
    let config = second.config().unwrap();
    assert_eq!(config.gateway.to_ne_bytes(), [172, 39, 0, 1]);
    assert_eq!(
        (config.subnet.to_ne_bytes(), config.prefix_len),
        ([172, 39, 0, 0], 16)
    );

    // Eight concurrent first opens of another network: one loads, all succeed, all share it.
    let ids: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| world.open("racenet"))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .expect("concurrent open")
                    .program_id()
                    .unwrap()
            })
            .collect()
    });
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one program for all: {ids:?}"
    );
    assert_ne!(
        Some(ids[0]),
        first.program_id(),
        "each network has its own program"
    );

    // A pinned map with another layout is refused, never reused.
    let maps = root.join(format!("oldnet/v{LAYOUT_VERSION}/maps"));
    std::fs::create_dir_all(&maps).unwrap();
    Array::<MapData, u64>::create(1, 0)
        .unwrap()
        .pin(maps.join("config"))
        .unwrap();
    match world.open("oldnet") {
        Err(EbpfError::LayoutMismatch {
            field,
            expected: 104,
            found: 8,
            ..
        }) => {
            assert_eq!(field, "value size");
        }
        other => panic!("expected a layout mismatch, got {other:?}"),
    }

    // Not a bpffs, not a usable name.
    let plain = tempfile::tempdir().unwrap();
    let cfg = ebpf_config();
    let not_bpffs = EbpfDatapath::open_or_load(plain.path(), "smartnet", plain.path(), &cfg);
    assert!(
        matches!(not_bpffs, Err(EbpfError::NotBpffs { .. })),
        "{not_bpffs:?}"
    );
    assert!(matches!(
        world.open("../x"),
        Err(EbpfError::InvalidName { .. })
    ));

    assert!(
        EbpfDatapath::open_existing(root, "nonet")
            .unwrap()
            .is_none()
    );
    assert!(
        EbpfDatapath::open_existing(root, "smartnet")
            .unwrap()
            .is_some()
    );
    for network in ["smartnet", "racenet", "oldnet", "nonet"] {
        remove_network_pins(root, network).unwrap();
        assert!(!root.join(network).exists());
    }
}

#[test]
fn endpoints_attach_count_check_and_detach() {
    if !smarter_testbed::require_root("endpoints_attach_count_check_and_detach") {
        return;
    }
    let world = PinsWorld::new();
    let dp = world.open("smartnet").expect("load");
    let specs = [world.spec(0), world.spec(1)];
    // Auto is TCX on Linux 6.6+ (as here), netlink before.
    let modes = [AttachMode::Auto, AttachMode::Netlink];
    let link_pin = dp.pin_dir().join("links/hv0");

    world.node().run(|| {
        for (spec, mode) in specs.iter().zip(modes) {
            dp.attach_endpoint(spec, mode).expect("attach");
            dp.attach_endpoint(spec, mode)
                .expect("attach again (idempotent)");
            assert_eq!(
                dp.check_endpoint(spec).unwrap(),
                Vec::<String>::new(),
                "{mode:?}"
            );
        }
    });
    assert_eq!(link_pin.exists(), has_tcx(), "a TCX link is pinned");
    assert!(
        !dp.pin_dir().join("links/hv1").exists(),
        "netlink filters need no pin"
    );

    // Another opener (a later plugin run) sees the same endpoints.
    let other = EbpfDatapath::open_existing(world.root(), "smartnet")
        .unwrap()
        .unwrap();
    let mut records = other.endpoints().unwrap();
    records.sort_by_key(|r| r.ip);
    assert_eq!(records.len(), 2);
    for (record, spec) in records.iter().zip(&specs) {
        assert_eq!(record.ip, spec.ip);
        assert_eq!(record.host_ifname, spec.host_ifname);
        assert_eq!(record.container_id, spec.container_id);
        assert_eq!(record.pod_name, spec.pod_name);
        assert!(record.in_datapath);
        assert_eq!(
            (record.host_ifindex, record.mac),
            (spec.host_ifindex, spec.mac)
        );
    }

    // Traffic leaving each pod is counted on its host veth, whichever way it is attached.
    for (i, spec) in specs.iter().enumerate() {
        // The pod may already have sent IPv6 neighbour discovery since attach: take a baseline.
        let (base, _) = dp
            .endpoint_counters(spec.host_ifindex)
            .unwrap()
            .unwrap_or((0, 0));
        world.send_from_pod(i, 5);
        let (packets, bytes) = wait_for_counters(&dp, spec.host_ifindex, base + 5);
        assert!(bytes >= packets * 42, "{packets} packets, {bytes} bytes");
        world.send_from_pod(i, 3);
        let (more, _) = wait_for_counters(&dp, spec.host_ifindex, packets + 3);
        assert!(more >= packets + 3);
    }

    world.node().run(|| {
        let mut wrong = specs[0].clone();
        wrong.mac = [2, 0, 0, 0, 0, 0xee];
        wrong.pod_name = "someone-else".into();
        let diffs = dp.check_endpoint(&wrong).unwrap();
        assert_eq!(diffs.len(), 2, "MAC and metadata differ: {diffs:?}");

        for spec in &specs {
            dp.detach_endpoint(spec.ip, &spec.host_ifname)
                .expect("detach");
            dp.detach_endpoint(spec.ip, &spec.host_ifname)
                .expect("detach again (already gone)");
            let diffs = dp.check_endpoint(spec).unwrap();
            assert!(
                diffs
                    .iter()
                    .any(|d| d.contains("missing from map endpoints")),
                "{diffs:?}"
            );
            assert!(
                diffs.iter().any(|d| d.contains("not attached")),
                "{diffs:?}"
            );
        }
    });
    assert!(!link_pin.exists(), "the TCX link pin is removed");
    assert!(dp.endpoints().unwrap().is_empty());

    // Detached: the program no longer sees the pods' traffic.
    for (i, spec) in specs.iter().enumerate() {
        assert_eq!(dp.endpoint_counters(spec.host_ifindex).unwrap(), None);
        world.send_from_pod(i, 3);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            dp.endpoint_counters(spec.host_ifindex).unwrap(),
            None,
            "pod {i}"
        );
    }
}

#[test]
fn switching_attach_mode_never_runs_the_program_twice() {
    if !smarter_testbed::require_root("switching_attach_mode_never_runs_the_program_twice") {
        return;
    }
    if !has_tcx() {
        println!(
            "skipping switching_attach_mode_never_runs_the_program_twice: no TCX (Linux < 6.6)"
        );
        return;
    }
    let world = PinsWorld::new();
    let dp = world.open("smartnet").expect("load");
    let spec = world.spec(0);
    let link_pin = dp.pin_dir().join("links/hv0");
    let tcx_programs = || {
        world.node().run(|| {
            SchedClassifier::query_tcx("hv0", TcAttachType::Ingress)
                .expect("query tcx")
                .1
                .len()
        })
    };
    for mode in [
        AttachMode::Tcx,
        AttachMode::Netlink,
        AttachMode::Tcx,
        AttachMode::Auto,
    ] {
        world
            .node()
            .run(|| dp.attach_endpoint(&spec, mode))
            .expect("attach");
        let (tcx, netlink) = (
            tcx_programs(),
            world.node().netlink_filters("hv0", "smarter_pod"),
        );
        if mode == AttachMode::Netlink {
            assert_eq!((tcx, netlink), (0, 1), "{mode:?}");
            assert!(!link_pin.exists());
        } else {
            assert_eq!((tcx, netlink), (1, 0), "{mode:?}");
            assert!(link_pin.exists());
        }
        let diffs = world.node().run(|| dp.check_endpoint(&spec)).unwrap();
        assert!(diffs.is_empty(), "{mode:?}: {diffs:?}");
    }

    // The veth is re-created under the same name (a pod restarted after a crash, no DEL): the
    // stale link pin is replaced, and the new interface gets the program.
    world.node().ip("link del hv0");
    world.wire(0);
    let spec = world.spec(0);
    let diffs = world.node().run(|| dp.check_endpoint(&spec)).unwrap();
    assert!(
        diffs.iter().any(|d| d.contains("not attached")),
        "{diffs:?}"
    );
    world
        .node()
        .run(|| dp.attach_endpoint(&spec, AttachMode::Tcx))
        .expect("re-attach");
    let diffs = world.node().run(|| dp.check_endpoint(&spec)).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(tcx_programs(), 1);

    world
        .node()
        .run(|| dp.detach_endpoint(spec.ip, "hv0"))
        .expect("detach");
    assert_eq!(tcx_programs(), 0);
    assert_eq!(world.node().netlink_filters("hv0", "smarter_pod"), 0);
}
