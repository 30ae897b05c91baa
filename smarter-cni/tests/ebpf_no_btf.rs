//! Loading the eBPF programs on a kernel without BTF (Raspberry Pi OS kernels ship none): the
//! plugin's first ADD of a node, which loads and pins the programs, runs with
//! /sys/kernel/btf hidden under an empty tmpfs. The tmpfs lives in a private mount namespace
//! of one thread (and the plugin processes it starts): the machine's own mounts are never
//! touched, and the namespace goes away with the thread, also when an assertion fails.

mod common;

use std::path::Path;

use common::{add_ok, assert_no_leaks, call, result_ip, world};
use serde_json::json;
use smarter_testbed::CniCall;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Runs `f` on a thread whose mount namespace hides the kernel's BTF; a panic in `f`
/// propagates.
fn without_kernel_btf<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use nix::mount::{MsFlags, mount};
    std::thread::scope(|s| {
        let thread = s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .expect("a private mount namespace for this thread");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("private propagation");
            if Path::new("/sys/kernel/btf").is_dir() {
                mount(
                    Some("tmpfs"),
                    "/sys/kernel/btf",
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .expect("an empty tmpfs over /sys/kernel/btf");
            }
            assert!(!Path::new(VMLINUX).exists(), "{VMLINUX} is hidden");
            f()
        });
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[test]
fn programs_load_and_forward_without_kernel_btf() {
    let Some(mut w) = world("programs_load_and_forward_without_kernel_btf") else {
        return;
    };
    let mut conf = w.netconf("1.0.0");
    conf["datapath"] = json!("ebpf");
    let a = w.add_pod_ns("a").unwrap().path().to_path_buf();
    let b = w.add_pod_ns("b").unwrap().path().to_path_buf();
    let pins = w.bpffs_dir().join("smartnet");
    assert!(!pins.exists(), "no programs loaded before the first ADD");

    let (ra, rb) = without_kernel_btf(|| {
        // The first ADD loads and pins the programs (no agent runs here).
        let ra = add_ok(&w, &conf, "a", &a);
        let rb = add_ok(&w, &conf, "b", &b);
        (ra, rb)
    });
    assert!(pins.exists(), "the first ADD pinned the programs");
    // Both pods are served by the loaded programs (pod → pod is their redirect).
    let ip_b = result_ip(&rb);
    assert!(
        w.pod("a").unwrap().ping(ip_b),
        "pod a reaches pod b ({ip_b}) through the programs loaded without BTF"
    );
    let ip_a = result_ip(&ra);
    assert!(w.pod("b").unwrap().ping(ip_a), "and back ({ip_a})");
    for (id, ns) in [("a", &a), ("b", &b)] {
        let out = call(&w, &CniCall::new("DEL", &conf).pod(id, ns));
        assert_eq!(out.status, 0, "DEL {id}: {}\n{}", out.stdout, out.stderr);
    }
    assert_no_leaks(&w, "ebpf without kernel BTF");
}
