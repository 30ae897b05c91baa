//! The world of `ebpf_pins`: a [`smarter_testbed::World`] without a wan: the node with host
//! veths `hv0`/`hv1`, each paired with `eth0` in its own pod namespace on a /30 link, and the
//! world's private bpffs.

use std::{
    net::{Ipv4Addr, UdpSocket},
    path::Path,
    thread,
    time::Duration,
};

use smarter_cni::datapath::ebpf::EbpfDatapath;
use smarter_cni::datapath::{EbpfError, EndpointSpec};
use smarter_testbed::{Netns, POD_IF, World};

/// Whether the kernel has TCX (Linux 6.6+), so `AttachMode::Auto` means TCX.
pub fn has_tcx() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

const POD_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x0a], [2, 0, 0, 0x5e, 0, 0x0b]];
/// (host address, pod address) of each /30 link (TEST-NET-2, never the machine's uplink range).
const LINKS: [(Ipv4Addr, Ipv4Addr); 2] = [
    (
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(198, 51, 100, 2),
    ),
    (
        Ipv4Addr::new(198, 51, 100, 5),
        Ipv4Addr::new(198, 51, 100, 6),
    ),
];

/// The node and pods `pod0`/`pod1`; see the module docs.
pub struct PinsWorld {
    w: World,
}

impl PinsWorld {
    /// The node and both pods, wired and addressed.
    pub fn new() -> Self {
        let mut w = World::without_wan("ebpf_pins").expect("namespace world");
        for i in 0..LINKS.len() {
            w.add_pod_ns(&format!("pod{i}")).expect("pod namespace");
        }
        let world = Self { w };
        for i in 0..LINKS.len() {
            world.wire(i);
        }
        world
    }

    /// Creates the veth pair of pod `i` (host side `hv{i}`, pod side `eth0`) and addresses it.
    pub fn wire(&self, i: usize) {
        let (host, peer) = LINKS[i];
        self.w
            .wire_pod(&format!("pod{i}"), &format!("hv{i}"), POD_MACS[i])
            .expect("wire the pod");
        self.node().ip(&format!("addr add {host}/30 dev hv{i}"));
        self.pod(i).ip(&format!("addr add {peer}/30 dev {POD_IF}"));
    }

    /// The node namespace.
    pub fn node(&self) -> &Netns {
        self.w.node()
    }

    fn pod(&self, i: usize) -> &Netns {
        self.w.pod(&format!("pod{i}")).expect("pod")
    }

    /// The pin root (on the world's bpffs; created by the first open).
    pub fn root(&self) -> &Path {
        self.w.bpffs_dir()
    }

    /// Opens or loads `network`'s datapath ([`super::open_ebpf`]).
    pub fn open(&self, network: &str) -> Result<EbpfDatapath, EbpfError> {
        super::open_ebpf(&self.w, network)
    }

    /// Pod `i` as the datapath takes it ([`super::endpoint_spec`]).
    pub fn spec(&self, i: usize) -> EndpointSpec {
        super::endpoint_spec(self.node(), i, LINKS[i].1, POD_MACS[i])
    }

    /// Sends UDP datagrams from pod `i` to its host veth address (plus the ARP it takes).
    pub fn send_from_pod(&self, i: usize, count: usize) {
        let target = (LINKS[i].0, 9);
        self.pod(i).run(move || {
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

/// The counters of `ifindex` once they reach `min_packets` (packets, bytes); panics after a
/// second.
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
