//! What operators inspect of a datapath, driver-neutral: the rows `smarter-bpfctl -o json`
//! prints, one JSON array of these objects per command. Each driver fills them
//! ([`super::Datapath::status_rows`] and the like). Field names and meanings are the stable
//! schema (new fields may be added, none removed or renamed).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::types::PodTraffic;

/// `status`: one network.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// CNI network name.
    pub network: String,
    /// `ebpf` or `nftables`.
    pub datapath: &'static str,
    /// Why the network is on this datapath: `configured`, `auto`, or why eBPF is unavailable
    /// (`no_bpffs`, `permission`, `load`), as the plugin or the agent last recorded it; for an
    /// nftables network without a record, what probing `--bpffs-dir` finds (`null` when it
    /// finds eBPF usable).
    pub reason: Option<String>,
    /// The reason in words when eBPF is unavailable (`null` otherwise).
    pub reason_detail: Option<String>,
    /// Versioned pin directory (`null` for nftables).
    pub pin_dir: Option<String>,
    /// Map layout version of the pins (`null` for nftables).
    pub layout: Option<u32>,
    /// Kernel id of the pinned pod program (`null` when not pinned, and for nftables).
    pub pod_program_id: Option<u32>,
    /// The uplink the default route uses (`null` when none is set; nftables: not known from
    /// the tables). Pods leave by every entry of [`Self::uplinks`].
    pub uplink: Option<String>,
    /// The address of [`Self::uplink`] (`0.0.0.0` when none; `null` for nftables, which
    /// masquerades to whatever address the uplink has).
    pub uplink_addr: Option<String>,
    /// Every external interface the datapath serves, by ifindex: pods leave by each, NATed to
    /// its address (empty for nftables, whose rules match any interface but the bridge).
    pub uplinks: Vec<UplinkRow>,
    /// nftables tables as `family name` (empty for eBPF).
    pub tables: Vec<String>,
    /// Where the programs run (empty for nftables).
    pub attachments: Vec<HookRow>,
    /// Map fill levels (nftables: the `endpoints` set and the hostPort maps, capacity 0 for
    /// unbounded).
    pub maps: Vec<MapRow>,
    /// How the sysctls ADD set on the bridge and every host veth (`accept_ra`,
    /// `accept_redirects`, `send_redirects` 0: the node takes no configuration from pods)
    /// differ now, one sentence each, e.g. `net.ipv6.conf.smartnet0.accept_ra is 1, not 0`
    /// (empty: as set).
    pub sysctl_drift: Vec<String>,
    /// The bridge whose sysctls the drift check reads (not printed).
    #[serde(skip)]
    pub bridge: Option<String>,
    /// The host veths whose sysctls the drift check reads (not printed).
    #[serde(skip)]
    pub veths: Vec<String>,
}

/// One external interface an eBPF network serves (`status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UplinkRow {
    /// Interface name now (`null` when it is gone: no interface has the ifindex).
    pub ifname: Option<String>,
    /// Ifindex.
    pub ifindex: u32,
    /// The address pods are NATed to through it (`null`: none, nothing is NATed out of it).
    pub addr: Option<String>,
    /// `ethernet`, or `l3` for a device without link-layer header (raw-IP modem, PPP, tun).
    pub link: &'static str,
    /// MTU as recorded.
    pub mtu: u32,
    /// Whether the default route uses it ([`StatusRow::uplink`]).
    pub default_route: bool,
    /// Pods may start flows out of it (`uplink` selects it); `false`: only replies of flows
    /// that came in by it (hostPorts on its address).
    pub egress: bool,
    /// An IPv6-only uplink's CLAT: `<CLAT address> -> <NAT64 prefix>/96` (pods' IPv4 leaves it
    /// translated to IPv6; `addr` is then the CLAT's IPv4, 192.0.0.1); `null` otherwise.
    pub clat: Option<String>,
}

impl UplinkRow {
    /// The row of an interface; `addr` unspecified means none.
    #[must_use]
    pub fn new(
        ifindex: u32,
        ifname: Option<String>,
        addr: Ipv4Addr,
        l3: bool,
        mtu: u32,
        default_route: bool,
    ) -> Self {
        Self {
            ifname,
            ifindex,
            addr: (!addr.is_unspecified()).then(|| addr.to_string()),
            link: if l3 { "l3" } else { "ethernet" },
            mtu,
            default_route,
            egress: true,
            clat: None,
        }
    }

    /// The same row for an IPv6-only uplink with the CLAT from `addr` to `pref64`.
    #[must_use]
    pub fn with_clat(self, addr: std::net::Ipv6Addr, pref64: std::net::Ipv6Addr) -> Self {
        Self {
            clat: Some(format!("{addr} -> {pref64}/96")),
            ..self
        }
    }

    /// The same row for an interface pods may not start flows out of.
    #[must_use]
    pub fn replies_only(self) -> Self {
        Self {
            egress: false,
            ..self
        }
    }

    /// One line for people: `uplink0 (ifindex 3): NAT to 198.51.100.2, ethernet, mtu 1500,
    /// default route`; a gone interface is `ifindex 3 (gone)`, a missing address `none`.
    #[must_use]
    pub fn describe(&self) -> String {
        let name = match &self.ifname {
            Some(n) => format!("{n} (ifindex {})", self.ifindex),
            None => interface_name(self.ifindex, None),
        };
        let nat = if self.egress {
            "NAT to"
        } else {
            "not selected, replies only from"
        };
        let clat = self
            .clat
            .as_deref()
            .map_or_else(String::new, |c| format!(" then the CLAT {c}"));
        format!(
            "{name}: {nat} {}{clat}, {}, mtu {}{}",
            self.addr.as_deref().unwrap_or("none"),
            self.link,
            self.mtu,
            if self.default_route {
                ", default route"
            } else {
                ""
            }
        )
    }
}

/// A program attachment.
#[derive(Debug, Clone, Serialize)]
pub struct HookRow {
    /// Interface.
    pub ifname: String,
    /// Program name.
    pub program: &'static str,
    /// `ingress`, or `egress` (the backstop on an external interface).
    pub direction: &'static str,
    /// `tcx`, `netlink` or `none`.
    pub mode: &'static str,
}

/// A map's fill level.
#[derive(Debug, Clone, Serialize)]
pub struct MapRow {
    /// Map name.
    pub map: String,
    /// Entries.
    pub entries: usize,
    /// Capacity.
    pub capacity: u32,
}

/// `endpoints`: one pod.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointRow {
    /// CNI network name.
    pub network: String,
    /// Pod address.
    pub ip: String,
    /// Pod MAC.
    pub mac: String,
    /// Host-side veth.
    pub host_ifname: String,
    /// Its ifindex.
    pub host_ifindex: u32,
    /// Kubernetes namespace.
    pub pod_namespace: String,
    /// Kubernetes pod name.
    pub pod_name: String,
    /// CNI container id.
    pub container_id: String,
    /// Packets the pod sent (`null` for nftables, which has no per-pod counters).
    pub packets: Option<u64>,
    /// Bytes the pod sent (`null` for nftables).
    pub bytes: Option<u64>,
}

/// `traffic`: one pod's traffic through one external interface in one direction, counted
/// from the pod's ADD (metered links: what each pod costs on each uplink).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficRow {
    /// CNI network name.
    pub network: String,
    /// Kubernetes namespace (empty when unknown: no endpoint or record names the address).
    pub pod_namespace: String,
    /// Kubernetes pod name (empty when unknown).
    pub pod_name: String,
    /// Pod address.
    pub pod_ip: String,
    /// The interface's name now, or `ifindex N (gone)` when no interface has its ifindex.
    pub interface: String,
    /// Its ifindex.
    pub ifindex: u32,
    /// `out` (sent by the pod) or `in` (received by the pod).
    pub direction: &'static str,
    /// Packets.
    pub packets: u64,
    /// Bytes as the interface saw them (eBPF: `skb->len`, the IPv4 packet plus the Ethernet
    /// header on Ethernet devices, no header on layer-3 devices).
    pub bytes: u64,
    /// Packets per second over `--interval` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_s: Option<f64>,
    /// Bytes per second over `--interval` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
}

impl TrafficRow {
    /// The rows of `traffic` (one network's [`super::Datapath::pod_traffic`]), in its order,
    /// each pod named by the endpoint row (`endpoints`) with its address.
    #[must_use]
    pub fn of(network: &str, traffic: &[PodTraffic], endpoints: &[EndpointRow]) -> Vec<Self> {
        let names: HashMap<&str, &EndpointRow> =
            endpoints.iter().map(|e| (e.ip.as_str(), e)).collect();
        traffic
            .iter()
            .map(|t| {
                let ip = t.pod.to_string();
                let ep = names.get(ip.as_str());
                Self {
                    network: network.to_string(),
                    pod_namespace: ep.map(|e| e.pod_namespace.clone()).unwrap_or_default(),
                    pod_name: ep.map(|e| e.pod_name.clone()).unwrap_or_default(),
                    pod_ip: ip,
                    interface: interface_name(t.ifindex, t.ifname.as_deref()),
                    ifindex: t.ifindex,
                    direction: t.dir.name(),
                    packets: t.packets,
                    bytes: t.bytes,
                    packets_per_s: None,
                    bytes_per_s: None,
                }
            })
            .collect()
    }
}

/// An interface as `traffic` and the metrics name it: its name, or `ifindex N (gone)`.
#[must_use]
pub fn interface_name(ifindex: u32, name: Option<&str>) -> String {
    name.map_or_else(|| format!("ifindex {ifindex} (gone)"), str::to_string)
}

/// `ct` / `nat`: one NATed flow.
#[derive(Debug, Clone, Serialize)]
pub struct CtRow {
    /// CNI network name.
    pub network: String,
    /// `tcp`, `udp` or `icmp`.
    pub proto: &'static str,
    /// Pod address.
    pub pod_ip: String,
    /// Pod port (ICMP: echo identifier).
    pub pod_port: u16,
    /// Remote address.
    pub remote_ip: String,
    /// Remote port.
    pub remote_port: u16,
    /// Address the flow is NATed to.
    pub nat_ip: String,
    /// NAT port.
    pub nat_port: u16,
    /// `new`, `syn`, `established`, `closing`.
    pub state: &'static str,
    /// Seconds since the last packet.
    pub age_s: f64,
}

/// `hostports`: one mapping.
#[derive(Debug, Clone, Serialize)]
pub struct HostPortRow {
    /// CNI network name.
    pub network: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Port on the node's address (its IPv6 addresses when `pod_ip` is the pod's ULA).
    pub host_port: u16,
    /// Pod address (IPv4, or a dual-stack pod's ULA).
    pub pod_ip: String,
    /// Port in the pod.
    pub container_port: u16,
}

impl HostPortRow {
    /// The row of one mapping of `network` (both datapaths describe it by these numbers).
    pub fn new(
        network: &str,
        protocol: u8,
        host_port: u16,
        pod_ip: impl Into<std::net::IpAddr>,
        container_port: u16,
    ) -> Self {
        Self {
            network: network.to_string(),
            protocol: proto_name(protocol),
            host_port,
            pod_ip: pod_ip.into().to_string(),
            container_port,
        }
    }
}

/// `config`: the live configuration record of one network.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRow {
    /// CNI network name.
    pub network: String,
    /// Gateway (bridge) address.
    pub gateway: String,
    /// Pod subnet.
    pub subnet: String,
    /// Uplink ifindex (0: none).
    pub uplink_ifindex: u32,
    /// Uplink address (`0.0.0.0`: none).
    pub uplink_addr: String,
    /// NAT source ports in effect, inclusive.
    pub nat_ports: [u16; 2],
    /// Idle timeouts, seconds: TCP established, TCP other, UDP, ICMP.
    pub ct_timeouts_s: [u32; 4],
    /// Bridge ifindex.
    pub bridge_ifindex: u32,
    /// Bridge MAC.
    pub bridge_mac: String,
    /// Whether trace events are on.
    pub trace: bool,
    /// Deny ranges.
    pub deny: Vec<String>,
}

/// `stats`: one verdict's counters (summed over CPUs).
#[derive(Debug, Clone, Serialize)]
pub struct StatsRow {
    /// CNI network name.
    pub network: String,
    /// Verdict name: the eBPF verdicts (`pass`, `redirect_pod`, `nat_out`, `drop_spoof`...)
    /// or the nftables counters (`nat_masquerade`, `drop_deny`, `drop_spoof_ip`...).
    pub verdict: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Packets per second over `--interval` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_s: Option<f64>,
    /// Bytes per second over `--interval` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
}

/// `monitor`: one event (JSON lines, one object per line).
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// CNI network name.
    pub network: String,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub time_ns: u64,
    /// Verdict name (`drop_spoof`, `drop_deny`...).
    pub verdict: &'static str,
    /// Interface the program ran on.
    pub ifindex: u32,
    /// `tcp`, `udp`, `icmp`, a number, or empty when not IPv4.
    pub proto: String,
    /// Source address.
    pub src: String,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: String,
    /// Destination port.
    pub dport: u16,
    /// Packet length.
    pub len: u32,
}

/// `ct flush` / `ct delete`: what was changed.
#[derive(Debug, Clone, Serialize)]
pub struct WriteRow {
    /// CNI network name.
    pub network: String,
    /// Flows removed (both conntrack directions each).
    pub removed_flows: usize,
    /// The flows chosen for removal, as `proto pod_ip:pod_port -> remote_ip:remote_port`
    /// (a flow that expired between listing and removal is listed but not counted).
    pub flows: Vec<String>,
}

/// `tcp`, `udp`, `icmp`, or `other`.
#[must_use]
pub fn proto_name(p: u8) -> &'static str {
    smarter_common::ct::proto::name(p).unwrap_or("other")
}
