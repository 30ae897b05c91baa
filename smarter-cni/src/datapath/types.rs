//! The datapath-neutral types of the seam: what ADD knows about a pod ([`EndpointSpec`]), its
//! hostPorts ([`HostPortSpec`]), the network settings
//! ([`DatapathConfig`]) and how TC programs are attached ([`AttachMode`]). Both datapaths take
//! these; neither has a twin of them.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnetwork::{Ipv4Network, Ipv6Network};

/// How the pod program is attached to a host veth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links where the kernel has them (Linux 6.6+), netlink clsact filters otherwise.
    #[default]
    Auto,
    /// TCX links, pinned under the network's `links/` directory.
    Tcx,
    /// Netlink filters on a clsact qdisc (Linux 4.5+).
    Netlink,
}

/// The network settings the datapath needs from the CNI configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathConfig {
    /// The pod gateway (bridge) address.
    pub gateway: Ipv4Addr,
    /// The pod subnet.
    pub subnet: Ipv4Network,
    /// The pods' IPv6 (ULA) subnet and the bridge's address in it, when the network is
    /// dual-stack (`ipv6` not `off`); `None`: pods have IPv4 only.
    pub v6: Option<V6Config>,
    /// Capacity of each conntrack map (`ctMaxEntries`). Applies when the maps are created;
    /// pinned maps keep their size until the network's pins are removed.
    pub ct_max_entries: u32,
}

/// The IPv6 half of a dual-stack network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Config {
    /// The pods' IPv6 subnet (`subnet6`, a ULA `/64` by default).
    pub subnet: Ipv6Network,
    /// The bridge's address in it, the pods' IPv6 gateway.
    pub gateway: Ipv6Addr,
}

/// What ADD knows about a pod attachment, as the datapath needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address, when it is dual-stack.
    pub ip6: Option<Ipv6Addr>,
    /// The pod interface's MAC address.
    pub mac: [u8; 6],
    /// Host-side veth name (in the node's namespace).
    pub host_ifname: String,
    /// Host-side veth ifindex (in the node's namespace).
    pub host_ifindex: u32,
    /// Interface name inside the pod (`CNI_IFNAME`).
    pub pod_ifname: String,
    /// CNI container id.
    pub container_id: String,
    /// Kubernetes namespace of the pod (empty when unknown).
    pub pod_namespace: String,
    /// Kubernetes pod name (empty when unknown).
    pub pod_name: String,
}

impl EndpointSpec {
    /// How both datapaths key and list the pod.
    #[must_use]
    pub fn link(&self) -> PodLink {
        PodLink {
            ip: self.ip,
            ip6: self.ip6,
            mac: self.mac,
            host_ifname: self.host_ifname.clone(),
        }
    }
}

/// A pod as both datapaths key and list it: its address, MAC and host veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address, when it is dual-stack.
    pub ip6: Option<Ipv6Addr>,
    /// The pod interface's MAC address.
    pub mac: [u8; 6],
    /// The host end of the pod's veth (a port of the bridge).
    pub host_ifname: String,
}

/// One `portMappings` entry of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostPortSpec {
    /// Port on the node's addresses (every one, or [`Self::host_ip`]).
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// IP protocol: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The one node address the port answers on (`hostIP`); `None`: every node address.
    pub host_ip: Option<Ipv4Addr>,
}

/// One packet a datapath reports (a drop, or any packet while tracing): the eBPF driver
/// decodes it from its event ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// `CLOCK_MONOTONIC` time of the event, nanoseconds.
    pub ktime_ns: u64,
    /// The verdict's name (`drop_spoof`, `nat_out`...).
    pub verdict: &'static str,
    /// Interface the program ran on.
    pub ifindex: u32,
    /// IP protocol (0 when not IPv4).
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (ICMP: echo identifier).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dport: u16,
    /// Packet length.
    pub len: u32,
}

/// Which way a pod's traffic crossed an external interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficDir {
    /// Sent by the pod, out of the interface.
    Out,
    /// Received by the pod, in through the interface.
    In,
}

impl TrafficDir {
    /// `out` or `in`, as metrics and bpfctl print it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// One pod's traffic through one external interface in one direction (metered links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTraffic {
    /// The pod's address.
    pub pod: Ipv4Addr,
    /// The external interface's ifindex.
    pub ifindex: u32,
    /// Its name (eBPF: now, `None` when it is gone; nftables counts by name and keeps it,
    /// with ifindex 0 when the interface is gone).
    pub ifname: Option<String>,
    /// Direction.
    pub dir: TrafficDir,
    /// Packets (nftables: a GRO/GSO aggregate counts once).
    pub packets: u64,
    /// Bytes: eBPF counts `skb->len` (the IPv4 packet, plus the Ethernet header on Ethernet
    /// devices); nftables the IPv4 packet length.
    pub bytes: u64,
}

/// Entries of one of a datapath's tables against its capacity (eBPF: a pinned map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFill {
    /// Map name.
    pub map: &'static str,
    /// Entries now.
    pub entries: usize,
    /// Capacity (`max_entries` of the pinned map).
    pub capacity: u32,
}

/// One NATed flow, as a datapath that tracks its own flows reports it (eBPF: decoded from
/// the pod-side conntrack map; `A` = `Ipv6Addr` for NAT66 flows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntryView<A = Ipv4Addr> {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    /// The pod's address.
    pub pod_ip: A,
    /// The pod's port (ICMP: echo identifier).
    pub pod_port: u16,
    /// The remote address.
    pub remote_ip: A,
    /// The remote port (0 for ICMP).
    pub remote_port: u16,
    /// The uplink address the flow was NATed to.
    pub nat_ip: A,
    /// The NAT port (ICMP: identifier).
    pub nat_port: u16,
    /// `new`, `syn`, `established` or `closing`.
    pub state: &'static str,
    /// Time since the last packet.
    pub age: Duration,
}

/// Which of the two datapaths serves a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathKind {
    /// TC eBPF programs and pinned maps.
    Ebpf,
    /// nftables rules (earlier releases called it `iptables`).
    Nftables,
}

impl DatapathKind {
    /// The configuration's and the attachment records' name: `ebpf` or `nftables`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Nftables => "nftables",
        }
    }

    /// Parses a recorded name (attachment records, the choice record): `ebpf`, `nftables`,
    /// or `iptables` as records of earlier releases say. Anything else is an error, never a
    /// guess: a record naming a datapath this build does not know is left alone.
    ///
    /// # Errors
    ///
    /// The unknown name, quoted.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "ebpf" => Ok(Self::Ebpf),
            "nftables" | "iptables" => Ok(Self::Nftables),
            other => Err(format!(
                "unknown datapath {other:?} (known: \"ebpf\", \"nftables\")"
            )),
        }
    }
}
