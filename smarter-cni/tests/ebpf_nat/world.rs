//! The throwaway world of `ebpf_nat`: a `node` namespace (bridge `smartnet0` 172.39.0.1/16 with
//! two pods on host veths `hv0`/`hv1`, uplink `up0` 198.51.100.2/24, default route via the wan),
//! a `wan` namespace (198.51.100.1/24 on `wan0`, 203.0.113.1/24 on `lo`, no route back to the pod
//! subnet), two pod namespaces, and a private bpffs on a tempdir. RAII guards remove everything,
//! also on panic; nothing touches the root namespace or /sys/fs/bpf.

use std::{net::Ipv4Addr, process::Command};

use ipnetwork::Ipv4Network;
use smarter_cni::datapath::{
    AttachMode, CtTimeouts, DatapathConfig, EbpfDatapath, EndpointSpec, External, Uplink,
};
use smarter_testbed::{Netns, ScratchBpfFs, unique_name};

pub const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 39, 0, 2), Ipv4Addr::new(172, 39, 0, 3)];
pub const NODE_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const WAN_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const WAN_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// A server behind a 1280-byte MTU link of the wan router (benchmarking range 198.18.0.0/15).
pub const FAR_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const POD_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0x5e, 0, 0x12], [2, 0, 0, 0x5e, 0, 0x13]];

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Fields drop in order: datapath handle, pods, far, wan, node (its veths go with it), bpffs.
pub struct World {
    pub dp: EbpfDatapath,
    pub pods: [Netns; 2],
    pub far: Netns,
    pub wan: Netns,
    pub node: Netns,
    /// Held so the private bpffs (and every pin in it) lives as long as the world.
    #[expect(dead_code, reason = "held for RAII cleanup only")]
    bpffs: ScratchBpfFs,
    /// Held so the loader lock directory lives as long as the world.
    #[expect(dead_code, reason = "held for RAII cleanup only")]
    lock_dir: tempfile::TempDir,
}

impl World {
    /// Builds the namespaces by hand, loads the datapath and attaches it to both pods and the
    /// uplink.
    pub fn new() -> Self {
        let node = Netns::create(&unique_name("node")).expect("namespace");
        let wan = Netns::create(&unique_name("wan")).expect("namespace");
        let pods = [
            Netns::create(&unique_name("p0")).expect("namespace"),
            Netns::create(&unique_name("p1")).expect("namespace"),
        ];
        let far = Netns::create(&unique_name("far")).expect("namespace");
        let bpffs = ScratchBpfFs::new("ebpf").expect("bpffs");
        let lock_dir = tempfile::tempdir().expect("tempdir");
        node.ip("link set lo up");
        node.ip("link add smartnet0 type bridge");
        node.ip("addr add 172.39.0.1/16 dev smartnet0");
        node.ip("link set smartnet0 up");
        for (i, pod) in pods.iter().enumerate() {
            node.ip(&format!(
                "link add hv{i} type veth peer name eth0 address {} netns {}",
                mac_string(POD_MACS[i]),
                pod.name()
            ));
            node.ip(&format!("link set hv{i} master smartnet0 up"));
            pod.ip("link set lo up");
            pod.ip(&format!("addr add {}/16 dev eth0", POD_IPS[i]));
            pod.ip("link set eth0 up");
            pod.ip("route add default via 172.39.0.1");
        }
        node.ip(&format!(
            "link add up0 type veth peer name wan0 netns {}",
            wan.name()
        ));
        node.ip("addr add 198.51.100.2/24 dev up0");
        node.ip("link set up0 up");
        node.ip("route add default via 198.51.100.1");
        assert!(node.succeeds(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
        wan.ip("link set lo up");
        wan.ip("addr add 203.0.113.1/24 dev lo");
        wan.ip("addr add 198.51.100.1/24 dev wan0");
        wan.ip("link set wan0 up");

        let cfg = DatapathConfig {
            gateway: Ipv4Addr::new(172, 39, 0, 1),
            subnet: Ipv4Network::new(Ipv4Addr::new(172, 39, 0, 0), 16).unwrap(),
            ct_max_entries: 16384,
        };
        let dp = EbpfDatapath::open_or_load(bpffs.path(), "smartnet", lock_dir.path(), &cfg)
            .expect("load datapath");
        let node_mac = |dev: &str| -> [u8; 6] {
            let out = Command::new("ip")
                .args(["-n", node.name(), "-o", "link", "show", dev])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let hex = text
                .split("link/ether ")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            let bytes: Vec<u8> = hex
                .split(':')
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect();
            bytes.try_into().unwrap()
        };
        node.run(|| {
            for i in 0..2 {
                let host_ifname = format!("hv{i}");
                let host_ifindex = nix::net::if_::if_nametoindex(host_ifname.as_str()).unwrap();
                let spec = EndpointSpec {
                    ip: POD_IPS[i],
                    mac: POD_MACS[i],
                    host_ifname,
                    host_ifindex,
                    pod_ifname: "eth0".into(),
                    container_id: format!("{i:0>64}"),
                    pod_namespace: "default".into(),
                    pod_name: format!("pod-{i}"),
                };
                dp.attach_endpoint(&spec, AttachMode::Auto)
                    .expect("attach endpoint");
            }
            let up = Uplink {
                ifindex: nix::net::if_::if_nametoindex("up0").unwrap(),
                name: "up0".into(),
                addr: NODE_UPLINK,
                mac: [0; 6],
                up: true,
                l3: false,
                mtu: 1500,
                selected: true,
            };
            let bridge = nix::net::if_::if_nametoindex("smartnet0").unwrap();
            dp.set_bridge(bridge, node_mac("smartnet0"))
                .expect("set bridge");
            dp.set_nat((61000, 65535), &CtTimeouts::default())
                .expect("set nat");
            let external = External {
                all: true,
                preferred: Some(up.ifindex),
                node_addrs: vec![(NODE_UPLINK, up.ifindex)],
                uplinks: vec![up],
            };
            dp.set_external(&external, AttachMode::Auto)
                .expect("serve the uplink");
            // Idempotent.
            dp.set_external(&external, AttachMode::Auto)
                .expect("serve the uplink again");
        });
        Self {
            dp,
            pods,
            far,
            wan,
            node,
            bpffs,
            lock_dir,
        }
    }

    /// Wires the `far` namespace behind a 1280-byte link of the wan router.
    pub fn add_far(&self) {
        let far = &self.far;
        self.wan.ip(&format!(
            "link add wf0 mtu 1280 type veth peer name far0 mtu 1280 netns {}",
            far.name()
        ));
        self.wan.ip("addr add 198.18.0.1/24 dev wf0");
        self.wan.ip("link set wf0 up");
        assert!(
            self.wan
                .succeeds(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        );
        far.ip("link set lo up");
        far.ip("addr add 198.18.0.2/24 dev far0");
        far.ip("link set far0 up");
        far.ip("route add default via 198.18.0.1");
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
