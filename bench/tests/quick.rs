//! `smarter-bench --quick` end to end: the harness builds every contender, runs every workload,
//! and writes valid JSON, markdown and SVG. Checks structure and that traffic flowed — never a
//! speed threshold.

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
    // Not under /tmp: the bench runs in a private mount namespace with its own tmpfs there.
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_smarter-bench"))
        .arg("--quick")
        .arg("--plugin")
        .arg(&plugin)
        .arg("--agent")
        .arg(&agent)
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
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
        assert_eq!(workloads.len(), 6, "{}: {workloads:?}", p["profile"]);
        for w in workloads {
            let contenders = w["contenders"].as_object().unwrap();
            assert_eq!(contenders.len(), 4, "{}", w["name"]);
            for (c, f) in contenders {
                assert!(
                    f["median"].as_f64().unwrap() > 0.0,
                    "{} {} {c}: no traffic",
                    p["profile"],
                    w["name"]
                );
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
