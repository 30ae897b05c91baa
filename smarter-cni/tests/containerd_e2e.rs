//! End to end with the runtime k3s embeds: Debian's containerd 1.6 (its CRI plugin, runc)
//! started inside the test world's `node` namespace with its own root, state, socket, CNI
//! `bin_dir` and `conf_dir`, and driven over gRPC with the project's CRI client exactly as a
//! kubelet drives it: RunPodSandbox with metadata, hostname and port mappings,
//! PodSandboxStatus, StopPodSandbox, RemovePodSandbox.
//!
//! No registry is reachable: the sandbox ("pause") image is built here, a static C program
//! that sleeps until SIGTERM/SIGINT packed as a `FROM scratch` OCI archive written directly,
//! and imported with `ctr images import`; `sandbox_image` names it.
//!
//! Processes run in a sandbox's network namespace (servers, clients, ping) by entering the
//! namespace containerd reports (`runtimeSpec.linux.namespaces` of the verbose status).
//!
//! Skips with a message when not root or when containerd, ctr, runc, gcc (static libc) or
//! the reference `loopback` plugin (containerd's CRI sets up `lo` with it) are missing;
//! `cargo xtask setup` installs them.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use smarter_cni::datapath::iptables::NftDatapath;
use smarter_cni::dns::cri::CriClient;
use smarter_cni::dns::cri::lifecycle::{PROTOCOL_TCP, PodSandboxConfig, PortMapping};
use smarter_cni::dns::cri::{PodSandboxMetadata, SANDBOX_READY};
use smarter_cni::testbed::{EchoServer, NODE_UPLINK_IP, WAN_SERVER_IP, World};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const LOOPBACK: &str = "/usr/lib/cni/loopback";
const PAUSE_IMAGE: &str = "localhost/smarter-pause:e2e";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);
/// Limit on one CRI call (RunPodSandbox runs the plugin and runc): a guard against a hung
/// runtime, not a measurement.
const CRI_CALL_LIMIT: Duration = Duration::from_secs(120);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The pause program: sleeps until SIGTERM or SIGINT.
const PAUSE_C: &str = r"
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (;;) pause();
}
";

/// Why this machine cannot run the suite, if it cannot.
fn missing_tools() -> Option<String> {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut missing = Vec::new();
    for (what, ok) in [
        ("containerd", Path::new(CONTAINERD).exists()),
        ("ctr", Path::new(CTR).exists()),
        ("runc", runc.is_some()),
        ("the loopback CNI plugin", Path::new(LOOPBACK).exists()),
        (
            "gcc",
            Command::new("gcc")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        ),
    ] {
        if !ok {
            missing.push(what);
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A world and the tools, or `None` with a SKIP line.
fn setup(test: &str) -> Option<World> {
    let w = world(test)?;
    if let Some(missing) = missing_tools() {
        eprintln!("SKIP {test}: not installed: {missing} (cargo xtask setup installs them)");
        return None;
    }
    Some(w)
}

fn sha256(data: &[u8]) -> String {
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the pause image as an OCI archive at `dir/pause.tar`: a static binary `/pause`,
/// one uncompressed layer, `FROM scratch`.
fn build_pause_image(dir: &Path) -> PathBuf {
    let src = dir.join("pause.c");
    let rootfs = dir.join("pause-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(&src, PAUSE_C).unwrap();
    run_ok(
        Command::new("gcc")
            .args(["-static", "-O2", "-s", "-o"])
            .arg(rootfs.join("pause"))
            .arg(&src),
    );
    std::fs::set_permissions(rootfs.join("pause"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layer_path = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer_path)
            .arg("-C")
            .arg(&rootfs)
            .arg("pause"),
    );
    let layer = std::fs::read(&layer_path).unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    let layer_digest = format!("sha256:{}", sha256(&layer));
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256(&manifest)),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": PAUSE_IMAGE,
                "org.opencontainers.image.ref.name": "e2e",
            },
        }],
    });
    let oci = dir.join("pause-oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for blob in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(sha256(blob)), blob).unwrap();
    }
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(oci.join("index.json"), index.to_string()).unwrap();
    let archive = dir.join("pause.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&oci)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    archive
}

/// Starts containerd inside the node namespace `node` with the config in `dir`, appending
/// its output to `dir/containerd.log`.
fn spawn_containerd(node: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .unwrap();
    Command::new("nsenter")
        .arg(format!("--net={}", node.display()))
        .arg("--")
        .arg(CONTAINERD)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("SMARTER_CNI_LOG", "debug")
        .env("SMARTER_CNI_LOG_FILE", dir.join("cni.log"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd")
}

/// SIGTERM, then SIGKILL if it has not exited within 10 s.
fn stop_child(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A sandbox as the tests see it.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    ip: Ipv4Addr,
    netns: PathBuf,
    info: Value,
}

/// containerd running in the world's node namespace, confined to a scratch directory and a
/// cgroup of its own. On drop (also on panic): every sandbox is stopped and removed, then
/// containerd and its shims are killed, their mounts and the sandbox namespaces they left
/// are removed, and the cgroup goes.
struct Containerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    cri: CriClient,
    cgroup_parent: String,
    netns_seen: std::sync::Mutex<Vec<PathBuf>>,
    node: PathBuf,
}

impl Containerd {
    /// Starts containerd for world `w` with `conflist` in its `conf_dir`; waits until its
    /// CRI reports the network ready.
    fn start(w: &World, conflist: &Value) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix(&format!("smt-{}-ctrd{seq}-", std::process::id()))
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["root", "state", "cni/bin", "cni/net.d", "opt", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The plugin behind a wrapper that logs each call as containerd makes it:
        // `verb|container id|CNI_NETNS|stdin` (stdin is one line of JSON).
        let wrapper = format!(
            "#!/bin/sh\ninput=$(cat)\nprintf '%s|%s|%s|%s\\n' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \
             \"$CNI_NETNS\" \"$input\" >> {log}\nprintf '%s' \"$input\" | exec {real}\n",
            log = d.join("calls.log").display(),
            real = bin().display(),
        );
        std::fs::write(d.join("cni/bin/smarter-cni"), wrapper).unwrap();
        std::fs::set_permissions(
            d.join("cni/bin/smarter-cni"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink(LOOPBACK, d.join("cni/bin/loopback")).unwrap();
        std::fs::write(
            d.join("cni/net.d/10-smartnet.conflist"),
            serde_json::to_vec_pretty(conflist).unwrap(),
        )
        .unwrap();
        let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("runc checked by setup");
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.grpc.v1.introspection-unused"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
"#,
            d = d.display(),
            sock = socket.display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let child = spawn_containerd(w.node().path(), d);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cri = {
            let _enter = rt.enter();
            CriClient::with_timeout(&socket, CRI_CALL_LIMIT).unwrap()
        };
        let me = Self {
            dir,
            socket,
            child: Some(child),
            rt,
            cri,
            cgroup_parent: format!("/smt-{}-ctrd{seq}", std::process::id()),
            netns_seen: std::sync::Mutex::new(Vec::new()),
            node: w.node().path().to_path_buf(),
        };
        me.wait_ready();
        me.import_pause_image();
        me
    }

    fn log(&self) -> String {
        let all =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let cni = std::fs::read_to_string(self.dir.path().join("cni.log")).unwrap_or_default();
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- containerd log (tail) ---\n{}\n--- plugin log (tail) ---\n{}",
            tail(&all),
            tail(&cni)
        )
    }

    /// The plugin calls containerd made so far: (verb, container id, CNI_NETNS, stdin).
    fn calls(&self) -> Vec<(String, String, String, Value)> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, '|');
                let mut next = || parts.next().unwrap_or_default().to_owned();
                let (verb, id, netns, stdin) = (next(), next(), next(), next());
                let stdin = serde_json::from_str(&stdin).unwrap_or(Value::Null);
                (verb, id, netns, stdin)
            })
            .collect()
    }

    /// Waits (polling, a readiness wait) until the CRI answers and reports `NetworkReady`.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.rt.block_on(async {
                match self.cri.conditions().await {
                    Ok(c) => c
                        .iter()
                        .find(|c| c.r#type == "NetworkReady")
                        .map(|c| (c.status, c.message.clone())),
                    Err(e) => Some((false, e.to_string())),
                }
            });
            match ready {
                Some((true, _)) => return,
                other => assert!(
                    Instant::now() < deadline,
                    "containerd not ready: {other:?}\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops containerd (SIGTERM) and starts it again on the same directories; the shims
    /// and the pods keep running meanwhile, as on a node whose containerd restarts.
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        self.child = Some(spawn_containerd(&self.node, self.dir.path()));
        self.wait_ready();
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node.display()))
            .arg("--")
            .arg(CTR)
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io"]);
        c
    }

    fn import_pause_image(&self) {
        let archive = build_pause_image(self.dir.path());
        run_ok(
            self.ctr()
                .args(["images", "import", "--snapshotter", "native"])
                .arg(&archive),
        );
    }

    /// A sandbox config: pod `name` in namespace `default` with `hostname` and `ports`
    /// (host, container) over TCP.
    fn config(&self, name: &str, hostname: &str, ports: &[(u16, u16)]) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: hostname.into(),
            log_directory: self
                .dir
                .path()
                .join("logs")
                .join(name)
                .display()
                .to_string(),
            port_mappings: ports
                .iter()
                .map(|&(host, container)| PortMapping {
                    protocol: PROTOCOL_TCP,
                    container_port: i32::from(container),
                    host_port: i32::from(host),
                    host_ip: String::new(),
                })
                .collect(),
            linux: Some(smarter_cni::dns::cri::lifecycle::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox then PodSandboxStatus.
    fn run(&self, config: PodSandboxConfig) -> Sandbox {
        let id = self
            .rt
            .block_on(self.cri.run_pod_sandbox(config))
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.log()));
        self.status(&id)
    }

    /// PodSandboxStatus of a ready sandbox, with its address and namespace.
    fn status(&self, id: &str) -> Sandbox {
        let (status, info) = self
            .rt
            .block_on(self.cri.pod_sandbox_status(id))
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"));
        assert_eq!(status.state, SANDBOX_READY, "{id} ready");
        let info: Value = serde_json::from_str(info.get("info").expect("verbose info")).unwrap();
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|nss| nss.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no network namespace in {info}"));
        self.netns_seen.lock().unwrap().push(netns.clone());
        let ip = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        Sandbox {
            id: id.to_owned(),
            ip: ip
                .parse()
                .unwrap_or_else(|_| panic!("sandbox address {ip:?}")),
            netns,
            info,
        }
    }

    fn stop(&self, id: &str) {
        self.rt
            .block_on(self.cri.stop_pod_sandbox(id))
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}\n{}", self.log()));
    }

    fn remove(&self, id: &str) {
        self.rt
            .block_on(self.cri.remove_pod_sandbox(id))
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}\n{}", self.log()));
    }

    fn sandboxes(&self) -> Vec<String> {
        self.rt.block_on(self.cri.all_sandboxes()).unwrap()
    }

    /// PIDs of the shims serving this containerd (their command line names our socket).
    fn shims(&self) -> Vec<i32> {
        let needle = self.socket.display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        // Let containerd undo what it made while it still runs.
        if let Ok(ids) = self.rt.block_on(self.cri.all_sandboxes()) {
            for id in ids {
                let _ = self.rt.block_on(self.cri.stop_pod_sandbox(&id));
                let _ = self.rt.block_on(self.cri.remove_pod_sandbox(&id));
            }
        }
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Mounts left below our directory (rootfs binds, shm), deepest first.
        let root = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for ns in self.netns_seen.lock().unwrap().iter() {
            if ns.exists() {
                let _ = Command::new("umount").arg(ns).status();
                let _ = std::fs::remove_file(ns);
            }
        }
        let cg = Path::new("/sys/fs/cgroup").join(self.cgroup_parent.trim_start_matches('/'));
        if cg.exists() {
            if let Ok(rd) = std::fs::read_dir(&cg) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&cg);
        }
    }
}

/// The conflist for this world: `cniVersion` 1.0.0 (containerd 1.6's libcni knows no newer),
/// the plugin with the world's directories, `datapath`, and the portMappings capability.
fn conflist(w: &World, datapath: &str) -> Value {
    let mut plugin = w.netconf("1.0.0");
    let obj = plugin.as_object_mut().unwrap();
    obj.remove("cniVersion");
    obj.remove("name");
    plugin["datapath"] = json!(datapath);
    plugin["capabilities"] = json!({"portMappings": true});
    json!({"cniVersion": "1.0.0", "name": "smartnet", "plugins": [plugin]})
}

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in the sandbox namespace")
}

fn ping_from(netns: &Path, to: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ping", "-c", "1", "-W", "2", &to.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A TCP server bound in a sandbox namespace on `port`, answering each connection with the
/// peer's address; stops when dropped (its thread ends at the next accept).
struct PeerServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeerServer {
    fn start(netns: &Path, port: u16) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = in_netns(netns, move || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind in the sandbox")
        });
        listener.set_nonblocking(true).unwrap();
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(peer.to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { stop }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connects from the namespace at `from` to `to` and returns what a [`PeerServer`] said.
fn peer_seen(from: &Path, to: SocketAddr) -> Result<String, String> {
    in_netns(from, move || {
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

/// One TCP round trip from the sandbox namespace `from` to an echo server on the wan; the
/// address the server saw.
fn wan_source(w: &World, from: &Path) -> Ipv4Addr {
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from((WAN_SERVER_IP, 8000)),
            Duration::from_secs(3),
        )
        .expect("connect to the wan");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).expect("echo from the wan");
    });
    let seen = srv.seen();
    match seen.first() {
        Some(SocketAddr::V4(a)) => *a.ip(),
        other => panic!("wan server saw {other:?}"),
    }
}

/// Everything an attachment can leave, on both datapaths: veths, allocations, records,
/// eBPF endpoints and hostPorts, nftables elements and hostPorts.
fn assert_census_empty(w: &World, context: &str) {
    assert_no_leaks(w, context);
    if let Some(dp) =
        smarter_cni::datapath::EbpfDatapath::open_existing(w.bpffs_dir(), "smartnet").unwrap()
    {
        assert_eq!(
            dp.host_ports().unwrap(),
            vec![],
            "{context}: eBPF hostPorts left"
        );
    }
    let nft = w.node().run(|| {
        NftDatapath::open("smartnet").ok().flatten().map(|dp| {
            (
                dp.endpoints().unwrap().len(),
                dp.host_ports().unwrap().len(),
            )
        })
    });
    if let Some((endpoints, ports)) = nft {
        assert_eq!(
            (endpoints, ports),
            (0, 0),
            "{context}: nftables elements left"
        );
    }
}

/// The datapaths this machine can run: eBPF always (the world mounts a bpffs), nftables
/// when `nft` works in the node namespace.
fn datapaths(w: &World) -> Vec<&'static str> {
    let mut v = vec!["ebpf"];
    match w.node().run(NftDatapath::available) {
        Ok(()) => v.push("iptables"),
        Err(e) => eprintln!("nftables unavailable ({e}): eBPF only"),
    }
    v
}

fn in_pod_subnet(ip: Ipv4Addr) -> bool {
    ip.octets()[..2] == [172, 39] && ip != GATEWAY
}

/// RunPodSandbox for three pods with metadata, hostnames and port mappings: each is ready
/// with a distinct address in 172.39.0.0/16 that PodSandboxStatus reports, the plugin's
/// record names the pod (containerd's K8S_POD_* args), and the port mappings containerd
/// sent (Go field names) are in the datapath.
#[test]
fn run_pod_sandbox_gets_addresses() {
    let Some(w) = setup("containerd_run_pod_sandbox") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = Containerd::start(&w, &conflist(&w, dp));
        let mut ips = Vec::new();
        for (i, name) in ["web", "db", "cache"].into_iter().enumerate() {
            let port = 8080 + u16::try_from(i).unwrap();
            let sb = c.run(c.config(name, &format!("{name}-host"), &[(port, 80)]));
            assert!(in_pod_subnet(sb.ip), "{dp}: {name} got {}", sb.ip);
            assert_eq!(sb.info["config"]["hostname"], format!("{name}-host"));
            assert_eq!(sb.info["config"]["metadata"]["name"], name);
            ips.push(sb.ip);
        }
        let mut sorted = ips.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{dp}: distinct addresses {ips:?}");
        assert_eq!(allocations(&w).len(), 3, "{dp}");
        assert_eq!(records(&w).len(), 3, "{dp}");
        // The records carry containerd's pod identity.
        let dir = w.state_dir().join("smartnet");
        let mut names: Vec<String> = records(&w)
            .iter()
            .map(|r| {
                let v: Value =
                    serde_json::from_slice(&std::fs::read(dir.join(r)).unwrap()).unwrap();
                v.to_string()
            })
            .collect();
        names.sort();
        for name in ["web", "db", "cache"] {
            assert!(
                names.iter().any(|r| r.contains(&format!("\"{name}\""))),
                "{dp}: a record names pod {name}: {names:?}"
            );
        }
        // hostPorts arrived (containerd sends HostPort/ContainerPort): one per pod.
        let ports = match dp {
            "ebpf" => smarter_cni::datapath::EbpfDatapath::open_existing(w.bpffs_dir(), "smartnet")
                .unwrap()
                .expect("pins")
                .host_ports()
                .unwrap()
                .len(),
            _ => w.node().run(|| {
                NftDatapath::open("smartnet")
                    .unwrap()
                    .expect("tables")
                    .host_ports()
                    .unwrap()
                    .len()
            }),
        };
        assert_eq!(ports, 3, "{dp}: hostPorts in the datapath");
        // What containerd 1.6 sent: Go field names in portMappings (the fault this suite
        // guards against), the pod's identity in CNI_ARGS-derived records.
        let calls = c.calls();
        let adds: Vec<_> = calls.iter().filter(|c| c.0 == "ADD").collect();
        assert_eq!(adds.len(), 3, "{dp}: {calls:?}");
        for (_, _, _, stdin) in &adds {
            let pm = &stdin["runtimeConfig"]["portMappings"][0];
            assert!(
                pm.get("HostPort").is_some() && pm.get("hostPort").is_none(),
                "{pm}"
            );
        }
        for id in c.sandboxes() {
            c.stop(&id);
            c.remove(&id);
        }
        assert_census_empty(&w, dp);
        // containerd 1.6 calls DEL twice per sandbox: at StopPodSandbox with the namespace
        // and its cached result as prevResult, at RemovePodSandbox again with an empty
        // CNI_NETNS and no prevResult (the cache is gone). Both succeeded (the census is
        // empty and Remove did not fail). Nothing called CHECK.
        let calls = c.calls();
        for (_, id, _, _) in &adds {
            let dels: Vec<_> = calls
                .iter()
                .filter(|c| c.0 == "DEL" && &c.1 == id)
                .collect();
            assert_eq!(dels.len(), 2, "{dp}: {dels:?}");
            assert!(
                !dels[0].2.is_empty() && dels[0].3.get("prevResult").is_some(),
                "{dp}: {:?}",
                dels[0]
            );
            assert!(
                dels[1].2.is_empty() && dels[1].3.get("prevResult").is_none(),
                "{dp}: {:?}",
                dels[1]
            );
        }
        assert!(calls.iter().all(|c| c.0 != "CHECK"), "{dp}: {calls:?}");
    }
}

/// Through containerd's sandboxes: pod ↔ pod, pod → gateway, pod → wan through the NAT
/// (the wan sees the uplink address), and a server in a pod reached from the wan through
/// its hostPort.
#[test]
fn sandboxes_have_networking() {
    let Some(w) = setup("containerd_networking") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = Containerd::start(&w, &conflist(&w, dp));
        let web = c.run(c.config("web", "web", &[(8080, 80)]));
        let client = c.run(c.config("client", "client", &[]));
        assert!(ping_from(&client.netns, web.ip), "{dp}: client → web");
        assert!(ping_from(&web.netns, client.ip), "{dp}: web → client");
        assert!(ping_from(&web.netns, GATEWAY), "{dp}: web → gateway");
        assert_eq!(
            wan_source(&w, &client.netns),
            NODE_UPLINK_IP,
            "{dp}: the wan sees the uplink address"
        );
        let _srv = PeerServer::start(&web.netns, 80);
        let from_wan = peer_seen(w.wan().path(), SocketAddr::from((NODE_UPLINK_IP, 8080)))
            .unwrap_or_else(|e| panic!("{dp}: hostPort from the wan: {e}"));
        assert!(
            from_wan.starts_with("198.51.100.1:"),
            "{dp}: the pod sees the wan client: {from_wan}"
        );
        let pod_to_pod = peer_seen(&client.netns, SocketAddr::from((web.ip, 80)))
            .unwrap_or_else(|e| panic!("{dp}: client → web:80: {e}"));
        assert!(
            pod_to_pod.starts_with(&format!("{}:", client.ip)),
            "{pod_to_pod}"
        );
    }
}

/// StopPodSandbox tears the network down (containerd's CNI DEL) and RemovePodSandbox
/// forgets the sandbox: nothing is left — allocations, veths, records, endpoints, hostPorts,
/// nftables elements, the sandbox's namespace.
#[test]
fn stop_and_remove_leave_nothing() {
    let Some(w) = setup("containerd_stop_remove") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = Containerd::start(&w, &conflist(&w, dp));
        let a = c.run(c.config("a", "a", &[(9090, 90)]));
        let b = c.run(c.config("b", "b", &[]));
        assert_eq!(node_veths(&w).len(), 2, "{dp}");
        c.stop(&a.id);
        assert_eq!(node_veths(&w).len(), 1, "{dp}: a's veth gone at stop");
        assert_eq!(
            allocations(&w).len(),
            1,
            "{dp}: a's address released at stop"
        );
        // Stopping twice is fine (the kubelet retries).
        c.stop(&a.id);
        c.remove(&a.id);
        c.stop(&b.id);
        c.remove(&b.id);
        assert_eq!(c.sandboxes(), Vec::<String>::new(), "{dp}: sandboxes left");
        assert_census_empty(&w, dp);
        for sb in [&a, &b] {
            assert!(!sb.netns.exists(), "{dp}: {} left", sb.netns.display());
        }
    }
}

/// A sandbox whose network namespace is already gone when the kubelet stops it (the pause
/// process died, the namespace was unmounted): containerd calls DEL with an empty
/// `CNI_NETNS`, which must still release everything, and the sandbox can be removed.
#[test]
fn sandbox_whose_netns_was_removed() {
    let Some(w) = setup("containerd_netns_gone") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = Containerd::start(&w, &conflist(&w, dp));
        let gone = c.run(c.config("gone", "gone", &[(7070, 70)]));
        let kept = c.run(c.config("kept", "kept", &[]));
        // Kill the pause process and unmount its namespace, as a crashed node would.
        let pid = gone.info["pid"].as_i64().expect("sandbox pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
        run_ok(Command::new("umount").arg(&gone.netns));
        std::fs::remove_file(&gone.netns).unwrap();
        c.stop(&gone.id);
        c.remove(&gone.id);
        let dels: Vec<_> = c
            .calls()
            .into_iter()
            .filter(|call| call.0 == "DEL" && call.1 == gone.id)
            .collect();
        assert!(!dels.is_empty(), "{dp}: containerd called DEL");
        assert!(
            dels.iter().all(|d| d.2.is_empty()),
            "{dp}: DEL without a namespace (CNI_NETNS empty): {dels:?}"
        );
        assert_eq!(node_veths(&w).len(), 1, "{dp}: only kept's veth");
        assert_eq!(allocations(&w).len(), 1, "{dp}");
        assert_eq!(records(&w).len(), 1, "{dp}");
        // The other pod is unaffected.
        assert_eq!(wan_source(&w, &kept.netns), NODE_UPLINK_IP, "{dp}");
        c.stop(&kept.id);
        c.remove(&kept.id);
        assert_census_empty(&w, dp);
    }
}

/// containerd restarted under running pods: the pods keep their sandboxes and their
/// networking, a later pod works, and nothing is duplicated (one allocation, record and
/// veth per pod; no extra ADD for the running ones).
#[test]
fn containerd_restart_under_running_pods() {
    let Some(w) = setup("containerd_restart") else {
        return;
    };
    for dp in datapaths(&w) {
        let mut c = Containerd::start(&w, &conflist(&w, dp));
        let a = c.run(c.config("a", "a", &[(8080, 80)]));
        let b = c.run(c.config("b", "b", &[]));
        let adds_before = c.calls().iter().filter(|c| c.0 == "ADD").count();
        c.restart();
        // Same sandboxes, same addresses, still ready.
        for sb in [&a, &b] {
            let again = c.status(&sb.id);
            assert_eq!(again.ip, sb.ip, "{dp}: {} keeps its address", sb.id);
        }
        assert_eq!(
            c.calls().iter().filter(|c| c.0 == "ADD").count(),
            adds_before,
            "{dp}: no ADD for running pods after the restart"
        );
        assert!(ping_from(&a.netns, b.ip), "{dp}: a → b after the restart");
        assert_eq!(
            wan_source(&w, &b.netns),
            NODE_UPLINK_IP,
            "{dp}: NAT after the restart"
        );
        let _srv = PeerServer::start(&a.netns, 80);
        peer_seen(w.wan().path(), SocketAddr::from((NODE_UPLINK_IP, 8080)))
            .unwrap_or_else(|e| panic!("{dp}: hostPort after the restart: {e}"));
        // A later pod.
        let later = c.run(c.config("later", "later", &[]));
        assert!(
            in_pod_subnet(later.ip) && later.ip != a.ip && later.ip != b.ip,
            "{dp}"
        );
        assert!(ping_from(&later.netns, a.ip), "{dp}: later → a");
        assert_eq!(allocations(&w).len(), 3, "{dp}: no duplicate allocation");
        assert_eq!(records(&w).len(), 3, "{dp}: no duplicate record");
        assert_eq!(node_veths(&w).len(), 3, "{dp}: no duplicate veth");
        for id in c.sandboxes() {
            c.stop(&id);
            c.remove(&id);
        }
        assert_census_empty(&w, dp);
    }
}

/// 20 sandboxes started in parallel and then stopped and removed in parallel: 20 distinct
/// addresses, each reaching the gateway, and an empty census afterwards.
#[test]
fn twenty_sandboxes_in_parallel() {
    let Some(w) = setup("containerd_parallel") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = Containerd::start(&w, &conflist(&w, dp));
        let ids: Vec<String> = c.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..20 {
                let cri = c.cri.clone();
                let config = c.config(&format!("p{i}"), &format!("p{i}"), &[]);
                set.spawn(async move { cri.run_pod_sandbox(config).await });
            }
            let mut ids = Vec::new();
            while let Some(r) = set.join_next().await {
                ids.push(
                    r.unwrap()
                        .unwrap_or_else(|e| panic!("{dp}: RunPodSandbox: {e}")),
                );
            }
            ids
        });
        let sandboxes: Vec<Sandbox> = ids.iter().map(|id| c.status(id)).collect();
        let mut ips: Vec<Ipv4Addr> = sandboxes.iter().map(|s| s.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 20, "{dp}: distinct addresses");
        assert!(ips.iter().all(|ip| in_pod_subnet(*ip)), "{dp}: {ips:?}");
        for sb in &sandboxes {
            assert!(ping_from(&sb.netns, GATEWAY), "{dp}: {} → gateway", sb.ip);
        }
        assert_eq!(allocations(&w).len(), 20, "{dp}");
        c.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for id in ids {
                let cri = c.cri.clone();
                set.spawn(async move {
                    cri.stop_pod_sandbox(&id).await?;
                    cri.remove_pod_sandbox(&id).await
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap()
                    .unwrap_or_else(|e| panic!("{dp}: stop/remove: {e}"));
            }
        });
        assert_eq!(c.sandboxes(), Vec::<String>::new(), "{dp}");
        assert_census_empty(&w, dp);
    }
}
