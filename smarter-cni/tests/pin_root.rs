//! The node-like layout of issue 12: bpffs is mounted at a parent directory (plays
//! `/sys/fs/bpf`) and the pin root (`bpffsDir`, plays `/sys/fs/bpf/smarter-cni`) does not
//! exist yet. The plugin (ADD with `datapath` `auto` and `ebpf`) and the agent create it (mode
//! 0700, root-owned) and run eBPF — asserted from the attachment record, the pins, the
//! verdict counters, the recorded choice, `smarter-bpfctl status`, the agent's health file and
//! its `smarter_datapath_info` metric — and pods reach the wan through the NAT. A pin root whose
//! nearest existing ancestor is not bpffs gets nothing created: `auto` falls back to nftables
//! naming the reason, `ebpf` fails with code 103 naming the path. Without `CAP_BPF` and
//! `CAP_SYS_ADMIN` (EPERM from bpf(2)) STATUS names `permission`. A pin root others could
//! write to is refused with 103 even under `auto`. STATUS creates nothing.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use smarter_cni::datapath::{ChoiceRecord, LAYOUT_VERSION};
use smarter_testbed::{CniCall, NODE_UPLINK_IP, World, spawn_in};

/// Bounds a wait; never asserts speed.
const DEADLINE: Duration = Duration::from_secs(15);
const METRICS: &str = "127.0.0.1:19403";

/// The `datapath` of the attachment record of container `id`.
fn recorded_datapath(w: &World, id: &str) -> String {
    let path = w
        .state_dir()
        .join("smartnet")
        .join(format!("{id}+eth0.json"));
    let rec: Value = serde_json::from_slice(&std::fs::read(&path).expect("record")).unwrap();
    rec["datapath"].as_str().expect("datapath").to_string()
}

/// The mode bits and owner of a directory.
fn mode_and_owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(m.is_dir(), "{} is a directory", p.display());
    (m.mode() & 0o7777, m.uid())
}

/// The pin of the pod program: present once the programs are loaded and pinned.
fn pod_program_pin(pin_root: &Path) -> PathBuf {
    pin_root
        .join("smartnet")
        .join(format!("v{LAYOUT_VERSION}"))
        .join("progs/smarter_pod")
}

/// Whether the network has nftables tables (looked up in the node namespace).
fn has_nft_tables(w: &World) -> bool {
    with_datapath(w, "nftables", |_| ())
        .expect("nft list")
        .is_some()
}

#[test]
fn add_on_a_fresh_node_creates_the_pin_root_and_runs_ebpf() {
    for mode in ["auto", "ebpf"] {
        let Some(mut w) = world(&format!("pinroot-{mode}")) else {
            return;
        };
        let root = w.bpffs_dir().to_path_buf();
        assert!(w.bpffs_mount().is_dir(), "the bpffs is mounted");
        assert!(!root.exists(), "fresh layout: {} is absent", root.display());
        let mut conf = w.netconf("1.1.0");
        conf["datapath"] = json!(mode);

        let status = call(&w, &CniCall::new("STATUS", &conf));
        assert_eq!(status.status, 0, "{mode}: STATUS: {}", status.stdout);
        assert!(!root.exists(), "{mode}: STATUS creates nothing");

        let ns = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
        let res = add_ok(&w, &conf, "c0", &ns);
        assert_eq!(recorded_datapath(&w, "c0"), "ebpf", "{mode}");
        assert_eq!(
            mode_and_owner(&root),
            (0o700, 0),
            "{mode}: the created pin root"
        );
        assert!(pod_program_pin(&root).exists(), "{mode}: programs pinned");
        assert_eq!(endpoints(&w), vec![result_ip(&res)], "{mode}");
        let choice = ChoiceRecord::load(&w.state_dir(), "smartnet").expect("choice recorded");
        assert_eq!(choice.datapath, "ebpf", "{mode}");
        let reason = if mode == "auto" { "auto" } else { "configured" };
        assert_eq!(choice.reason, reason, "{mode}");

        // Pod → wan leaves NATed to the uplink's address, through the eBPF programs: their
        // NAT counter moved and there are no nftables rules that could have done it.
        let srv = wan_roundtrip(&w, "pod0");
        assert_eq!(
            srv.seen().first().map(std::net::SocketAddr::ip),
            Some(IpAddr::V4(NODE_UPLINK_IP)),
            "{mode}: NATed to the uplink"
        );
        let nat_out = counted(&w, "ebpf", &["nat_out"]);
        assert!(nat_out > 0, "{mode}: eBPF NATed the flow");
        assert!(!has_nft_tables(&w), "{mode}: no nftables datapath");

        let rows = bpfctl_status(&w, &root);
        assert_eq!(rows[0]["datapath"], "ebpf", "{rows}");
        assert_eq!(rows[0]["reason"], reason, "{rows}");
        assert_eq!(rows[0]["reason_detail"], Value::Null, "{rows}");

        // A second ADD reuses the pin root and the pins.
        let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
        add_ok(&w, &conf, "c1", &ns1);
        assert_eq!(recorded_datapath(&w, "c1"), "ebpf", "{mode}");
    }
}

#[test]
fn a_pin_root_without_bpffs_beneath_falls_back_or_fails_naming_it() {
    let Some(mut w) = world("pinroot-nobpf") else {
        return;
    };
    let plain = tempfile::tempdir().unwrap();
    let root = plain.path().join("fs/smarter-cni");
    let root_text = root.display().to_string();
    let mut conf = w.netconf("1.1.0");
    conf["bpffsDir"] = json!(root);

    // auto: nftables, with the reason named everywhere, and nothing created.
    let ns = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let status = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(status.status, 0, "auto can serve: {}", status.stdout);
    let add = call(&w, &CniCall::new("ADD", &conf).pod("c0", &ns));
    assert_eq!(add.status, 0, "{}\n{}", add.stdout, add.stderr);
    assert!(
        add.stderr.contains("eBPF unavailable") && add.stderr.contains(&root_text),
        "the fallback is logged with its reason: {}",
        add.stderr
    );
    assert_eq!(recorded_datapath(&w, "c0"), "nftables");
    assert!(has_nft_tables(&w));
    assert!(
        !plain.path().join("fs").exists(),
        "nothing is created off bpffs"
    );
    let choice = ChoiceRecord::load(&w.state_dir(), "smartnet").expect("choice recorded");
    assert_eq!(
        (choice.datapath.as_str(), choice.reason.as_str()),
        ("nftables", "no_bpffs")
    );
    assert!(
        choice.detail.as_deref().unwrap_or("").contains(&root_text),
        "{choice:?}"
    );
    let srv = wan_roundtrip(&w, "pod0");
    assert_eq!(
        srv.seen().first().map(std::net::SocketAddr::ip),
        Some(IpAddr::V4(NODE_UPLINK_IP)),
        "nftables masquerade"
    );
    let rows = bpfctl_status(&w, &root);
    assert_eq!(rows[0]["datapath"], "nftables", "{rows}");
    assert_eq!(rows[0]["reason"], "no_bpffs", "{rows}");
    assert!(
        rows[0]["reason_detail"]
            .as_str()
            .unwrap_or("")
            .contains(&root_text),
        "{rows}"
    );

    // ebpf: STATUS says why, ADD fails with code 103 naming the path; still nothing created.
    conf["datapath"] = json!("ebpf");
    let status = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(status.code(), Some(50), "{}", status.stdout);
    assert!(status.msg().contains(&root_text), "{}", status.stdout);
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    let add = call(&w, &CniCall::new("ADD", &conf).pod("c1", &ns1));
    assert_eq!(add.code(), Some(103), "{}", add.stdout);
    assert!(
        add.msg().contains(&root_text) && add.msg().contains("not on a bpf filesystem"),
        "{}",
        add.stdout
    );
    assert!(!plain.path().join("fs").exists());
    assert_eq!(records(&w).len(), 1, "the failed ADD left no record");
}

/// A `smarter-agent` serving metrics in the node namespace, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(w: &World, conf: &Value, dir: &Path) -> (Agent, PathBuf) {
    let conf_path = dir.join("10-smartnet.conflist");
    let list = json!({"cniVersion": conf["cniVersion"], "name": conf["name"], "plugins": [conf]});
    std::fs::write(&conf_path, list.to_string()).unwrap();
    let health = dir.join("agent.health");
    // A killed agent leaves its health file behind.
    let _ = std::fs::remove_file(&health);
    let child = agent_command(w, &conf_path, &health)
        .args(["--metrics-addr", METRICS, "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start smarter-agent");
    let agent = Agent(child);
    let end = Instant::now() + DEADLINE;
    while !health.exists() {
        assert!(Instant::now() < end, "smarter-agent never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    (agent, health)
}

fn scrape(w: &World) -> String {
    spawn_in(w.node(), || {
        let mut s = TcpStream::connect(METRICS).expect("metrics server");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap()
}

#[test]
fn the_agent_starts_on_a_fresh_node_with_ebpf_and_says_so() {
    let Some(w) = world("pinroot-agent") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = w.bpffs_dir().to_path_buf();
    assert!(!root.exists());
    let conf = w.netconf("1.1.0");
    let (agent, health) = start_agent(&w, &conf, dir.path());
    assert_eq!(mode_and_owner(&root), (0o700, 0), "the agent created it");
    assert!(
        pod_program_pin(&root).exists(),
        "the agent loaded and pinned"
    );
    let text = std::fs::read_to_string(&health).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("datapath ebpf (auto")),
        "{text}"
    );
    let metrics = scrape(&w);
    assert!(
        metrics.lines().any(|l| l
            == "smarter_datapath_info{network=\"smartnet\",datapath=\"ebpf\",reason=\"auto\"} 1"),
        "{metrics}"
    );
    drop(agent);

    // Off bpffs: the agent runs nftables and says why.
    let plain = tempfile::tempdir().unwrap();
    let other = plain.path().join("fs/smarter-cni");
    let mut conf = conf;
    conf["bpffsDir"] = json!(other);
    let (_agent, health) = start_agent(&w, &conf, dir.path());
    let text = std::fs::read_to_string(&health).unwrap();
    assert!(
        text.lines().any(
            |l| l.starts_with("datapath nftables (auto: eBPF unavailable")
                && l.contains(&other.display().to_string())
        ),
        "{text}"
    );
    let metrics = scrape(&w);
    assert!(
        metrics.lines().any(|l| l
            == "smarter_datapath_info{network=\"smartnet\",datapath=\"nftables\",reason=\"no_bpffs\"} 1"),
        "{metrics}"
    );
    assert!(
        !plain.path().join("fs").exists(),
        "nothing created off bpffs"
    );
}

#[test]
fn without_bpf_permission_status_names_the_reason() {
    let Some(w) = world("pinroot-eperm") else {
        return;
    };
    if !Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        smarter_testbed::skipped("SKIP without_bpf_permission_status_names_the_reason: no setpriv");
        return;
    }
    // The plugin without CAP_BPF and CAP_SYS_ADMIN (dropped from the bounding set, so root's
    // exec does not get them back): bpf(2) answers EPERM.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("smarter-cni");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set -bpf,-sys_admin -- {} \"$@\"\n",
            bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut conf = w.netconf("1.1.0");
    let status = w.cni(&wrapper, &CniCall::new("STATUS", &conf)).unwrap();
    assert_eq!(
        status.status, 0,
        "auto serves with nftables: {}",
        status.stdout
    );
    assert!(
        status.stderr.contains("no permission to use bpf()")
            && status.stderr.contains("ADD will use nftables"),
        "{}",
        status.stderr
    );
    conf["datapath"] = json!("ebpf");
    let status = w.cni(&wrapper, &CniCall::new("STATUS", &conf)).unwrap();
    assert_eq!(status.code(), Some(50), "{}", status.stdout);
    assert!(
        status.msg().contains("no permission to use bpf()"),
        "{}",
        status.stdout
    );
    // With the capabilities, the same configuration is fine.
    let status = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(status.status, 0, "{}", status.stdout);
    assert!(!w.bpffs_dir().exists(), "STATUS creates nothing");
}

#[test]
fn an_untrusted_pin_root_is_refused_not_worked_around() {
    let Some(mut w) = world("pinroot-unsafe") else {
        return;
    };
    // Someone else could have made it first (bpffs's root is world-writable): refused with
    // 103 naming it, also under `auto` — an unsafe pin root is no reason to switch datapaths.
    std::fs::create_dir(w.bpffs_dir()).unwrap();
    std::fs::set_permissions(
        w.bpffs_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let add = call(&w, &CniCall::new("ADD", &conf).pod("c0", &ns));
    assert_eq!(add.code(), Some(103), "{}", add.stdout);
    assert!(
        add.msg().contains(&w.bpffs_dir().display().to_string())
            && add.msg().contains("writable by others"),
        "{}",
        add.stdout
    );
    assert_no_leaks(&w, "refused ADD");
}
