//! The throwaway world of `ebpf_pins`: private network namespaces and a private bpffs, removed
//! by RAII guards (also on panic). Nothing touches the root namespace or /sys/fs/bpf.

use std::{
    net::{Ipv4Addr, UdpSocket},
    thread,
    time::Duration,
};

use ipnetwork::Ipv4Network;
use smarter_cni::datapath::{DatapathConfig, EbpfDatapath, EbpfError, EndpointSpec};
use smarter_testbed::{Netns, ScratchBpfFs, unique_name};

/// Whether the kernel has TCX (Linux 6.6+), so `AttachMode::Auto` means TCX.
pub fn has_tcx() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// Node namespace with host veths `hv0`/`hv1`, each paired with `eth0` in its own pod namespace.
/// Fields drop in order: pods, then node (which deletes the veths), then bpffs.
pub struct World {
    pub pods: [Netns; 2],
    pub node: Netns,
    pub bpffs: ScratchBpfFs,
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
            pods: [
                Netns::create(&unique_name("pa")).expect("namespace"),
                Netns::create(&unique_name("pb")).expect("namespace"),
            ],
            node: Netns::create(&unique_name("node")).expect("namespace"),
            bpffs: ScratchBpfFs::new("ebpf").expect("bpffs"),
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
            POD_MACS[i],
            pod.name()
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
