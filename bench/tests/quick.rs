//! `smarter-bench --quick` end to end: the harness builds every contender, runs every workload,
//! and writes valid JSON, markdown and SVG. Checks structure and that traffic flowed — never a
//! speed threshold. And a run whose CRI stage fails (a plugin that fails every call) leaves
//! nothing behind, as a passing one does.

use std::path::PathBuf;
use std::process::Command;

/// The smarter-cni binaries built beside this test (`cargo test --workspace` builds them).
fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let p = dir.join(name);
    p.exists().then_some(p)
}

#[test]
fn quick_run_writes_valid_results() {
    if !nix::unistd::geteuid().is_root() {
        smarter_testbed::skipped(
            "SKIP quick_run_writes_valid_results: needs root (network namespaces)",
        );
        return;
    }
    let (Some(plugin), Some(agent)) = (sibling("smarter-cni"), sibling("smarter-agent")) else {
        smarter_testbed::skipped(
            "SKIP quick_run_writes_valid_results: smarter-cni binaries not built",
        );
        return;
    };
    if Command::new("iperf3").arg("--version").output().is_err() {
        smarter_testbed::skipped(
            "SKIP quick_run_writes_valid_results: iperf3 missing (cargo xtask setup)",
        );
        return;
    }
    // Under /tmp: the bench's private tmpfs hides nothing of the machine's temporary
    // directory (nor the binaries of a checkout there).
    let out = tempfile::tempdir().unwrap();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_smarter-bench"))
        .arg("--quick")
        .arg("--plugin")
        .arg(&plugin)
        .arg("--agent")
        .arg(&agent)
        .arg("--out")
        .arg(out.path())
        .spawn()
        .unwrap();
    let status = bench.wait().unwrap();
    assert!(status.success());
    assert_eq!(leftovers(bench.id()), Vec::<String>::new());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["quick"], true);
    assert_eq!(
        json["complete"], true,
        "every stage ran: {}",
        json["failures"]
    );
    let profiles = json["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles
        .iter()
        .filter_map(|p| p["profile"].as_str())
        .collect();
    assert_eq!(names, ["default", "edge"]);
    for p in profiles {
        let workloads = p["workloads"].as_array().unwrap();
        assert_eq!(workloads.len(), 14, "{}: {workloads:?}", p["profile"]);
        for w in workloads {
            let contenders = w["contenders"].as_object().unwrap();
            // The CLAT workloads have no smarter-iptables: nftables cannot translate.
            let clat = w["id"].as_str().unwrap().ends_with("-clat");
            assert_eq!(contenders.len(), if clat { 3 } else { 4 }, "{}", w["name"]);
            for (c, f) in contenders {
                assert!(
                    f["median"].as_f64().unwrap() > 0.0,
                    "{} {} {c}: no traffic",
                    p["profile"],
                    w["name"]
                );
            }
            if clat {
                // Each figure says which translator carried it, checked by its counters.
                let path = |c: &str| contenders[c]["path"].as_str().unwrap_or_default();
                assert!(path("smarter-ebpf").contains("clat_out"), "{}", w["name"]);
                assert!(
                    path("reference").contains("tayga on the node"),
                    "{}",
                    w["name"]
                );
                assert!(path("limit").contains("native IPv6"), "{}", w["name"]);
            }
            if w["id"].as_str().unwrap().ends_with("-nat6") {
                // Each figure says what the server saw pod 0 as; smarter-ebpf's, its counter.
                let path = |c: &str| contenders[c]["path"].as_str().unwrap_or_default();
                for c in ["reference", "smarter-iptables", "smarter-ebpf"] {
                    assert!(path(c).contains("the node's global address"), "{c}");
                }
                assert!(path("reference").contains("ip6tables masquerade"));
                // `nat_out` counts both families' NAT.
                assert!(path("smarter-ebpf").contains("nat_out"), "{}", w["name"]);
                assert!(path("limit").contains("native IPv6"), "{}", w["name"]);
            }
        }
    }
    let cri = json["extra"]["cri"]["rows"].as_array().unwrap();
    assert_eq!(cri.len(), 6, "3 contenders at 2 concurrencies: {cri:?}");
    assert!(cri.iter().all(|r| r["p50_ms"].as_f64().unwrap() > 0.0));
    assert_eq!(json["scaling"].as_array().unwrap().len(), 6);
    assert_eq!(json["control_plane"].as_array().unwrap().len(), 6);
    assert!(json["memory"]["agent_rss_kib"].as_u64().unwrap() > 0);
    assert!(
        json["memory"]["plugin_first_call_rss_kib"]["smarter-ebpf"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        json["machine"]["kernel"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("| workload | unit | reference |"));
    let svg = std::fs::read_to_string(out.path().join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// What a finished bench run `pid` left on the machine: its private tmpfs's directory,
/// processes (containerd, shims, agents), cgroups and named network namespaces of its worlds.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("smt-{pid}-");
    let named = |dir: &str, prefix: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .map(|p| p.display().to_string())
            .collect()
    };
    let tmp = std::env::temp_dir();
    let mut left = named(&tmp.to_string_lossy(), &format!("smarter-bench-{pid}-"));
    left.extend(named("/run/netns", &tag));
    for root in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        left.extend(named(&root.path().to_string_lossy(), &tag));
    }
    left.extend(named("/sys/fs/cgroup", &tag));
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&tag) {
            left.push(format!(
                "process {}: {cmdline}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    left
}

/// The CRI stage with a plugin that fails every call (ADD and DEL: containerd keeps such a
/// sandbox and its namespace for a later StopPodSandbox, which fails too): the stage fails,
/// the run reports it, and nothing of the run is left — no namespace in the machine's
/// `/run/netns`, no containerd or shim, no cgroup, no directory.
#[test]
fn failing_cri_stage_leaves_nothing() {
    const TEST: &str = "failing_cri_stage_leaves_nothing";
    if !nix::unistd::geteuid().is_root() {
        smarter_testbed::skipped(&format!("SKIP {TEST}: needs root (network namespaces)"));
        return;
    }
    let reference = std::path::Path::new("/usr/lib/cni");
    if let Some(missing) = smarter_testbed::containerd::missing_tools().or_else(|| {
        ["bridge", "host-local", "portmap"]
            .iter()
            .any(|p| !reference.join(p).exists())
            .then(|| "the reference CNI plugins".to_owned())
    }) {
        smarter_testbed::skipped(&format!(
            "SKIP {TEST}: not installed: {missing} (cargo xtask setup)"
        ));
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let netns_before = cni_netns();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_smarter-bench"))
        .args([
            "--quick",
            "--only",
            "cri",
            "--plugin",
            "/bin/false",
            "--out",
        ])
        .arg(out.path())
        .spawn()
        .unwrap();
    let status = bench.wait().unwrap();
    assert!(!status.success(), "the CRI stage fails");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let failures = json["failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f["stage"] == "cri"), "{failures:?}");
    assert_eq!(leftovers(bench.id()), Vec::<String>::new());
    // What the bug left: a `cni-…` file in the machine's /run/netns that is mounted in no
    // namespace we see (containerd had mounted it in the run's private mount namespace).
    // Another runtime's new namespace is mounted here within moments, so look twice.
    let unmounted_new = || -> Vec<String> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        cni_netns()
            .into_iter()
            .filter(|n| !netns_before.contains(n))
            .filter(|n| !mounts.contains(&format!("/run/netns/{n} ")))
            .collect()
    };
    if !unmounted_new().is_empty() {
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert_eq!(
            unmounted_new(),
            Vec::<String>::new(),
            "namespaces left in /run/netns"
        );
    }
}

/// The `cni-…` entries in `/run/netns` (containerd's default place for sandbox namespaces).
fn cni_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cni-"))
        .collect()
}
