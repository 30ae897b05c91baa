//! The gateway as it really is: besides the Ethernet uplink every world has, a LAN of sensors
//! ([`World::add_lan`]), a backup uplink that takes the default route when the wired link fails
//! ([`World::add_backup_uplink`], [`World::fail_over`], [`World::fail_back`]) and a layer-3
//! uplink as a raw-IP modem presents it ([`World::add_l3_uplink`]). [`World::external_links`]
//! lists every external interface of the node with the namespace and interface on its far
//! side, where captures run.
//!
//! Addresses: LAN `192.168.50.1/24` (node, [`LAN_IF`]) ↔ `192.168.50.2/24` (the sensor's
//! `eth0`); backup uplink `198.51.101.2/24` (node, [`UPLINK_BACKUP`]) ↔ `198.51.101.1/24`
//! (the wan's `wan2`); layer-3 uplink `10.64.0.2` (node, [`L3_UPLINK`]) peer `10.64.0.1` (the
//! wan's `tun1`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::tun::{TunRelay, open_tun};
use super::{NODE_UPLINK_IP, Netns, UPLINK, WAN_ROUTER_IP, World, ns};

/// The node's LAN interface.
pub const LAN_IF: &str = "lan0";
/// The node's address on the LAN (sensors reach hostPorts here).
pub const LAN_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// The sensor's address on the LAN.
pub const LAN_HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
/// The sensor's interface (in the `lan` namespace).
pub const LAN_HOST_IF: &str = "eth0";
/// The node's backup uplink interface.
pub const UPLINK_BACKUP: &str = "uplink1";
/// The node's address on the backup uplink.
pub const NODE_BACKUP_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 101, 2);
/// The wan's router address on the backup uplink.
pub const WAN_BACKUP_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 101, 1);
/// The backup uplink's interface in the wan namespace.
pub const WAN_BACKUP_IF: &str = "wan2";
/// Metric of the backup default route (the primary one has metric 0).
pub const BACKUP_METRIC: u32 = 200;
pub use crate::{L3_UPLINK, WAN_L3_IF, WAN_UPLINK_IF};
/// The node's address on the layer-3 uplink.
pub const NODE_L3_IP: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);
/// The wan's (the carrier's) address on the layer-3 uplink: the node's peer.
pub const WAN_L3_IP: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

/// What a world has besides its node, wan and pods; field order is drop order (the relay
/// closes its devices before any namespace goes).
#[derive(Default)]
pub(crate) struct Extras {
    /// The NAT64 of [`World::add_nat64`] (its tayga), which makes the primary uplink IPv6-only.
    pub(crate) nat64: Option<super::nat64::Tayga>,
    relay: Option<TunRelay>,
    lan: Option<Netns>,
    backup: bool,
    /// The primary uplink is dual-stack ([`World::add_ipv6`]).
    pub(crate) dual: bool,
    l3_mtu: Option<u32>,
}

/// One external interface of the node and what is on its far side.
#[derive(Debug, Clone)]
pub struct ExternalLink<'a> {
    /// The interface in the node namespace.
    pub node_if: &'static str,
    /// The node's IPv4 address on it; `None` on the IPv6-only uplink of [`World::add_nat64`].
    pub node_ip: Option<Ipv4Addr>,
    /// The node's global IPv6 address on it, if it has one (the IPv6-only uplink's
    /// [`NODE_UPLINK_IP6`](crate::NODE_UPLINK_IP6)).
    pub node_ip6: Option<Ipv6Addr>,
    /// The namespace on the far side.
    pub far_ns: &'a Netns,
    /// The interface on the far side.
    pub far_if: &'static str,
    /// A layer-3 device (no Ethernet header, no MAC).
    pub layer3: bool,
}

impl World {
    /// Adds a `lan` namespace (a sensor) joined to the node by a veth: node side [`LAN_IF`]
    /// with [`LAN_NODE_IP`]`/24`, sensor side `eth0` with [`LAN_HOST_IP`]`/24`. The sensor
    /// routes the pod subnet `172.39.0.0/16` via the node (the LAN routes it to the gateway)
    /// and has no default route.
    ///
    /// # Errors
    /// When `ip` fails, or the world already has a LAN.
    pub fn add_lan(&mut self) -> io::Result<&Netns> {
        if self.extras.lan.is_some() {
            return Err(io::Error::other("the world already has a LAN"));
        }
        let lan = Netns::create(&format!("{}-lan", self.prefix))?;
        self.extras.lan = Some(lan);
        self.wire_lan()?;
        Ok(self.lan().expect("just set"))
    }

    fn wire_lan(&self) -> io::Result<()> {
        let Some(lan) = &self.extras.lan else {
            return Ok(());
        };
        let (n, l) = (self.node.name(), lan.name());
        ns::ip(&[
            "-n",
            n,
            "link",
            "add",
            LAN_IF,
            "type",
            "veth",
            "peer",
            "name",
            LAN_HOST_IF,
            "netns",
            l,
        ])?;
        let node_addr = format!("{LAN_NODE_IP}/24");
        ns::ip(&["-n", n, "addr", "add", &node_addr, "dev", LAN_IF])?;
        ns::ip(&["-n", n, "link", "set", LAN_IF, "up"])?;
        let host_addr = format!("{LAN_HOST_IP}/24");
        ns::ip(&["-n", l, "addr", "add", &host_addr, "dev", LAN_HOST_IF])?;
        ns::ip(&["-n", l, "link", "set", LAN_HOST_IF, "up"])?;
        let gw = LAN_NODE_IP.to_string();
        ns::ip(&["-n", l, "route", "add", "172.39.0.0/16", "via", &gw])
    }

    /// The namespace behind the smaller-MTU link of [`World::add_far`].
    #[must_use]
    pub fn far(&self) -> Option<&Netns> {
        self.far.as_ref()
    }

    /// The sensor namespace of [`World::add_lan`].
    #[must_use]
    pub fn lan(&self) -> Option<&Netns> {
        self.extras.lan.as_ref()
    }

    /// Adds a second wan-facing link: [`UPLINK_BACKUP`] in the node ([`NODE_BACKUP_IP`]`/24`)
    /// ↔ [`WAN_BACKUP_IF`] in the wan ([`WAN_BACKUP_ROUTER_IP`]`/24`), and a default route via
    /// the wan's address on it with metric [`BACKUP_METRIC`]; the primary default route (via
    /// `uplink0`, metric 0) keeps winning until [`World::fail_over`].
    ///
    /// # Errors
    /// When `ip` fails, the world has no wan or already a backup uplink.
    pub fn add_backup_uplink(&mut self) -> io::Result<()> {
        self.wan_ns()?;
        if self.extras.backup {
            return Err(io::Error::other("the world already has a backup uplink"));
        }
        self.extras.backup = true;
        self.wire_backup()
    }

    fn wire_backup(&self) -> io::Result<()> {
        if !self.extras.backup {
            return Ok(());
        }
        let (n, w) = (self.node.name(), self.wan_ns()?.name());
        ns::ip(&[
            "-n",
            n,
            "link",
            "add",
            UPLINK_BACKUP,
            "type",
            "veth",
            "peer",
            "name",
            WAN_BACKUP_IF,
            "netns",
            w,
        ])?;
        let node_addr = format!("{NODE_BACKUP_IP}/24");
        ns::ip(&["-n", n, "addr", "add", &node_addr, "dev", UPLINK_BACKUP])?;
        ns::ip(&["-n", n, "link", "set", UPLINK_BACKUP, "up"])?;
        let wan_addr = format!("{WAN_BACKUP_ROUTER_IP}/24");
        ns::ip(&["-n", w, "addr", "add", &wan_addr, "dev", WAN_BACKUP_IF])?;
        ns::ip(&["-n", w, "link", "set", WAN_BACKUP_IF, "up"])?;
        let gw = WAN_BACKUP_ROUTER_IP.to_string();
        let metric = BACKUP_METRIC.to_string();
        ns::ip(&[
            "-n",
            n,
            "route",
            "add",
            "default",
            "via",
            &gw,
            "dev",
            UPLINK_BACKUP,
            "metric",
            &metric,
        ])
    }

    /// What a connection manager does when the wired link fails: `ip link set uplink0 down` in
    /// the node. The kernel drops the routes through it; the backup default route takes over.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn fail_over(&self) -> io::Result<()> {
        ns::ip(&["-n", self.node.name(), "link", "set", UPLINK, "down"])
    }

    /// The wired link is back: `uplink0` up again and the primary default route (via
    /// `198.51.100.1`, metric 0) re-added.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn fail_back(&self) -> io::Result<()> {
        let n = self.node.name();
        ns::ip(&["-n", n, "link", "set", UPLINK, "up"])?;
        let gw = WAN_ROUTER_IP.to_string();
        ns::ip(&[
            "-n", n, "route", "replace", "default", "via", &gw, "dev", UPLINK, "metric", "0",
        ])
    }

    /// Adds a layer-3 uplink as a raw-IP cellular modem or a VPN presents it: a TUN device
    /// [`L3_UPLINK`] in the node ([`NODE_L3_IP`] peer [`WAN_L3_IP`], MTU `mtu`) and a TUN device
    /// [`WAN_L3_IF`] in the wan ([`WAN_L3_IP`] peer [`NODE_L3_IP`], same MTU), joined by a relay
    /// thread that copies every packet between them (stopped, and both devices gone, on drop).
    /// The node's default route then goes via [`L3_UPLINK`]; `uplink0` keeps its address as a
    /// non-default external interface.
    ///
    /// # Errors
    /// When `/dev/net/tun`, the ioctl or `ip` fails, the world has no wan or already a layer-3
    /// uplink.
    pub fn add_l3_uplink(&mut self, mtu: u32) -> io::Result<()> {
        self.wan_ns()?;
        if self.extras.l3_mtu.is_some() {
            return Err(io::Error::other("the world already has a layer-3 uplink"));
        }
        self.extras.l3_mtu = Some(mtu);
        self.extras.relay = Some(self.wire_l3(mtu)?);
        Ok(())
    }

    fn wire_l3(&self, mtu: u32) -> io::Result<TunRelay> {
        let wan = self.wan_ns()?;
        let node_fd = open_tun(&self.node, L3_UPLINK)?;
        let wan_fd = open_tun(wan, WAN_L3_IF)?;
        let relay = TunRelay::start(node_fd, wan_fd);
        let mtu = mtu.to_string();
        for (ns, dev, me, peer) in [
            (&self.node, L3_UPLINK, NODE_L3_IP, WAN_L3_IP),
            (wan, WAN_L3_IF, WAN_L3_IP, NODE_L3_IP),
        ] {
            let n = ns.name();
            let (me, peer) = (me.to_string(), peer.to_string());
            ns::ip(&["-n", n, "addr", "add", &me, "peer", &peer, "dev", dev])?;
            ns::ip(&["-n", n, "link", "set", dev, "mtu", &mtu, "up"])?;
        }
        // A modem's default route has no gateway: the link is point-to-point.
        ns::ip(&[
            "-n",
            self.node.name(),
            "route",
            "replace",
            "default",
            "dev",
            L3_UPLINK,
        ])?;
        Ok(relay)
    }

    /// The layer-3 uplink's relay (its packet counts), when the world has one.
    #[must_use]
    pub fn l3_relay(&self) -> Option<&TunRelay> {
        self.extras.relay.as_ref()
    }

    /// Every external interface of the node, the primary uplink first (none without a wan),
    /// with the node's addresses on it and the namespace and interface on its far side (the
    /// place a capture sees what the node sent out). The primary uplink has only IPv6 (no
    /// `node_ip`, a `node_ip6`) in a world with [`World::add_nat64`].
    #[must_use]
    pub fn external_links(&self) -> Vec<ExternalLink<'_>> {
        let mut out = Vec::new();
        let nat64 = self.has_nat64();
        if let Some(wan) = &self.wan {
            out.push(ExternalLink {
                node_if: UPLINK,
                node_ip: (!nat64).then_some(NODE_UPLINK_IP),
                node_ip6: if nat64 {
                    Some(super::NODE_UPLINK_IP6)
                } else {
                    self.extras.dual.then_some(super::NODE_DUAL_IP6)
                },
                far_ns: wan,
                far_if: WAN_UPLINK_IF,
                layer3: false,
            });
        }
        if let (true, Some(wan)) = (self.extras.backup, &self.wan) {
            out.push(ExternalLink {
                node_if: UPLINK_BACKUP,
                node_ip: Some(NODE_BACKUP_IP),
                node_ip6: None,
                far_ns: wan,
                far_if: WAN_BACKUP_IF,
                layer3: false,
            });
        }
        if let (Some(_), Some(wan)) = (self.extras.l3_mtu, &self.wan) {
            out.push(ExternalLink {
                node_if: L3_UPLINK,
                node_ip: Some(NODE_L3_IP),
                node_ip6: None,
                far_ns: wan,
                far_if: WAN_L3_IF,
                layer3: true,
            });
        }
        if let Some(lan) = &self.extras.lan {
            out.push(ExternalLink {
                node_if: LAN_IF,
                node_ip: Some(LAN_NODE_IP),
                node_ip6: None,
                far_ns: lan,
                far_if: LAN_HOST_IF,
                layer3: false,
            });
        }
        out
    }

    /// After a boot wired the primary uplink again: IPv6-only again with a NAT64, the LAN, the backup uplink and the
    /// layer-3 uplink (a new relay: the old one lost its node-side device) as they were.
    pub(crate) fn rewire_extras(&mut self) -> io::Result<()> {
        if self.has_nat64() {
            self.wire_uplink6()?;
        }
        if self.extras.dual {
            self.wire_dual()?;
        }
        self.wire_lan()?;
        self.wire_backup()?;
        if let Some(mtu) = self.extras.l3_mtu {
            self.extras.relay = Some(self.wire_l3(mtu)?);
        }
        Ok(())
    }

    /// Stops the layer-3 relay (before a boot deletes the node's links).
    pub(crate) fn stop_relay(&mut self) {
        self.extras.relay = None;
    }
}
