//! Uninstall in a namespace world: the plugin made a bridge, pins and state for a pod; while
//! the pod is attached uninstall keeps them (and the plugin binary), once it is gone uninstall
//! removes the bridge, the pins and programs, and the state directory — in the world's node
//! namespace only.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use smarter_cni::install::{
    self, CniBinDir, InstallConfig, UninstallConfig, UninstallReport, conflist_from,
};
use smarter_testbed::{CniCall, World};

fn uninstall_in_node(w: &World, state_dir: &Path) -> UninstallReport {
    w.node().run(|| {
        install::uninstall(&UninstallConfig {
            state_dir: state_dir.to_path_buf(),
            force: false,
            keep_datapath: false,
        })
        .expect("uninstall")
    })
}

fn bridge_exists(w: &World) -> bool {
    w.node().succeeds(&["ip", "link", "show", "smartnet0"])
}

#[test]
fn uninstall_removes_the_datapath_once_no_pod_uses_it() {
    let Some(mut w) = world("install_datapath") else {
        return;
    };
    let conf = w.netconf("1.0.0");
    let host = tempfile::tempdir().unwrap();
    let image = host.path().join("image");
    fs::create_dir_all(&image).unwrap();
    fs::copy(bin(), image.join("smarter-cni")).unwrap();
    let knobs = [
        ("STATE_DIR", w.state_dir().display().to_string()),
        ("DATA_DIR", w.data_dir().display().to_string()),
        ("BPFFS_DIR", w.bpffs_dir().display().to_string()),
    ];
    let conflist =
        conflist_from(|k| knobs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let cfg = InstallConfig {
        source_dir: image,
        binaries: vec!["smarter-cni".into()],
        cni_bin_dir: CniBinDir::Path(host.path().join("bin")),
        cni_conf_dir: host.path().join("net.d"),
        conflist_name: install::DEFAULT_CONFLIST_NAME.into(),
        conflist,
    };
    install::install(&cfg).unwrap();

    let pod = w.add_pod_ns("p1").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "c1", &pod);
    assert!(bridge_exists(&w));
    let pins = w.bpffs_dir().join("smartnet");
    let ebpf = pins.exists();

    let report = uninstall_in_node(&w, &w.state_dir());
    assert_eq!(report.attachments, 1, "{report:?}");
    assert!(report.datapath.is_empty(), "{report:?}");
    assert!(bridge_exists(&w), "the pod still uses the bridge");
    assert!(
        host.path().join("bin/smarter-cni").exists(),
        "kept for the pod's DEL"
    );
    assert!(
        !host
            .path()
            .join("net.d")
            .join(install::DEFAULT_CONFLIST_NAME)
            .exists()
    );

    let del = call(&w, &CniCall::new("DEL", &conf).pod("c1", &pod));
    assert_eq!(del.status, 0, "{}", del.stdout);
    let report = uninstall_in_node(&w, &w.state_dir());
    assert_eq!(report.attachments, 0);
    assert!(!bridge_exists(&w), "{report:?}");
    assert!(!pins.exists(), "{report:?}");
    assert!(!w.state_dir().join("smartnet").exists(), "{report:?}");
    assert!(!host.path().join("bin/smarter-cni").exists());
    assert!(
        report
            .datapath
            .iter()
            .any(|d| d.contains("bridge smartnet0"))
    );
    if ebpf {
        assert!(
            report.datapath.iter().any(|d| d.contains("eBPF")),
            "{report:?}"
        );
    }
    w.remove_pod_ns(&pod);
}
