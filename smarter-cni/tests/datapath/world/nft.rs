//! The world of `nft`: node and wan (uplink `uplink0` 198.51.100.2/24 ↔ 198.51.100.1, server
//! 203.0.113.1 on the wan) with the node's bridge `smartnet0` (172.39.0.1/16) and two pods
//! wired by hand (172.39.0.2 and .3 on host veths `smv…02`/`smv…03`), and, when asked, the
//! world's LAN: a namespace behind the node's `lan0` (192.168.50.1/24) holding a sensor at
//! 192.168.50.2. Nothing touches the root namespace.
//!
//! [`NftWorld::add_ipv6`] makes it dual-stack by hand, as ADD would: the uplink
//! [`NODE_UPLINK_IP6`] ↔ the wan's [`WAN_IP6`] (the node's IPv6 default route), the bridge
//! [`GATEWAY6`], pods `fd00:ac27::<last>` ([`endpoint6`]) with their default route via it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use smarter_cni::datapath::nftables::{NftablesConfig, NftablesDatapath};
use smarter_cni::datapath::{PodLink, V6Config};
use smarter_testbed::{Netns, World, require_root, skipped, tcp_roundtrip};

/// The node's LAN address.
pub const NODE_LAN_IP: Ipv4Addr = smarter_testbed::LAN_NODE_IP;
/// The sensor on the LAN.
pub const SENSOR_IP: Ipv4Addr = smarter_testbed::LAN_HOST_IP;
/// The pods' gateway (the bridge's address).
pub const GATEWAY: Ipv4Addr = smarter_testbed::POD_GATEWAY;
/// The node's global IPv6 address on the uplink.
pub const NODE_UPLINK_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// The wan router's IPv6 address on the uplink's link.
pub const WAN_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The pods' IPv6 gateway (the bridge's address in the ULA subnet).
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);
/// The pods' ULA subnet.
pub const SUBNET6: &str = "fd00:ac27::/64";
/// How long a client waits for an answer (a failure takes this long; success does not).
pub const T: Duration = Duration::from_secs(3);

/// A world for the nftables datapath: see the module docs.
pub struct NftWorld {
    /// The testbed world.
    pub w: World,
}

/// Whether `test` can run: root and `nft`; otherwise a SKIP line and false.
pub fn can_run(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        skipped(&format!("SKIP {test}: `nft` is not installed"));
        return false;
    }
    true
}

/// Pod `last` (172.39.0.`last`) as the datapath keys it.
pub fn endpoint(last: u8) -> PodLink {
    PodLink {
        ip: Ipv4Addr::new(172, 39, 0, last),
        ip6: None,
        mac: [2, 0, 0, 0, 0, last],
        host_ifname: format!("smv{last:012x}"),
    }
}

/// Pod `last` with its ULA `fd00:ac27::<last>` (a dual-stack pod).
pub fn endpoint6(last: u8) -> PodLink {
    PodLink {
        ip6: Some(Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, last.into())),
        ..endpoint(last)
    }
}

/// [`config`] of a dual-stack network ([`SUBNET6`] via [`GATEWAY6`]).
pub fn config6(uplinks: &[&str]) -> NftablesConfig {
    NftablesConfig {
        v6: Some(V6Config {
            subnet: SUBNET6.parse().expect("subnet6"),
            gateway: GATEWAY6,
        }),
        ..config(uplinks, &[])
    }
}

/// The datapath settings of the world's network; `uplinks` empty is `uplink: auto`.
pub fn config(uplinks: &[&str], deny: &[&str]) -> NftablesConfig {
    NftablesConfig {
        network: "smartnet".into(),
        bridge: "smartnet0".into(),
        subnet: "172.39.0.0/16".parse().expect("subnet"),
        gateway: GATEWAY,
        v6: None,
        uplinks: uplinks.iter().map(|u| (*u).to_owned()).collect(),
        deny: deny.iter().map(|d| d.parse().expect("cidr")).collect(),
        nat_ports: (61000, 64999),
    }
}

/// `ip:port`.
pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A TCP round trip from `ns` to `to`.
pub fn tcp_ok(ns: &Netns, to: SocketAddr) -> Result<(), String> {
    tcp_roundtrip(ns, to, b"hello nft", T)
}

impl NftWorld {
    /// The node's bridge and pods `.2` and `.3`, forwarding on (and bridged IPv4 through
    /// netfilter where `br_netfilter` is loaded, as on a node running the plugin).
    pub fn new(label: &str) -> Self {
        let pods: Vec<_> = [2u8, 3]
            .map(|last| {
                let ep = endpoint(last);
                (format!("pod{last}"), ep.host_ifname, ep.mac, ep.ip)
            })
            .into();
        let w = super::bridged(label, &pods);
        // Per namespace since Linux 5.3; absent when br_netfilter is not loaded.
        let _ = w
            .node()
            .succeeds(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        Self { w }
    }

    /// The node namespace.
    pub fn node(&self) -> &Netns {
        self.w.node()
    }

    /// Pod `.last`'s namespace.
    pub fn pod(&self, last: u8) -> &Netns {
        self.w.pod(&format!("pod{last}")).expect("pod")
    }

    /// Adds the world's LAN: the node's `lan0` at [`NODE_LAN_IP`], the sensor at [`SENSOR_IP`]
    /// (which routes the pod subnet to the node, as a misconfigured or hostile LAN host might).
    pub fn add_lan(&mut self) -> &Netns {
        self.w.add_lan().expect("lan namespace")
    }

    /// The LAN namespace.
    pub fn lan(&self) -> &Netns {
        self.w.lan().expect("add_lan first")
    }

    /// `NftablesDatapath::ensure` in the node namespace.
    pub fn ensure(&self, cfg: &NftablesConfig) -> NftablesDatapath {
        self.node()
            .run(|| NftablesDatapath::ensure(cfg))
            .expect("ensure")
    }

    /// Makes the world dual-stack (see the module docs): addresses without duplicate address
    /// detection, as ADD adds them.
    pub fn add_ipv6(&self) {
        let (node, wan) = (self.node(), self.w.wan());
        node.ip(&format!(
            "-6 addr add {NODE_UPLINK_IP6}/64 dev uplink0 nodad"
        ));
        node.ip(&format!("-6 route add default via {WAN_IP6} dev uplink0"));
        node.ip(&format!("-6 addr add {GATEWAY6}/64 dev smartnet0 nodad"));
        wan.ip(&format!("-6 addr add {WAN_IP6}/64 dev wan0 nodad"));
        for last in [2u8, 3] {
            let ip6 = endpoint6(last).ip6.expect("ip6");
            let pod = self.pod(last);
            pod.ip(&format!("-6 addr add {ip6}/64 dev eth0 nodad"));
            pod.ip(&format!("-6 route add default via {GATEWAY6} dev eth0"));
        }
    }

    /// Packets of the named counter.
    pub fn counter(&self, dp: &NftablesDatapath, name: &str) -> u64 {
        let all = self.node().run(|| dp.counters()).expect("counters");
        all.iter().find(|(n, _, _)| n == name).map_or(0, |c| c.1)
    }
}
