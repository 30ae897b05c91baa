//! Map names, kinds, key/value sizes and capacities: the one place both sides take them from.
//!
//! Names are at most [`NAME_MAX_LEN`] bytes (the kernel's object name limit) and are also the pin
//! file names under `<bpffs>/<network>/v<LAYOUT_VERSION>/maps/`. The eBPF side needs string
//! *literals* in its `export_name` attributes, so each name is written once, in [`map_name!`](crate::map_name),
//! and both the constants below and the eBPF statics expand it.

use core::mem::size_of;

use crate::{
    ClatValue, CtKey, CtValue, DenyKey, EndpointKey, EndpointMeta, EndpointStats, EndpointValue,
    FragKey, FragValue, HostPortKey, HostPortValue, IfStatsKey, NetConfig, UplinkValue,
    VerdictStats,
    ct::{CT_MAX, FRAG_MAX, HOSTPORTS_MAX},
    v6::{
        Ct6Key, Ct6Value, Endpoint6Key, Frag6Key, Frag6Value, HostPort6Value, Nat66Scratch,
        TAILS_MAX, Uplink6Value,
    },
    verdict::VERDICTS_MAX,
};

/// Longest object (map or program) name the kernel keeps: `BPF_OBJ_NAME_LEN - 1`.
pub const NAME_MAX_LEN: usize = 15;

/// Expands to a map's name as a string literal, for attributes that need a literal
/// (`#[unsafe(export_name = smarter_common::map_name!(endpoints))]` on the eBPF side).
#[macro_export]
macro_rules! map_name {
    (endpoints) => {
        "endpoints"
    };
    (ep_meta) => {
        "ep_meta"
    };
    (ep_stats) => {
        "ep_stats"
    };
    (ep_ifaces) => {
        "ep_ifaces"
    };
    (config) => {
        "config"
    };
    (verdicts) => {
        "verdicts"
    };
    (deny) => {
        "deny"
    };
    (ct_out) => {
        "ct_out"
    };
    (ct_in) => {
        "ct_in"
    };
    (hostports) => {
        "hostports"
    };
    (events) => {
        "events"
    };
    (frag) => {
        "frag"
    };
    (uplinks) => {
        "uplinks"
    };
    (node_addrs) => {
        "node_addrs"
    };
    (if_stats) => {
        "if_stats"
    };
    (clat) => {
        "clat"
    };
    (clat_scratch) => {
        "clat_scratch"
    };
    (endpoints6) => {
        "endpoints6"
    };
    (node_addrs6) => {
        "node_addrs6"
    };
    (uplinks6) => {
        "uplinks6"
    };
    (ct6_out) => {
        "ct6_out"
    };
    (ct6_in) => {
        "ct6_in"
    };
    (tails) => {
        "tails"
    };
    (nat66_scratch) => {
        "nat66_scratch"
    };
    (frag6) => {
        "frag6"
    };
    (hostports6) => {
        "hostports6"
    };
}

/// Pod IPv4 ([`EndpointKey`]) → [`EndpointValue`]: where a pod lives. Read by the datapath.
pub const ENDPOINTS: &str = map_name!(endpoints);
/// Pod IPv4 ([`EndpointKey`]) → [`EndpointMeta`]: who a pod is, for operators. Never read by
/// the kernel.
pub const EP_META: &str = map_name!(ep_meta);
/// Host veth ifindex (`u32`) → [`EndpointStats`], per CPU: packets and bytes sent by the pod.
pub const EP_STATS: &str = map_name!(ep_stats);
/// Host veth ifindex (`u32`) → [`EndpointKey`]: the endpoint behind a pod port, so frames
/// without an IPv4 source (IPv6) are checked against its MAC too. Read by the datapath, which
/// trusts an entry only when the endpoint's own entry names the same ifindex.
pub const EP_IFACES: &str = map_name!(ep_ifaces);
/// Index `0` (`u32`) → [`NetConfig`]: the network's configuration.
pub const CONFIG: &str = map_name!(config);

/// Index [`crate::Verdict`] (`u32`) → [`VerdictStats`], per CPU: what the programs did.
pub const VERDICTS: &str = map_name!(verdicts);
/// [`DenyKey`] (LPM) → `u8` (1): destinations pods may never reach.
pub const DENY: &str = map_name!(deny);
/// Conntrack, pod side: [`CtKey`] (pod, remote) → [`CtValue`] (NAT address and port), LRU.
pub const CT_OUT: &str = map_name!(ct_out);
/// Conntrack, wire side (reverse NAT): [`CtKey`] (remote, NAT port) → [`CtValue`] (pod), LRU.
pub const CT_IN: &str = map_name!(ct_in);
/// [`HostPortKey`] (proto, port) → [`HostPortValue`] (pod address and port): hostPort DNAT.
pub const HOSTPORTS: &str = map_name!(hostports);
/// Ring buffer of [`crate::Event`]s (drops, and everything while tracing).
pub const EVENTS: &str = map_name!(events);
/// [`FragKey`] (remote, IP id, protocol) → [`FragValue`] (pod), LRU: later fragments of a NATed
/// flow's reply follow their first fragment into the pod.
pub const FRAG: &str = map_name!(frag);
/// Ifindex (`u32`) → [`UplinkValue`]: the external interfaces pods may leave by, with the
/// address each masquerades to. Written by user space.
pub const UPLINKS: &str = map_name!(uplinks);
/// IPv4 address (`u32`, network byte order) → ifindex (`u32`): every address of the node.
/// hostPorts answer on each (portmap's `dst-type LOCAL`). Written by user space.
pub const NODE_ADDRS: &str = map_name!(node_addrs);
/// [`IfStatsKey`] (pod, external interface, direction) → [`EndpointStats`], per CPU: what each
/// pod sent and received through each external interface (metered links).
pub const IF_STATS: &str = map_name!(if_stats);
/// Ifindex (`u32`) → [`crate::ClatValue`]: the IPv6-only uplink pods' IPv4 leaves by, translated
/// to IPv6 (CLAT, RFC 6877/7915): its CLAT address and the NAT64 prefix. Written by user space.
pub const CLAT: &str = map_name!(clat);
/// Index 0 (`u32`) → [`crate::clat::ClatScratch`], per CPU: the CLAT's work space for
/// translating an ICMPv6 error (more than the 512-byte BPF stack holds beside the NAT).
pub const CLAT_SCRATCH: &str = map_name!(clat_scratch);
/// Pod IPv6 (ULA, [`crate::v6::Endpoint6Key`]) → [`EndpointValue`]: where a dual-stack pod's
/// IPv6 address lives (the same value as its IPv4 entry). Written by the plugin (ADD/DEL).
pub const ENDPOINTS6: &str = map_name!(endpoints6);
/// IPv6 address (`[u8; 16]`) → ifindex (`u32`): every IPv6 address of the node (pod → node
/// passes to the host). Written by user space.
pub const NODE_ADDRS6: &str = map_name!(node_addrs6);
/// Ifindex (`u32`) → [`crate::v6::Uplink6Value`]: the global IPv6 address pods are NAT66ed to
/// through each external interface that has one. Written by user space.
pub const UPLINKS6: &str = map_name!(uplinks6);
/// NAT66 conntrack, pod side: [`crate::v6::Ct6Key`] → [`crate::v6::Ct6Value`], LRU.
pub const CT6_OUT: &str = map_name!(ct6_out);
/// NAT66 conntrack, wire side (reverse NAT66): [`crate::v6::Ct6Key`] → [`crate::v6::Ct6Value`],
/// LRU.
pub const CT6_IN: &str = map_name!(ct6_in);
/// Slot (`u32`, [`crate::v6::TAIL_POD6`], ...) → program: the IPv6 programs the IPv4 ones
/// tail-call, and the pod side of the CLAT ([`crate::clat::TAIL_POD_CLAT`]). Filled by the
/// loader (an empty slot falls back to link-local-only IPv6; the CLAT's drops).
pub const TAILS: &str = map_name!(tails);
/// Index 0 (`u32`) → [`crate::v6::Nat66Scratch`], per CPU: NAT66's work space.
pub const NAT66_SCRATCH: &str = map_name!(nat66_scratch);
/// [`crate::v6::Frag6Key`] (source, fragment id, protocol) → [`crate::v6::Frag6Value`], LRU:
/// later fragments of an IPv6 datagram follow what its first fragment was translated to.
pub const FRAG6: &str = map_name!(frag6);
/// [`HostPortKey`] (port, protocol, `host_ip` 0) → [`crate::v6::HostPort6Value`]: hostPorts
/// without `hostIP`, on every node IPv6 address, to a dual-stack pod. Written by the plugin.
pub const HOSTPORTS6: &str = map_name!(hostports6);
/// Capacity of [`CLAT`].
pub const CLAT_MAX: u32 = 8;
/// Capacity of [`UPLINKS`].
pub const UPLINKS_MAX: u32 = 64;
/// Capacity of [`NODE_ADDRS`].
pub const NODE_ADDRS_MAX: u32 = 256;
/// Capacity of [`IF_STATS`]: room for every pod through four interfaces, both directions.
pub const IF_STATS_MAX: u32 = 8 * ENDPOINTS_MAX;
/// Capacity of [`DENY`].
pub const DENY_MAX: u32 = 256;

/// Capacity of [`ENDPOINTS`] and [`EP_META`]: pods on one node (kubelet's default is 110).
pub const ENDPOINTS_MAX: u32 = 1024;
/// Capacity of [`EP_STATS`]: larger than [`ENDPOINTS_MAX`] so a short-lived leftover from a pod
/// being deleted never blocks a new pod's counters.
pub const EP_STATS_MAX: u32 = 2 * ENDPOINTS_MAX;
/// Capacity of [`EP_IFACES`]: as [`EP_STATS`], room for an entry of a veth being replaced.
pub const EP_IFACES_MAX: u32 = 2 * ENDPOINTS_MAX;
/// Capacity of [`CONFIG`] (an array with a single record at index [`CONFIG_INDEX`]).
pub const CONFIG_MAX: u32 = 1;
/// The index of the only [`NetConfig`] record in [`CONFIG`].
pub const CONFIG_INDEX: u32 = 0;

/// Kernel map kinds used here, with their `BPF_MAP_TYPE_*` numbers (uapi, stable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_PROG_ARRAY` (values are program fds on update, ids on lookup).
    ProgArray = 3,
    /// `BPF_MAP_TYPE_PERCPU_HASH` (value size is per CPU).
    PerCpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (value size is per CPU).
    PerCpuArray = 6,
    /// `BPF_MAP_TYPE_LPM_TRIE` (created with `BPF_F_NO_PREALLOC`).
    LpmTrie = 11,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8+; no key or value, `max_entries` is the byte size).
    RingBuf = 27,
}

/// What a map must look like; user space checks pinned maps against this before reusing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name, also the pin file name.
    pub name: &'static str,
    /// Kernel map kind.
    pub kind: MapKind,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
}

const fn spec<K, V>(name: &'static str, kind: MapKind, max_entries: u32) -> MapSpec {
    assert!(name.len() <= NAME_MAX_LEN, "map name longer than 15 bytes");
    assert!(!name.is_empty());
    MapSpec {
        name,
        kind,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
    }
}

/// Every map of the datapath, in the order loaders create them.
pub const ALL: [MapSpec; 26] = [
    spec::<EndpointKey, EndpointValue>(ENDPOINTS, MapKind::Hash, ENDPOINTS_MAX),
    spec::<EndpointKey, EndpointMeta>(EP_META, MapKind::Hash, ENDPOINTS_MAX),
    spec::<u32, EndpointStats>(EP_STATS, MapKind::PerCpuHash, EP_STATS_MAX),
    spec::<u32, NetConfig>(CONFIG, MapKind::Array, CONFIG_MAX),
    spec::<u32, VerdictStats>(VERDICTS, MapKind::PerCpuArray, VERDICTS_MAX),
    spec::<DenyKey, u8>(DENY, MapKind::LpmTrie, DENY_MAX),
    spec::<CtKey, CtValue>(CT_OUT, MapKind::LruHash, CT_MAX),
    spec::<CtKey, CtValue>(CT_IN, MapKind::LruHash, CT_MAX),
    spec::<HostPortKey, HostPortValue>(HOSTPORTS, MapKind::Hash, HOSTPORTS_MAX),
    spec::<(), ()>(EVENTS, MapKind::RingBuf, crate::events::EVENTS_BYTES),
    spec::<FragKey, FragValue>(FRAG, MapKind::LruHash, FRAG_MAX),
    spec::<u32, EndpointKey>(EP_IFACES, MapKind::Hash, EP_IFACES_MAX),
    spec::<u32, UplinkValue>(UPLINKS, MapKind::Hash, UPLINKS_MAX),
    spec::<u32, u32>(NODE_ADDRS, MapKind::Hash, NODE_ADDRS_MAX),
    spec::<IfStatsKey, EndpointStats>(IF_STATS, MapKind::PerCpuHash, IF_STATS_MAX),
    spec::<u32, ClatValue>(CLAT, MapKind::Hash, CLAT_MAX),
    spec::<u32, crate::clat::ClatScratch>(CLAT_SCRATCH, MapKind::PerCpuArray, 1),
    spec::<Endpoint6Key, EndpointValue>(ENDPOINTS6, MapKind::Hash, ENDPOINTS_MAX),
    spec::<[u8; 16], u32>(NODE_ADDRS6, MapKind::Hash, NODE_ADDRS_MAX),
    spec::<u32, Uplink6Value>(UPLINKS6, MapKind::Hash, UPLINKS_MAX),
    spec::<Ct6Key, Ct6Value>(CT6_OUT, MapKind::LruHash, CT_MAX),
    spec::<Ct6Key, Ct6Value>(CT6_IN, MapKind::LruHash, CT_MAX),
    spec::<u32, u32>(TAILS, MapKind::ProgArray, TAILS_MAX),
    spec::<u32, Nat66Scratch>(NAT66_SCRATCH, MapKind::PerCpuArray, 1),
    spec::<Frag6Key, Frag6Value>(FRAG6, MapKind::LruHash, FRAG_MAX),
    spec::<HostPortKey, HostPort6Value>(HOSTPORTS6, MapKind::Hash, HOSTPORTS_MAX),
];

/// The [`MapSpec`] of the map called `name`, if it is one of [`ALL`].
#[must_use]
pub fn spec_of(name: &str) -> Option<&'static MapSpec> {
    ALL.iter().find(|spec| spec.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_short() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.name.len() <= NAME_MAX_LEN, "{}", a.name);
            assert!(
                a.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn specs_match_layouts() {
        let endpoints = spec_of(ENDPOINTS).unwrap();
        assert_eq!((endpoints.key_size, endpoints.value_size), (4, 16));
        let meta = spec_of(EP_META).unwrap();
        assert_eq!((meta.key_size, meta.value_size), (4, 288));
        let stats = spec_of(EP_STATS).unwrap();
        assert_eq!(
            (stats.key_size, stats.value_size, stats.kind),
            (4, 16, MapKind::PerCpuHash)
        );
        let config = spec_of(CONFIG).unwrap();
        assert_eq!(
            (config.key_size, config.value_size, config.max_entries),
            (4, 104, 1)
        );
        let ifaces = spec_of(EP_IFACES).unwrap();
        assert_eq!(
            (ifaces.key_size, ifaces.value_size, ifaces.kind),
            (4, 4, MapKind::Hash)
        );
        let eps6 = spec_of(ENDPOINTS6).unwrap();
        assert_eq!((eps6.key_size, eps6.value_size), (16, 16));
        let tails = spec_of(TAILS).unwrap();
        assert_eq!(
            (tails.key_size, tails.value_size, tails.kind),
            (4, 4, MapKind::ProgArray)
        );
        assert!(spec_of("nope").is_none());
    }
}
