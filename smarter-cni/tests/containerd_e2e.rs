//! End to end with the runtime k3s embeds: Debian's containerd 1.6 (its CRI plugin, runc)
//! started inside the test world's `node` namespace with its own root, state, socket, CNI
//! `bin_dir` and `conf_dir` ([`smarter_testbed::containerd`]), and driven over gRPC with
//! the project's CRI client exactly as a kubelet drives it.
//!
//! No registry is reachable: the sandbox ("pause") image is a static C program and the
//! container image Debian's static busybox, each packed as a `FROM scratch` OCI archive and
//! imported with `ctr images import`.
//!
//! Processes run in a sandbox's network namespace (servers, clients, ping) by entering the
//! namespace containerd reports (`runtimeSpec.linux.namespaces` of the verbose status).
//!
//! Modules: `sandboxes` (RunPodSandbox, networking, Stop/Remove, a vanished namespace,
//! containerd restarted, 20 in parallel), `containers` (a busybox server reached through its
//! hostPort), `dns` (the agent's node-local DNS answering CRI hostnames), `daemonset` (the
//! DaemonSet's containers run as the manifest runs them), `conflists` (the README's examples).
//!
//! Skips with a message when not root or when containerd, ctr, runc, gcc (static libc),
//! busybox-static or the reference `loopback` plugin are missing; `cargo xtask setup`
//! installs them.

mod common;
mod containerd_e2e {
    pub mod conflists;
    pub mod containers;
    pub mod daemonset;
    pub mod dns;
    pub mod manifest;
    pub mod oci;
    pub mod sandboxes;
}

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use smarter_testbed::containerd::{Cni, Containerd, missing_tools};
use smarter_testbed::{EchoServer, WAN_SERVER_IP, World};

pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);

/// A world and the tools, or `None` with a SKIP line.
pub fn setup(test: &str) -> Option<World> {
    let w = world(test)?;
    if let Some(missing) = missing_tools() {
        smarter_testbed::skipped(&format!(
            "SKIP {test}: not installed: {missing} (cargo xtask setup installs them)"
        ));
        return None;
    }
    Some(w)
}

pub fn run_ok(cmd: &mut Command) -> std::process::Output {
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

/// containerd for world `w` with `conflist`, the plugin behind the call-logging wrapper.
pub fn containerd(w: &World, conflist: &Value) -> Containerd {
    let cni = Cni::Own {
        conflist: conflist.clone(),
        plugins: vec![("smarter-cni".into(), bin())],
        log_calls: true,
    };
    Containerd::start(w.node().path(), &cni, None).expect("start containerd")
}

/// The conflist for this world: `cniVersion` 1.0.0 (containerd 1.6's libcni knows no newer),
/// the plugin with the world's directories, `datapath`, and the portMappings capability.
pub fn conflist(w: &World, datapath: &str) -> Value {
    let mut plugin = w.netconf("1.0.0");
    let obj = plugin.as_object_mut().unwrap();
    obj.remove("cniVersion");
    obj.remove("name");
    plugin["datapath"] = json!(datapath);
    plugin["capabilities"] = json!({"portMappings": true});
    json!({"cniVersion": "1.0.0", "name": "smartnet", "plugins": [plugin]})
}

/// Runs `f` on a thread inside the network namespace at `path`.
pub fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in the sandbox namespace")
}

pub fn ping_from(netns: &Path, to: Ipv4Addr) -> bool {
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
pub struct PeerServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeerServer {
    pub fn start(netns: &Path, port: u16) -> Self {
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

/// Connects from the namespace at `from` to `to`, sends `request` and returns everything
/// the server said until it closed.
pub fn tcp_exchange(from: &Path, to: SocketAddr, request: &[u8]) -> Result<String, String> {
    let request = request.to_vec();
    in_netns(from, move || {
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.write_all(&request).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

/// Connects from the namespace at `from` to `to` and returns what a [`PeerServer`] said.
pub fn peer_seen(from: &Path, to: SocketAddr) -> Result<String, String> {
    tcp_exchange(from, to, b"")
}

/// One TCP round trip from the sandbox namespace `from` to an echo server on the wan; the
/// address the server saw.
pub fn wan_source(w: &World, from: &Path) -> Ipv4Addr {
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
    match srv.seen().first() {
        Some(SocketAddr::V4(a)) => *a.ip(),
        other => panic!("wan server saw {other:?}"),
    }
}

/// Number of hostPorts in datapath `dp` of world `w`.
pub fn host_ports(w: &World, dp: &str) -> usize {
    with_datapath(w, dp, |d| d.host_ports().unwrap().len())
        .unwrap()
        .unwrap_or(0)
}

/// Everything an attachment can leave, on both datapaths: veths, allocations, records,
/// eBPF endpoints and hostPorts, nftables elements and hostPorts.
pub fn assert_census_empty(w: &World, context: &str) {
    assert_no_leaks(w, context);
    if let Some(dp) = ebpf(w) {
        assert_eq!(
            dp.host_ports().unwrap(),
            vec![],
            "{context}: eBPF hostPorts left"
        );
    }
    let nft = with_datapath(w, "nftables", |dp| {
        (
            dp.endpoints().unwrap().len(),
            dp.host_ports().unwrap().len(),
        )
    });
    if let Ok(Some((endpoints, ports))) = nft {
        assert_eq!(
            (endpoints, ports),
            (0, 0),
            "{context}: nftables elements left"
        );
    }
}

/// The datapaths this machine can run: eBPF always (the world mounts a bpffs), nftables
/// when `nft` works in the node namespace.
pub fn datapaths(w: &World) -> Vec<&'static str> {
    let mut v = vec!["ebpf"];
    match nftables_usable(w) {
        Ok(()) => v.push("nftables"),
        Err(e) => eprintln!("nftables unavailable ({e}): eBPF only"),
    }
    v
}

pub fn in_pod_subnet(ip: Ipv4Addr) -> bool {
    ip.octets()[..2] == [172, 39] && ip != GATEWAY
}
