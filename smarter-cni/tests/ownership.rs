//! Every entry has an owner (issue 22): a power cut, then new sandboxes for the same pods
//! (same addresses, same hostPorts) before the runtime's late DELs of the old ones; and a
//! model-based test of random ADD / DEL / late DEL / GC / agent restart / SIGKILL / reboot
//! sequences against the invariants, replayable from a seed (`ownership/model.rs`). Both
//! datapaths. Skips (with a message) when not root or without nftables.

#[path = "ownership/checks.rs"]
mod checks;
#[path = "common/mod.rs"]
mod common;
#[path = "ownership/model.rs"]
mod model;

use checks::{Pod, add, assert_live, assert_owned_by_live, conf, late_del};
use common::world;
use smarter_testbed::{BootId, World};

/// The MQTT broker of the report and a second pod; both get the addresses and the
/// broker the hostPort its old sandbox had.
fn start_pods(w: &mut World, conf: &serde_json::Value, generation: &str) -> Vec<Pod> {
    let mut pods = Vec::new();
    for (name, port) in [("broker", Some(1883)), ("sensor", None)] {
        let ns = format!("{name}-{generation}");
        w.add_pod_ns(&ns).expect("pod namespace");
        let id = format!("{generation}-{name}");
        pods.push(add(w, conf, &id, &ns, port).unwrap_or_else(|e| panic!("{e}")));
    }
    pods
}

fn nft_available(w: &World, test: &str) -> bool {
    match common::nftables_usable(w) {
        Ok(()) => true,
        Err(e) => {
            smarter_testbed::skipped(&format!("SKIP {test}: no nftables ({e})"));
            false
        }
    }
}

/// The sequence on `dp`, with the kernel's boot id changing (`BootId::New`: the
/// plugin's first call after the boot retires the old records) or not (`Unchanged`: nothing
/// retires them, and only the ownership checks of DEL keep the new pods whole).
fn power_loss(dp: &str, boot: BootId) {
    let test = format!("power_loss_{dp}_{boot:?}");
    let Some(mut w) = world(&test) else {
        return;
    };
    if dp == "nftables" && !nft_available(&w, &test) {
        return;
    }
    let conf = conf(&w, dp);
    let old = start_pods(&mut w, &conf, "old");
    assert_live(&w, &old, &format!("{test}: before the cut"));

    w.reboot(boot).expect("reboot the world");
    let new = start_pods(&mut w, &conf, "new");
    for (o, n) in old.iter().zip(&new) {
        assert_eq!(o.ip, n.ip, "{test}: the new sandbox got the old address");
    }
    assert_live(&w, &new, &format!("{test}: new sandboxes"));

    // containerd's garbage collection of the old sandboxes, late, netns gone.
    for o in &old {
        late_del(&w, &conf, &o.id, o.host_port).unwrap_or_else(|e| panic!("{test}: {e}"));
    }
    assert_live(&w, &new, &format!("{test}: after the late DELs"));
    assert_owned_by_live(&w, dp, &new, &format!("{test}: after the late DELs"));
    // A second late DEL (at RemovePodSandbox after StopPodSandbox) changes nothing either.
    for o in &old {
        late_del(&w, &conf, &o.id, o.host_port).unwrap_or_else(|e| panic!("{test}: {e}"));
    }
    assert_live(&w, &new, &format!("{test}: after repeated late DELs"));

    for n in &new {
        late_del(&w, &conf, &n.id, n.host_port).unwrap_or_else(|e| panic!("{test}: {e}"));
    }
    assert_owned_by_live(&w, dp, &[], &format!("{test}: all removed"));
}

#[test]
fn power_loss_ebpf_new_boot() {
    power_loss("ebpf", BootId::New);
}

#[test]
fn power_loss_ebpf_boot_id_unchanged() {
    power_loss("ebpf", BootId::Unchanged);
}

#[test]
fn power_loss_nftables_new_boot() {
    power_loss("nftables", BootId::New);
}

#[test]
fn power_loss_nftables_boot_id_unchanged() {
    power_loss("nftables", BootId::Unchanged);
}

/// Records written at the power cut are empty or torn: the first call after the boot removes
/// them and every verb still works.
#[test]
fn torn_records_after_a_boot_are_collected() {
    let Some(mut w) = world("torn_records") else {
        return;
    };
    let conf = conf(&w, "ebpf");
    let old = start_pods(&mut w, &conf, "old");
    w.reboot(BootId::New).expect("reboot the world");
    let dir = w.state_dir().join("smartnet");
    std::fs::write(dir.join(format!("{}+eth0.json", old[0].id)), b"").unwrap();
    std::fs::write(
        dir.join(format!("{}+eth0.json", old[1].id)),
        b"{\"containerId\":",
    )
    .unwrap();
    let new = start_pods(&mut w, &conf, "new");
    assert_owned_by_live(&w, "ebpf", &new, "torn records: after the new ADDs");
    for o in &old {
        late_del(&w, &conf, &o.id, o.host_port).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_live(&w, &new, "torn records: after the late DELs");
}

#[test]
fn model_ebpf() {
    model::run("ebpf");
}

#[test]
fn model_nftables() {
    model::run("nftables");
}
