//! Helpers shared by the namespace tests: a world per test, the plugin binary, and a leak
//! census of everything an attachment can leave behind.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use smarter_cni::datapath::{self, Datapath, DatapathKind};
use smarter_testbed::{
    CniCall, CniOutput, EchoServer, Netns, WAN_SERVER_IP, World, require_root, tcp_roundtrip,
};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smarter-cni"))
}

/// A fresh world, or `None` (with a SKIP line) when not root.
pub fn world(test: &str) -> Option<World> {
    if !require_root(test) {
        return None;
    }
    Some(World::new(test).expect("build namespace world"))
}

pub fn call(w: &World, c: &CniCall) -> CniOutput {
    w.cni(&bin(), c).expect("run plugin")
}

/// ADD and assert success; returns the result JSON.
pub fn add_ok(w: &World, conf: &Value, id: &str, ns: &Path) -> Value {
    let out = call(w, &CniCall::new("ADD", conf).pod(id, ns));
    assert_eq!(
        out.status, 0,
        "ADD {id} failed: {}\n{}",
        out.stdout, out.stderr
    );
    out.json
}

/// The pod address from an ADD result.
pub fn result_ip(res: &Value) -> Ipv4Addr {
    let addr = res["ips"][0]["address"].as_str().expect("ips[0].address");
    addr.split('/').next().unwrap().parse().expect("IPv4")
}

/// Host-side veths in the node namespace.
pub fn node_veths(w: &World) -> Vec<String> {
    let out = w
        .node()
        .exec(&["ip", "-o", "link", "show"])
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("smv"))
        .collect()
}

/// Interfaces in a pod namespace other than `lo`.
pub fn pod_links(ns: &Netns) -> Vec<String> {
    let out = ns.exec(&["ip", "-o", "link", "show"]).expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n != "lo")
        .collect()
}

/// IPAM files (addresses) of the network.
pub fn allocations(w: &World) -> Vec<String> {
    let dir = w.data_dir().join("smartnet");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect();
    v.sort();
    v
}

/// Attachment records of the network.
pub fn records(w: &World) -> Vec<String> {
    let dir = w.state_dir().join("smartnet");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

/// The configuration of the world's network `smartnet` (its directories, every other key the
/// default) as the registry ([`datapath::open_existing`], [`datapath::usable`]) takes it.
pub fn registry_conf(w: &World) -> smarter_cni::cni::NetConf {
    smarter_cni::cni::NetConf {
        bpffs_dir: w.bpffs_dir().to_path_buf(),
        state_dir: w.state_dir(),
        ..smarter_cni::cni::NetConf::default()
    }
}

/// The world's eBPF datapath as the registry opens it, `None` when nothing is pinned.
pub fn ebpf(w: &World) -> Option<Box<dyn Datapath>> {
    datapath::open_existing(&registry_conf(w), DatapathKind::Ebpf).expect("open pins")
}

/// `f` of the world's `dp` datapath (`ebpf` or `nftables`) as the registry opens it, run in
/// the node namespace (where `nft` finds the node's tables); `None` when that datapath has
/// nothing there.
///
/// # Errors
/// When the datapath has state that cannot be read.
pub fn with_datapath<T: Send>(
    w: &World,
    dp: &str,
    f: impl FnOnce(&dyn Datapath) -> T + Send,
) -> Result<Option<T>, datapath::DatapathError> {
    let kind = DatapathKind::parse(dp).expect("a datapath name");
    let conf = registry_conf(w);
    w.node()
        .run(|| Ok(datapath::open_existing(&conf, kind)?.map(|d| f(d.as_ref()))))
}

/// Whether the nftables datapath can serve in the world's node namespace, as the registry
/// says ([`datapath::usable`]); why not, in words.
pub fn nftables_usable(w: &World) -> Result<(), String> {
    let conf = registry_conf(w);
    w.node()
        .run(|| datapath::usable(&conf, DatapathKind::Nftables))
}

/// The packets counted under each of `names` by the world's `dp` datapath (verdicts for eBPF,
/// named counters for nftables), summed.
///
/// # Panics
/// When the datapath has no state or its counters cannot be read.
pub fn counted(w: &World, dp: &str, names: &[&str]) -> u64 {
    with_datapath(w, dp, |d| {
        d.counters()
            .expect("counters")
            .iter()
            .filter(|(n, _, _)| names.contains(&n.as_str()))
            .map(|(_, packets, _)| packets)
            .sum()
    })
    .unwrap_or_else(|e| panic!("open the {dp} datapath: {e}"))
    .unwrap_or_else(|| panic!("the {dp} datapath has no state"))
}

/// Endpoint addresses in the pinned endpoints map (empty when nothing is pinned).
pub fn endpoints(w: &World) -> Vec<Ipv4Addr> {
    match ebpf(w) {
        None => vec![],
        Some(dp) => {
            let mut v: Vec<_> = dp
                .endpoints()
                .expect("read endpoints")
                .into_iter()
                .map(|e| e.ip)
                .collect();
            v.sort();
            v
        }
    }
}

/// Asserts nothing of any attachment is left: no veth, allocation, record or map entry.
pub fn assert_no_leaks(w: &World, context: &str) {
    assert_eq!(node_veths(w), Vec::<String>::new(), "{context}: veths left");
    assert_eq!(
        allocations(w),
        Vec::<String>::new(),
        "{context}: allocations left"
    );
    assert_eq!(records(w), Vec::<String>::new(), "{context}: records left");
    assert_eq!(
        endpoints(w),
        Vec::<Ipv4Addr>::new(),
        "{context}: map entries left"
    );
}

pub fn ping(from: &Netns, to: Ipv4Addr) -> bool {
    from.succeeds(&["ping", "-c", "1", "-W", "2", &to.to_string()])
}

/// One TCP round trip from pod `pod` to an echo server on the wan (`WAN_SERVER_IP:8000`),
/// through the NAT; returns the server (its `seen()` tells the source it saw).
pub fn wan_roundtrip(w: &World, pod: &str) -> EchoServer {
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    tcp_roundtrip(
        w.pod(pod).expect("pod namespace"),
        SocketAddr::from((WAN_SERVER_IP, 8000)),
        b"x",
        Duration::from_secs(3),
    )
    .expect("TCP round trip to the wan");
    srv
}

/// `smarter-agent --conf <conf> --health-file <health>` in the world's node namespace; the
/// caller adds flags and spawns it.
pub fn agent_command(w: &World, conf: &Path, health: &Path) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", w.node().path().display()))
        .arg(env!("CARGO_BIN_EXE_smarter-agent"))
        .arg("--conf")
        .arg(conf)
        .arg("--health-file")
        .arg(health);
    c
}

/// A `smarter-agent` in the world's node namespace, its conflist (`conf` as the only plugin)
/// and health file in `dir`, started with `args`; ready once constructed, killed on drop.
pub struct Agent {
    child: std::process::Child,
    health: PathBuf,
}

impl Agent {
    /// Starts the agent and waits until it is ready (its health file exists).
    pub fn start(w: &World, conf: &Value, dir: &Path, args: &[&str]) -> Self {
        let conf_path = dir.join("10-smartnet.conflist");
        let list = serde_json::json!({"cniVersion": conf["cniVersion"], "name": conf["name"],
                                      "plugins": [conf]});
        std::fs::write(&conf_path, list.to_string()).expect("write conflist");
        let health = dir.join("agent.health");
        let _ = std::fs::remove_file(&health);
        let child = agent_command(w, &conf_path, &health)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start smarter-agent");
        let agent = Self { child, health };
        agent.wait_ready();
        agent
    }

    /// Waits until the health file exists; bounds a hang only (a ready agent writes it within
    /// milliseconds).
    pub fn wait_ready(&self) {
        let end = std::time::Instant::now() + Duration::from_secs(15);
        while !self.health.exists() {
            assert!(
                std::time::Instant::now() < end,
                "smarter-agent never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent with `signal` and waits for it; after SIGTERM it must exit cleanly.
    pub fn stop(mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = self.child.wait().unwrap();
        if signal == nix::sys::signal::Signal::SIGTERM {
            assert!(status.success(), "agent exit after SIGTERM: {status}");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file below `root` with its mode, inode and mtime (seconds, nanoseconds), sorted: two
/// equal snapshots mean nothing was written, replaced or touched.
pub fn tree_snapshot(root: &Path) -> Vec<(PathBuf, u32, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.mode(), m.ino(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out.sort();
    out
}

/// The conflist examples the README documents: every ```` ```json ```` block that is a
/// conflist (has `plugins`), parsed; panics when one does not parse, so a broken example fails.
pub fn readme_conflists() -> Vec<Value> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, l) if l.starts_with("```json") => block = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                let v: Value = serde_json::from_str(b)
                    .unwrap_or_else(|e| panic!("README json block does not parse: {e}\n{b}"));
                if v.get("plugins").is_some() {
                    out.push(v);
                }
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(!out.is_empty(), "no conflist example in the README");
    out
}

/// A documented conflist with the world's directories added to each smarter-cni plugin
/// (`dataDir`, `stateDir`, `bpffsDir`: the documented defaults are the machine's own, which
/// tests never use); nothing else changes. Panics when an example sets one of them.
pub fn with_world_dirs(w: &World, example: &Value) -> Value {
    let mut list = example.clone();
    for p in list["plugins"].as_array_mut().expect("plugins") {
        if p["type"] == "smarter-cni" {
            for (k, v) in [
                ("dataDir", w.data_dir()),
                ("stateDir", w.state_dir()),
                ("bpffsDir", w.bpffs_dir().to_path_buf()),
            ] {
                assert!(p.get(k).is_none(), "the example sets {k}: {example}");
                p[k] = serde_json::json!(v);
            }
        }
    }
    list
}

/// The `smarter-bpfctl status -o json` rows with `--bpffs-dir pin_root`.
pub fn bpfctl_status(w: &World, pin_root: &Path) -> Value {
    bpfctl_json(w, pin_root, "status")
}

/// The JSON rows of `smarter-bpfctl <command> -o json` with `--bpffs-dir pin_root`, in the
/// node (`command`: its words, split at whitespace).
///
/// # Panics
/// When it fails or prints no JSON.
pub fn bpfctl_json(w: &World, pin_root: &Path, command: &str) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", w.node().path().display()))
        .arg(env!("CARGO_BIN_EXE_smarter-bpfctl"))
        .arg("--bpffs-dir")
        .arg(pin_root)
        .arg("--state-dir")
        .arg(w.state_dir())
        .args(command.split_whitespace())
        .args(["-o", "json"])
        .output()
        .expect("run smarter-bpfctl");
    assert!(
        out.status.success(),
        "bpfctl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bpfctl JSON")
}
