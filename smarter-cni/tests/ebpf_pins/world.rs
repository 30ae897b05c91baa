//! The throwaway world of `ebpf_pins`: private network namespaces and a private bpffs, removed
//! by RAII guards (also on panic). Nothing touches the root namespace or /sys/fs/bpf.

use std::{
    fs::File,
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

use ipnetwork::Ipv4Network;
use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns},
};
use smarter_cni::datapath::{DatapathConfig, EbpfDatapath, EbpfError, EndpointSpec};

/// Whether the kernel has TCX (Linux 6.6+), so `AttachMode::Auto` means TCX.
pub fn has_tcx() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!("skipping {test}: needs root (network namespaces, bpffs, eBPF)");
    }
    root
}

fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "smt-eb{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`ip netns add`), deleted on drop with everything inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let name = unique(tag);
        run(&["ip", "netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    pub fn ip(&self, args: &str) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend(args.split_whitespace());
        run(&full);
    }

    /// How many netlink (clsact ingress) filters on `dev` run `prog` (`tc` through nsenter,
    /// which, unlike `ip netns exec`, keeps this process's view of bpffs).
    pub fn netlink_filters(&self, dev: &str, prog: &str) -> usize {
        let path = self.path();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["tc", "filter", "show", "dev", dev, "ingress"])
            .output()
            .expect("spawn tc");
        assert!(
            out.status.success(),
            "tc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(prog))
            .count()
    }

    /// Runs `f` on a thread inside this namespace (interface names resolve there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(self.path()).expect("open netns");
        thread::scope(|s| {
            s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A private bpffs instance on a tempdir, unmounted on drop (which frees every pin in it).
pub struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        mount(
            Some("bpf"),
            dir.path(),
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount bpffs");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        if let Err(e) = umount2(self.dir.path(), MntFlags::MNT_DETACH) {
            eprintln!("unmount {}: {e}", self.dir.path().display());
        }
    }
}

/// Node namespace with host veths `hv0`/`hv1`, each paired with `eth0` in its own pod namespace.
/// Fields drop in order: pods, then node (which deletes the veths), then bpffs.
pub struct World {
    pub pods: [Netns; 2],
    pub node: Netns,
    pub bpffs: Bpffs,
    pub lock_dir: tempfile::TempDir,
}

const POD_MACS: [&str; 2] = ["02:00:00:5e:00:0a", "02:00:00:5e:00:0b"];
/// (host address, pod address) of each /30 link (TEST-NET-2, never the machine's uplink range).
const LINKS: [(&str, &str); 2] = [
    ("198.51.100.1", "198.51.100.2"),
    ("198.51.100.5", "198.51.100.6"),
];

impl World {
    pub fn new() -> Self {
        let world = Self {
            pods: [Netns::new("pa"), Netns::new("pb")],
            node: Netns::new("node"),
            bpffs: Bpffs::new(),
            lock_dir: tempfile::tempdir().expect("tempdir"),
        };
        for i in 0..world.pods.len() {
            world.wire(i);
        }
        world
    }

    /// Creates the veth pair of pod `i` (host side `hv{i}`, pod side `eth0`) and addresses it.
    pub fn wire(&self, i: usize) {
        let (pod, (host, peer)) = (&self.pods[i], LINKS[i]);
        self.node.ip(&format!(
            "link add hv{i} type veth peer name eth0 address {} netns {}",
            POD_MACS[i], pod.name
        ));
        self.node.ip(&format!("addr add {host}/30 dev hv{i}"));
        self.node.ip(&format!("link set hv{i} up"));
        pod.ip(&format!("addr add {peer}/30 dev eth0"));
        pod.ip("link set eth0 up");
    }

    pub fn open(&self, network: &str) -> Result<EbpfDatapath, EbpfError> {
        let cfg = DatapathConfig {
            gateway: Ipv4Addr::new(172, 39, 0, 1),
            subnet: Ipv4Network::new(Ipv4Addr::new(172, 39, 0, 0), 16).unwrap(),
            ct_max_entries: 16384,
        };
        EbpfDatapath::open_or_load(self.bpffs.path(), network, self.lock_dir.path(), &cfg)
    }

    pub fn spec(&self, i: usize) -> EndpointSpec {
        let host_ifname = format!("hv{i}");
        let name = host_ifname.clone();
        let host_ifindex = self
            .node
            .run(move || nix::net::if_::if_nametoindex(name.as_str()).expect("host veth"));
        let mac: Vec<u8> = POD_MACS[i]
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        EndpointSpec {
            ip: LINKS[i].1.parse().unwrap(),
            mac: mac.try_into().unwrap(),
            host_ifname,
            host_ifindex,
            pod_ifname: "eth0".into(),
            container_id: format!("{i:0>64}"),
            pod_namespace: "default".into(),
            pod_name: format!("pod-{i}"),
        }
    }

    /// Sends UDP datagrams from pod `i` to its host veth address (plus the ARP it takes).
    pub fn send_from_pod(&self, i: usize, count: usize) {
        let target = (LINKS[i].0.parse::<Ipv4Addr>().unwrap(), 9);
        self.pods[i].run(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..count {
                // The first sends may wait in the neighbour queue; later ones may meet ICMP
                // port-unreachable errors from the node: neither matters here.
                let _sent = socket.send_to(b"smarter-cni datapath test", target);
                thread::sleep(Duration::from_millis(20));
            }
        });
    }
}

pub fn wait_for_counters(dp: &EbpfDatapath, ifindex: u32, min_packets: u64) -> (u64, u64) {
    for _ in 0..50 {
        if let Some((packets, bytes)) = dp.endpoint_counters(ifindex).unwrap()
            && packets >= min_packets
        {
            return (packets, bytes);
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("counters of ifindex {ifindex} never reached {min_packets} packets");
}
