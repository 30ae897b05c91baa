//! The datapath's maps. Names, key/value types and capacities all come from `smarter-common`
//! (`map_name!` expands to the literal `export_name` needs), so user space and the kernel side
//! cannot drift apart.

use aya_ebpf::maps::{
    Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf,
};
use smarter_common::{
    ClatValue, CtKey, CtValue, EndpointKey, EndpointMeta, EndpointStats, EndpointValue, FragKey,
    FragValue, HostPortKey, HostPortValue, IfStatsKey, NetConfig, UplinkValue, VerdictStats,
    clat::ClatScratch,
    ct::{CT_MAX, FRAG_MAX, HOSTPORTS_MAX},
    events::EVENTS_BYTES,
    map_name,
    maps::{
        CLAT_MAX, CONFIG_MAX, DENY_MAX, ENDPOINTS_MAX, EP_IFACES_MAX, EP_STATS_MAX, IF_STATS_MAX,
        NODE_ADDRS_MAX, UPLINKS_MAX,
    },
    v6::{
        Ct6Key, Ct6Value, Endpoint6Key, Frag6Key, Frag6Value, HostPort6Value, Nat66Scratch,
        TAILS_MAX, Uplink6Value,
    },
    verdict::VERDICTS_MAX,
};

/// Pod IPv4 → where the pod is. Written by the plugin (ADD/DEL).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(endpoints))]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointValue> =
    HashMap::with_max_entries(ENDPOINTS_MAX, 0);

/// Pod IPv4 → who the pod is. For operators only; no program reads it, but it is part of the
/// object so every loader creates and pins it with the rest.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ep_meta))]
pub static EP_META: HashMap<EndpointKey, EndpointMeta> =
    HashMap::with_max_entries(ENDPOINTS_MAX, 0);

/// Host veth ifindex → packets/bytes the pod sent, per CPU.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ep_stats))]
pub static EP_STATS: PerCpuHashMap<u32, EndpointStats> =
    PerCpuHashMap::with_max_entries(EP_STATS_MAX, 0);

/// The network's configuration (one record).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(config))]
pub static CONFIG: Array<NetConfig> = Array::with_max_entries(CONFIG_MAX, 0);

/// Per-verdict packet/byte counters, per CPU, indexed by `smarter_common::Verdict`.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(verdicts))]
pub static VERDICTS: PerCpuArray<VerdictStats> = PerCpuArray::with_max_entries(VERDICTS_MAX, 0);

/// Deny ranges (LPM): destinations pods may never reach. Written by user space.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(deny))]
pub static DENY: LpmTrie<u32, u8> = LpmTrie::with_max_entries(DENY_MAX, 0);

/// Conntrack, pod side (pod, remote) → NAT address and port.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ct_out))]
pub static CT_OUT: LruHashMap<CtKey, CtValue> = LruHashMap::with_max_entries(CT_MAX, 0);

/// Conntrack, wire side (remote, NAT port) → pod address and port.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ct_in))]
pub static CT_IN: LruHashMap<CtKey, CtValue> = LruHashMap::with_max_entries(CT_MAX, 0);

/// hostPorts on the node's addresses → pod address and port. Written by the plugin (ADD/DEL).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(hostports))]
pub static HOSTPORTS: HashMap<HostPortKey, HostPortValue> =
    HashMap::with_max_entries(HOSTPORTS_MAX, 0);

/// Drop (and, while tracing, every) event, for `smarter-bpfctl monitor`.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(events))]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// First fragments of NATed replies (remote, IP id, protocol) → the pod, so the later
/// fragments (which carry no ports) follow them in.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(frag))]
pub static FRAG: LruHashMap<FragKey, FragValue> = LruHashMap::with_max_entries(FRAG_MAX, 0);

/// Host veth ifindex → the endpoint behind it, so IPv6 frames are checked against the pod's
/// MAC. Written by the plugin (ADD/DEL).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ep_ifaces))]
pub static EP_IFACES: HashMap<u32, EndpointKey> = HashMap::with_max_entries(EP_IFACES_MAX, 0);

/// External interface ifindex → the address pods are masqueraded to through it. Written by
/// user space (plugin and agent).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(uplinks))]
pub static UPLINKS: HashMap<u32, UplinkValue> = HashMap::with_max_entries(UPLINKS_MAX, 0);

/// Every IPv4 address of the node → the ifindex holding it. Written by user space.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(node_addrs))]
pub static NODE_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(NODE_ADDRS_MAX, 0);

/// (pod, external interface, direction) → packets/bytes, per CPU.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(if_stats))]
pub static IF_STATS: PerCpuHashMap<IfStatsKey, EndpointStats> =
    PerCpuHashMap::with_max_entries(IF_STATS_MAX, 0);

/// IPv6-only uplink ifindex → its CLAT address and NAT64 prefix. Written by user space.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(clat))]
pub static CLAT: HashMap<u32, ClatValue> = HashMap::with_max_entries(CLAT_MAX, 0);

/// The CLAT's per-CPU work space for an ICMPv6 error's translation.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(clat_scratch))]
pub static CLAT_SCRATCH: PerCpuArray<ClatScratch> = PerCpuArray::with_max_entries(1, 0);

/// Pod IPv6 (ULA) → where the pod is. Written by the plugin (ADD/DEL).
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(endpoints6))]
pub static ENDPOINTS6: HashMap<Endpoint6Key, EndpointValue> =
    HashMap::with_max_entries(ENDPOINTS_MAX, 0);

/// Every IPv6 address of the node → the ifindex holding it. Written by user space.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(node_addrs6))]
pub static NODE_ADDRS6: HashMap<[u8; 16], u32> = HashMap::with_max_entries(NODE_ADDRS_MAX, 0);

/// External interface ifindex → the global IPv6 address pods are NAT66ed to through it.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(uplinks6))]
pub static UPLINKS6: HashMap<u32, Uplink6Value> = HashMap::with_max_entries(UPLINKS_MAX, 0);

/// NAT66 conntrack, pod side (pod, remote) → NAT address and port.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ct6_out))]
pub static CT6_OUT: LruHashMap<Ct6Key, Ct6Value> = LruHashMap::with_max_entries(CT_MAX, 0);

/// NAT66 conntrack, wire side (remote, NAT port) → pod address and port.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(ct6_in))]
pub static CT6_IN: LruHashMap<Ct6Key, Ct6Value> = LruHashMap::with_max_entries(CT_MAX, 0);

/// The IPv6 programs the IPv4 ones tail-call (`smarter_common::v6::TAIL_*`). Filled by the
/// loader.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(tails))]
pub static TAILS: ProgramArray = ProgramArray::with_max_entries(TAILS_MAX, 0);

/// NAT66's per-CPU work space.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(nat66_scratch))]
pub static NAT66_SCRATCH: PerCpuArray<Nat66Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Later fragments of an IPv6 datagram → what its first fragment was translated to.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(frag6))]
pub static FRAG6: LruHashMap<Frag6Key, Frag6Value> = LruHashMap::with_max_entries(FRAG_MAX, 0);

/// hostPorts on every node IPv6 address → the dual-stack pod. Written by the plugin.
#[unsafe(link_section = "maps")]
#[unsafe(export_name = map_name!(hostports6))]
pub static HOSTPORTS6: HashMap<HostPortKey, HostPort6Value> =
    HashMap::with_max_entries(HOSTPORTS_MAX, 0);
