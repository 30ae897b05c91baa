//! The datapath's maps. Names, key/value types and capacities all come from `smarter-common`
//! (`map_name!` expands to the literal `export_name` needs), so user space and the kernel side
//! cannot drift apart.

use aya_ebpf::maps::{Array, HashMap, PerCpuHashMap};
use smarter_common::{
    EndpointKey, EndpointMeta, EndpointStats, EndpointValue, NetConfig, map_name,
    maps::{CONFIG_MAX, ENDPOINTS_MAX, EP_STATS_MAX},
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
