//! What operators inspect of a datapath, driver-neutral: the rows `smarter-bpfctl -o json`
//! prints, one JSON array of these objects per command. Each driver fills them
//! ([`super::Datapath::status_rows`] and the like). Field names and meanings are the stable
//! schema (new fields may be added, none removed or renamed).

use serde::Serialize;

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
    /// Uplink interface (`null` when none is set; nftables: not known from the tables).
    pub uplink: Option<String>,
    /// The uplink address packets are NATed to (`0.0.0.0` when none; `null` for nftables,
    /// which masquerades to whatever address the uplink has).
    pub uplink_addr: Option<String>,
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

/// A program attachment.
#[derive(Debug, Clone, Serialize)]
pub struct HookRow {
    /// Interface.
    pub ifname: String,
    /// Program name.
    pub program: &'static str,
    /// `ingress`.
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
    /// Port on the node's address.
    pub host_port: u16,
    /// Pod address.
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
        pod_ip: std::net::Ipv4Addr,
        container_port: u16,
    ) -> Self {
        Self {
            network: network.to_string(),
            protocol: proto_name(protocol),
            host_port,
            pod_ip: pod_ip.to_string(),
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
