//! The worlds of the driver tests, each a [`smarter_testbed::World`] (throwaway namespaces and
//! a private bpffs; everything removed on drop, also on panic; nothing touches the root
//! namespace or /sys/fs/bpf), and what they share: the pods' bridge `smartnet0` with pods wired
//! by hand ([`bridged`]), the network's eBPF settings ([`ebpf_config`]), the eBPF datapath
//! opened in a world as the plugin opens it ([`open_ebpf`]) and a pod's endpoint as it takes
//! one ([`endpoint_spec`]).
//!
//! - [`NatWorld`] (`ebpf_nat`): node and wan (the uplink `uplink0` 198.51.100.2/24 ↔
//!   198.51.100.1, a server 203.0.113.1 on the wan's `lo`, no route back to the pod subnet),
//!   two bridged pods (172.39.0.2 and .3 on host veths `hv0`/`hv1`), the eBPF datapath attached
//!   to both and to the uplink, as the plugin and the agent would.
//! - [`PinsWorld`] (`ebpf_pins`, in `world/pins.rs`): no wan; host veths `hv0`/`hv1`, each
//!   paired with `eth0` in its own pod namespace on a /30 link.
//! - [`NftWorld`] (`nft`, in `world/nft.rs`): node and wan as above, two bridged pods
//!   (172.39.0.2 and .3 on host veths `smv…02`/`smv…03`) and, when asked, the world's LAN.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use smarter_cni::datapath::ebpf::EbpfDatapath;
use smarter_cni::datapath::{
    AttachMode, CtTimeouts, DatapathConfig, EbpfError, EndpointSpec, External, Uplink,
};
use smarter_testbed::{NODE_UPLINK_IP, Netns, POD_BRIDGE, POD_GATEWAY, POD_IF, UPLINK, World};

pub mod nft;
pub mod pins;

/// The addresses of [`NatWorld`]'s pods `p0` and `p1`.
pub const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 39, 0, 2), Ipv4Addr::new(172, 39, 0, 3)];
const POD_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x12], [2, 0, 0, 0x5e, 0, 0x13]];

/// The world `label` (node and wan) with the pods' bridge and the `pods` wired to it: each
/// (pod namespace, host veth, MAC, address).
pub fn bridged(label: &str, pods: &[(String, String, [u8; 6], Ipv4Addr)]) -> World {
    let mut w = World::new(label).expect("namespace world");
    w.add_pod_bridge().expect("the pods' bridge");
    for (pod, host_if, mac, ip) in pods {
        w.add_bridged_pod(pod, host_if, *mac, *ip).expect("pod");
    }
    w
}

/// The eBPF datapath's settings of the worlds' network (172.39.0.0/16 via [`POD_GATEWAY`]).
pub fn ebpf_config() -> DatapathConfig {
    DatapathConfig {
        gateway: POD_GATEWAY,
        subnet: Ipv4Network::new(Ipv4Addr::new(172, 39, 0, 0), 16).unwrap(),
        v6: None,
        ct_max_entries: 16384,
    }
}

/// Opens or loads `network`'s eBPF datapath in `w`'s pin root, its loader lock in the
/// network's state directory (as the plugin does).
pub fn open_ebpf(w: &World, network: &str) -> Result<EbpfDatapath, EbpfError> {
    let lock_dir = w.state_dir().join(network);
    EbpfDatapath::open_or_load(w.bpffs_dir(), network, &lock_dir, &ebpf_config())
}

/// Pod `i` behind the host veth `hv{i}` of `node`, as the eBPF datapath takes it.
pub fn endpoint_spec(node: &Netns, i: usize, ip: Ipv4Addr, mac: [u8; 6]) -> EndpointSpec {
    let host_ifname = format!("hv{i}");
    let name = host_ifname.clone();
    let host_ifindex =
        node.run(move || nix::net::if_::if_nametoindex(name.as_str()).expect("host veth"));
    EndpointSpec {
        ip,
        ip6: None,
        mac,
        host_ifname,
        host_ifindex,
        pod_ifname: POD_IF.into(),
        container_id: format!("{i:0>64}"),
        pod_namespace: "default".into(),
        pod_name: format!("pod-{i}"),
    }
}

/// Fields drop in order: the datapath handle, then the world.
pub struct NatWorld {
    /// The eBPF datapath, attached to both pods and the uplink.
    pub dp: EbpfDatapath,
    /// The testbed world.
    pub w: World,
}

impl NatWorld {
    /// Builds the world, loads the datapath and attaches it to both pods and the uplink.
    pub fn new() -> Self {
        let pods: Vec<_> = (0..POD_IPS.len())
            .map(|i| (format!("p{i}"), format!("hv{i}"), POD_MACS[i], POD_IPS[i]))
            .collect();
        let w = bridged("ebpf_nat", &pods);
        let dp = open_ebpf(&w, "smartnet").expect("load datapath");
        let bridge_mac = w.node().mac(POD_BRIDGE).expect("bridge MAC");
        let specs: Vec<_> = (0..POD_IPS.len())
            .map(|i| endpoint_spec(w.node(), i, POD_IPS[i], POD_MACS[i]))
            .collect();
        w.node().run(|| {
            for spec in &specs {
                dp.attach_endpoint(spec, AttachMode::Auto)
                    .expect("attach endpoint");
            }
            let up = Uplink {
                ifindex: nix::net::if_::if_nametoindex(UPLINK).unwrap(),
                name: UPLINK.into(),
                addr: NODE_UPLINK_IP,
                mac: [0; 6],
                up: true,
                l3: false,
                mtu: 1500,
                selected: true,
            };
            let bridge = nix::net::if_::if_nametoindex(POD_BRIDGE).unwrap();
            dp.set_bridge(bridge, bridge_mac).expect("set bridge");
            dp.set_nat((61000, 65535), &CtTimeouts::default())
                .expect("set nat");
            let external = External {
                all: true,
                preferred: Some(up.ifindex),
                node_addrs: vec![(NODE_UPLINK_IP, up.ifindex)],
                uplinks: vec![up],
                clat: None,
                uplinks6: Vec::new(),
                node_addrs6: Vec::new(),
            };
            dp.set_external(&external, AttachMode::Auto)
                .expect("serve the uplink");
            // Idempotent.
            dp.set_external(&external, AttachMode::Auto)
                .expect("serve the uplink again");
        });
        Self { dp, w }
    }

    /// The two pods' namespaces.
    pub fn pods(&self) -> [&Netns; 2] {
        [0, 1].map(|i| self.w.pod(&format!("p{i}")).expect("pod"))
    }

    /// The node namespace.
    pub fn node(&self) -> &Netns {
        self.w.node()
    }

    /// The wan namespace.
    pub fn wan(&self) -> &Netns {
        self.w.wan()
    }

    /// The packets counted for verdict `name`.
    pub fn verdict(&self, name: &str) -> u64 {
        self.dp
            .verdict_stats()
            .unwrap()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map_or(0, |(_, p, _)| p)
    }
}
