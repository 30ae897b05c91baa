//! The DaemonSet as deployed: the init container (`install`) and the agent container of
//! `deploy/smarter-cni.yaml`, then the uninstall container of
//! `deploy/smarter-cni-uninstall.yaml`, each run with podman (runc) the way a kubelet runs
//! it — command, arguments, environment, mounts and security context read from the YAML
//! ([`super::manifest`]) — on a host-like tree: a temp dir `R` stands for `/` (`R/opt/cni/bin`,
//! `R/etc/cni/net.d`, `R/var/lib/smarter-cni`, `R/run/k3s/containerd`, …) and a fresh bpffs
//! is mounted at `R/sys/fs/bpf` (no `smarter-cni` in it), mounted into the containers at
//! `/sys/fs/bpf`. `hostNetwork` is the world's node namespace. containerd, already running
//! with that `bin_dir`/`conf_dir` and k3s's socket path, starts pods once the installer has
//! written the conflist.
//!
//! One deviation, forced by running on a machine whose real directories must not be used:
//! the ConfigMap's `DATA_DIR`, `STATE_DIR` and `BPFFS_DIR` are moved under `R` (the plugin,
//! run by containerd on the host, reads them from the conflist), and each volume holding one
//! is also mounted at its `R` path inside the containers. The containers run the root file
//! system of the image built from `deploy/Containerfile` with buildah out of this run's
//! binaries, plus the glibc layer these debug builds need ([`super::oci`]).
//!
//! Asserts: the agent's readiness probe passes; eBPF is the active datapath (bpfctl status,
//! `smarter_datapath_info`, the pins holding the pods); pods reach each other and the wan
//! (NATed); the node-local DNS answers a pod's CRI hostname; metrics are served; the
//! uninstall container removes everything (files, pins and pin root, programs on the uplink,
//! bridge, state, allocations, nftables tables).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use smarter_cni::datapath::DatapathKind;
use smarter_cni::dns::DEFAULT_LISTEN_IP;
use smarter_testbed::containerd::{Cni, Containerd, LOOPBACK};
use smarter_testbed::{BpfFs, NODE_UPLINK_IP, UPLINK};

use super::dns::resolve;
use super::manifest::{Container, daemonset, under};
use super::oci::{Podman, have};
use crate::*;

const TEST: &str = "containerd_daemonset";
const REROOTED: [&str; 3] = ["DATA_DIR", "STATE_DIR", "BPFFS_DIR"];

/// The argument after `flag` in `argv`.
fn arg_after<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv.iter().position(|a| a == flag);
    i.and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("{flag} in {argv:?}"))
}

fn host_of(c: &Container, volume: &str, root: &Path) -> PathBuf {
    let m = c.mounts.iter().find(|m| m.volume == volume);
    let p = m.and_then(|m| m.host_path.as_deref());
    under(
        root,
        p.unwrap_or_else(|| panic!("{}: no hostPath volume {volume}", c.name)),
    )
}

fn scrape(w: &World, addr: &str) -> String {
    smarter_testbed::scrape_metrics(w.node(), addr)
}

/// The programs on the node's uplink: TCX links (both directions) and netlink filters.
fn uplink_programs(w: &World) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let mut names: Vec<String> = w.node().run(|| {
        [TcAttachType::Ingress, TcAttachType::Egress]
            .into_iter()
            .filter_map(|t| SchedClassifier::query_tcx(UPLINK, t).ok())
            .flat_map(|(_, progs)| progs)
            .map(|p| format!("tcx {}", p.name_as_str().unwrap_or("?")))
            .collect()
    });
    for dir in ["ingress", "egress"] {
        let out = w
            .node()
            .exec(&["tc", "filter", "show", "dev", UPLINK, dir])
            .unwrap();
        names.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(" bpf "))
                .map(|l| format!("netlink {dir} {l}")),
        );
    }
    names
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Polls `f` (a readiness wait of at most 60 s) until it returns `Some`.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>, diag: impl Fn() -> String) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", diag());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn daemonset_as_deployed() {
    let Some(w) = setup(TEST) else {
        return;
    };
    let missing: Vec<&str> = ["podman", "buildah", "strip"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        smarter_testbed::skipped(&format!(
            "SKIP {TEST}: not installed: {} (cargo xtask setup installs them)",
            missing.join(", ")
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let bpffs = BpfFs::mount(&root.join("sys/fs/bpf")).expect("a fresh bpffs at R/sys/fs/bpf");
    let podman = Podman::new();
    let rootfs = podman.image_rootfs();
    let (init, agents) = daemonset("smarter-cni.yaml");
    let (_, uninstalls) = daemonset("smarter-cni-uninstall.yaml");
    let reroot = |mut c: Container| {
        for k in REROOTED {
            let v = c.env.get(k).cloned();
            if let Some(v) = v {
                c.env
                    .insert(k.into(), under(&root, &v).display().to_string());
            }
        }
        c
    };
    let [install] = <[Container; 1]>::try_from(init).expect("one init container");
    let [agent] = <[Container; 1]>::try_from(agents).expect("one container");
    let [uninstall] = <[Container; 1]>::try_from(uninstalls).expect("one container");
    let (install, agent, uninstall) = (reroot(install), reroot(agent), reroot(uninstall));
    let rerooted: Vec<PathBuf> = REROOTED
        .iter()
        .map(|k| PathBuf::from(&install.env[*k]))
        .collect();
    let [data_dir, state_dir, bpffs_dir] = <[PathBuf; 3]>::try_from(rerooted.clone()).unwrap();
    assert!(bpffs_dir.starts_with(bpffs.path()) && !bpffs_dir.exists());
    // What a fresh bpffs holds (the kernel's preload iterators, `maps.debug`/`progs.debug`).
    let fresh_bpffs = entries(bpffs.path());

    // The node: its own loopback plugin and resolv.conf; k3s's containerd already running.
    let bin_dir = host_of(&install, "cni-bin", &root);
    let conf_dir = host_of(&install, "cni-conf", &root);
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::os::unix::fs::symlink(LOOPBACK, bin_dir.join("loopback")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 203.0.113.53\n").unwrap();
    let socket = under(&root, arg_after(&agent.argv, "--cri-socket"));
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let cni = Cni::Dirs {
        bin_dir: bin_dir.clone(),
        conf_dir: conf_dir.clone(),
    };
    let c = Containerd::start(w.node().path(), &cni, Some(&socket)).expect("containerd");
    let empty_dirs = dir.path().join("emptydir");
    let args = |ctr: &Container, how: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = how.iter().map(|s| (*s).to_owned()).collect();
        a.extend(ctr.podman_args(&root, w.node().path(), &empty_dirs, &rerooted, &rootfs));
        a
    };

    // The init container, then the agent.
    let out = podman.ok(&args(&install, &["run", "--rm"]));
    assert!(out.contains("created pin root"), "{out}");
    c.wait_network_ready()
        .expect("the CRI loads the installed conflist");
    podman.ok(&args(&agent, &["run", "-d", "--name", "agent"]));
    let probe = agent.readiness.clone().expect("a readiness probe");
    let mut exec: Vec<String> = vec!["exec".into(), "agent".into()];
    exec.extend(probe);
    until(
        "the agent's readiness probe never passed",
        || podman.run(&exec).status.success().then_some(()),
        || podman.logs("agent"),
    );

    // Pods through containerd.
    let web = c.run(c.config("web-0", "frontend", &[(8080, 80)]));
    let client = c.run(c.config("client", "client", &[]));
    assert!(ping_from(&client.netns, web.ip), "client → web");
    assert_eq!(
        wan_source(&w, &client.netns),
        NODE_UPLINK_IP,
        "NAT to the wan"
    );

    // eBPF is the active datapath: bpfctl (as installed on the node), the metric, the pins.
    let status = run_ok(
        w.node()
            .command(bin_dir.join("smarter-bpfctl"))
            .arg("--bpffs-dir")
            .arg(&bpffs_dir)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["-o", "json", "status"]),
    );
    let status: Value = serde_json::from_slice(&status.stdout).expect("bpfctl JSON");
    let row = status
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["network"] == "smartnet"))
        .unwrap_or_else(|| panic!("no smartnet in {status}"));
    assert_eq!(row["datapath"], "ebpf", "{row}");
    let metrics_addr = arg_after(&agent.argv, "--metrics-addr");
    let text = until(
        "no smarter_datapath_info with datapath=\"ebpf\" in the metrics",
        || {
            let t = scrape(&w, metrics_addr);
            t.lines()
                .any(|l| l.starts_with("smarter_datapath_info{") && l.contains("datapath=\"ebpf\""))
                .then_some(t)
        },
        || format!("{}\n{}", scrape(&w, metrics_addr), podman.logs("agent")),
    );
    assert!(
        text.contains("HTTP/1.") && text.contains("# TYPE"),
        "{text}"
    );
    let conf = smarter_cni::cni::NetConf {
        bpffs_dir: bpffs_dir.clone(),
        state_dir: state_dir.clone(),
        ..smarter_cni::cni::NetConf::default()
    };
    let pinned = smarter_cni::datapath::open_existing(&conf, DatapathKind::Ebpf)
        .unwrap()
        .expect("pins under the created pin root");
    let mut ips: Vec<_> = pinned
        .endpoints()
        .unwrap()
        .into_iter()
        .map(|e| e.ip)
        .collect();
    ips.sort();
    let mut want = vec![web.ip, client.ip];
    want.sort();
    assert_eq!(ips, want, "the pods are eBPF endpoints");
    drop(pinned);
    let attached = uplink_programs(&w);
    assert!(!attached.is_empty(), "no program on the uplink");

    // The node-local DNS answers the CRI hostname.
    let got = until(
        "the node-local DNS never answered frontend.",
        || resolve(&client.netns, DEFAULT_LISTEN_IP, "frontend.").filter(|a| a == &[web.ip]),
        || podman.logs("agent"),
    );
    assert_eq!(got, [web.ip]);

    // Uninstall: pods moved off, the DaemonSet deleted, then the uninstall DaemonSet.
    for id in c.sandboxes() {
        c.stop(&id);
        c.remove(&id);
    }
    podman.ok(&["stop".into(), "-t".into(), "10".into(), "agent".into()]);
    podman.ok(&args(&uninstall, &["run", "-d", "--name", "uninstall"]));
    let log = until(
        "the uninstall container never finished",
        || {
            let l = podman.logs("uninstall");
            l.contains("uninstall done").then_some(l)
        },
        || podman.logs("uninstall"),
    );
    podman.ok(&[
        "rm".into(),
        "-f".into(),
        "-t".into(),
        "0".into(),
        "uninstall".into(),
    ]);
    assert_eq!(
        entries(&bin_dir),
        ["loopback"],
        "only the node's own plugin: {log}"
    );
    assert_eq!(entries(&conf_dir), Vec::<String>::new(), "{log}");
    assert_eq!(
        entries(bpffs.path()),
        fresh_bpffs,
        "pins and pin root: {log}"
    );
    assert_eq!(entries(&state_dir), Vec::<String>::new(), "state: {log}");
    let ips: Vec<String> = entries(&data_dir.join("smartnet"))
        .into_iter()
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    assert_eq!(ips, Vec::<String>::new(), "allocations");
    assert!(
        !w.node().succeeds(&["ip", "link", "show", "smartnet0"]),
        "bridge: {log}"
    );
    assert_eq!(node_veths(&w), Vec::<String>::new());
    // No program left attached in the node (TCX links and netlink filters alike).
    assert_eq!(
        uplink_programs(&w),
        Vec::<String>::new(),
        "programs left on the uplink"
    );
    assert!(
        !matches!(with_datapath(&w, "nftables", |_| ()), Ok(Some(()))),
        "nftables tables"
    );
    drop(c);
}
