//! The world of `ebpf_nat`: a [`smarter_testbed::World`] (node, wan; the uplink `uplink0`
//! 198.51.100.2/24 ↔ 198.51.100.1, a server 203.0.113.1 on the wan's `lo`, no route back to the
//! pod subnet) with the pods' bridge `smartnet0` and two pods wired by hand (172.39.0.2 and .3
//! on host veths `hv0`/`hv1`), and the eBPF datapath engine loaded into the world's bpffs and
//! attached to both pods and the uplink, as the plugin and the agent would. Everything is
//! removed on drop, also on panic; nothing touches the root namespace or /sys/fs/bpf.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use smarter_cni::datapath::{
    AttachMode, CtTimeouts, DatapathConfig, EbpfDatapath, EndpointSpec, External, Uplink,
};
use smarter_testbed::{NODE_UPLINK_IP, Netns, POD_BRIDGE, POD_GATEWAY, POD_IF, UPLINK, World};

pub const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 39, 0, 2), Ipv4Addr::new(172, 39, 0, 3)];
const POD_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x12], [2, 0, 0, 0x5e, 0, 0x13]];

/// Fields drop in order: the datapath handle, then the world.
pub struct NatWorld {
    pub dp: EbpfDatapath,
    pub w: World,
}

impl NatWorld {
    /// Builds the world, loads the datapath and attaches it to both pods and the uplink.
    pub fn new() -> Self {
        let mut w = World::new("ebpf_nat").expect("namespace world");
        w.add_pod_bridge().expect("the pods' bridge");
        for (i, (ip, mac)) in POD_IPS.into_iter().zip(POD_MACS).enumerate() {
            w.add_bridged_pod(&format!("p{i}"), &format!("hv{i}"), mac, ip)
                .expect("pod");
        }
        let cfg = DatapathConfig {
            gateway: POD_GATEWAY,
            subnet: Ipv4Network::new(Ipv4Addr::new(172, 39, 0, 0), 16).unwrap(),
            ct_max_entries: 16384,
        };
        let lock_dir = w.state_dir().join("smartnet");
        let dp = EbpfDatapath::open_or_load(w.bpffs_dir(), "smartnet", &lock_dir, &cfg)
            .expect("load datapath");
        let bridge_mac = w.node().mac(POD_BRIDGE).expect("bridge MAC");
        w.node().run(|| {
            for (i, (ip, mac)) in POD_IPS.into_iter().zip(POD_MACS).enumerate() {
                let host_ifname = format!("hv{i}");
                let host_ifindex = nix::net::if_::if_nametoindex(host_ifname.as_str()).unwrap();
                let spec = EndpointSpec {
                    ip,
                    mac,
                    host_ifname,
                    host_ifindex,
                    pod_ifname: POD_IF.into(),
                    container_id: format!("{i:0>64}"),
                    pod_namespace: "default".into(),
                    pod_name: format!("pod-{i}"),
                };
                dp.attach_endpoint(&spec, AttachMode::Auto)
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
