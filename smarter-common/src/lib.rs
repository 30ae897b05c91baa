//! Types, map names and constants shared by the smarter-cni eBPF programs (`smarter-ebpf`,
//! `no_std`, built for `bpfel-unknown-none`) and user space (`smarter-cni`, feature `user`).
//!
//! This crate is the single definition of the datapath's ABI:
//! - [`maps`]: map names (also their pin file names), kinds, sizes and capacities;
//! - [`endpoint`]: the per-pod map layouts (endpoint, operator metadata, counters);
//! - [`config`]: the per-network configuration record;
//! - [`verdict`]: per-verdict counters and the deny-list key;
//! - [`events`]: drop and trace events; [`icmp`]: the ICMP types NAT treats by name;
//! - [`uplink`]: the external interfaces, the node's addresses and per-pod traffic through
//!   each interface;
//! - [`clat`]: the IPv4-over-IPv6-only-uplink translator's map value and ICMP mapping;
//! - [`link`]: what a pod may say on the link (its link-local address, neighbour discovery,
//!   the router messages the RA guard drops), for the pod program and the nftables rules.
//!
//! Every `#[repr(C)]` type has explicit padding fields and a compile-time size assert, so the
//! kernel and user space can never disagree silently. Changing any layout, name, kind or capacity
//! requires bumping [`LAYOUT_VERSION`]: pins live under `<bpffs>/<network>/v<LAYOUT_VERSION>/`, so
//! a new layout never reuses maps pinned by an older one.
#![no_std]

pub mod clat;
pub mod config;
pub mod ct;
pub mod endpoint;
pub mod events;
pub mod icmp;
pub mod link;
pub mod maps;
pub mod nat_port;
pub mod uplink;
pub mod v6;
pub mod verdict;

pub use clat::ClatValue;
pub use config::NetConfig;
pub use ct::{CtKey, CtTimeouts, CtValue, FragKey, FragValue, HostPortKey, HostPortValue};
pub use endpoint::{EndpointKey, EndpointMeta, EndpointStats, EndpointValue};
pub use events::Event;
pub use uplink::{IfStatsKey, UplinkValue};
pub use verdict::{DenyKey, Verdict, VerdictStats};

/// Version of the map layouts defined in this crate (names, kinds, key/value layouts, capacities).
///
/// Part of the pin directory name, `<bpffs>/<network>/v<LAYOUT_VERSION>/`. Version 5 added
/// [`maps::EP_IFACES`] (the source MAC of every frame a pod sends is checked); version 6 the
/// external interfaces ([`maps::UPLINKS`], [`maps::NODE_ADDRS`], [`maps::IF_STATS`]) and the
/// hostPort's host IP ([`HostPortKey::host_ip`]); version 7 the CLAT ([`maps::CLAT`],
/// [`NetConfig::clat_ifindex`]); version 8 dual-stack pods (the IPv6 endpoint, node address,
/// uplink address, NAT66 conntrack and tail-call maps, [`v6`], and [`NetConfig::subnet6`]); version 9
/// IPv6 fragments and hostPorts ([`maps::FRAG6`], [`maps::HOSTPORTS6`]).
pub const LAYOUT_VERSION: u32 = 9;

/// Program names (ELF symbol names, also pin file names under `progs/`), each at most 15 bytes
/// (`BPF_OBJ_NAME_LEN - 1`, the kernel truncates longer names).
pub mod progs {
    /// TC classifier on the host-side veth's ingress: packets leaving a pod.
    pub const POD: &str = "smarter_pod";
    /// TC classifier on an Ethernet external interface's ingress: packets arriving from
    /// outside.
    pub const UPLINK: &str = "smarter_uplink";
    /// [`UPLINK`] for a layer-3 external interface (no Ethernet header).
    pub const L3_IN: &str = "smarter_l3_in";
    /// TC classifier on the node's loopback ingress: the node's own connections to a hostPort.
    pub const LOCAL: &str = "smarter_local";
    /// TC classifier on the uplink's egress: the backstop that drops anything about to leave
    /// with a pod's address.
    pub const EGRESS: &str = "smarter_egress";
    /// [`EGRESS`] for a layer-3 external interface (no Ethernet header).
    pub const L3_OUT: &str = "smarter_l3_out";

    /// IPv6 from a pod: tail-called by [`POD`] (slot [`crate::v6::TAIL_POD6`]), never
    /// attached.
    pub const POD6: &str = "smarter_pod6";
    /// IPv6 arriving on an Ethernet external interface (reverse NAT66): tail-called by
    /// [`UPLINK`] (slot [`crate::v6::TAIL_UPLINK6`]), never attached.
    pub const UPLINK6: &str = "smarter_uplink6";

    /// NAT66 of a pod's IPv6 to the outside: tail-called by [`POD6`] (slot
    /// [`crate::v6::TAIL_NAT66`]), never attached.
    pub const NAT66: &str = "smarter_nat66";

    /// An ICMPv6 error about a NAT66 flow, translated back into the pod: tail-called by
    /// [`UPLINK6`] (slot [`crate::v6::TAIL_ICMP6`]), never attached.
    pub const ICMP6_IN: &str = "smarter_icmp6in";

    /// The node's own IPv6 connections to a hostPort: tail-called by [`LOCAL`] (slot
    /// [`crate::v6::TAIL_LOCAL6`]), never attached.
    pub const LOCAL6: &str = "smarter_local6";

    /// A pod's IPv6 TCP, UDP or fragment to another pod or a node address (hostPorts,
    /// hairpin): tail-called by [`POD6`] (slot [`crate::v6::TAIL_HP6`]), never attached.
    pub const HP6: &str = "smarter_hp6";

    /// A pod's IPv4 with no IPv4 route, NATed to the CLAT's address and redirected to the
    /// IPv6-only uplink: tail-called by [`POD`] (slot [`crate::clat::TAIL_POD_CLAT`]), never
    /// attached.
    pub const POD_CLAT: &str = "smarter_podclat";

    /// Every program of the object, for loaders and tests.
    pub const ALL: [&str; 13] = [
        POD, UPLINK, LOCAL, EGRESS, L3_IN, L3_OUT, POD6, UPLINK6, NAT66, ICMP6_IN, LOCAL6, HP6,
        POD_CLAT,
    ];

    /// The tail-called programs and their [`crate::maps::TAILS`] slots.
    pub const TAILS: [(&str, u32); 7] = [
        (POD6, crate::v6::TAIL_POD6),
        (UPLINK6, crate::v6::TAIL_UPLINK6),
        (NAT66, crate::v6::TAIL_NAT66),
        (ICMP6_IN, crate::v6::TAIL_ICMP6),
        (LOCAL6, crate::v6::TAIL_LOCAL6),
        (HP6, crate::v6::TAIL_HP6),
        (POD_CLAT, crate::clat::TAIL_POD_CLAT),
    ];

    const _: () = {
        let mut i = 0;
        while i < ALL.len() {
            assert!(ALL[i].len() <= crate::maps::NAME_MAX_LEN);
            i += 1;
        }
        // Every slot fits the program array as it is (a bigger one is a layout change).
        let mut i = 0;
        while i < TAILS.len() {
            assert!(TAILS[i].1 < crate::v6::TAILS_MAX);
            i += 1;
        }
    };
}

/// Implements `aya::Pod` for the map types (user space only).
#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers and byte arrays, have
    // explicit padding fields (no implicit padding bytes, see the size asserts) and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for crate::EndpointKey {}
    unsafe impl aya::Pod for crate::EndpointValue {}
    unsafe impl aya::Pod for crate::EndpointMeta {}
    unsafe impl aya::Pod for crate::EndpointStats {}
    unsafe impl aya::Pod for crate::NetConfig {}
    unsafe impl aya::Pod for crate::VerdictStats {}
    unsafe impl aya::Pod for crate::DenyKey {}
    unsafe impl aya::Pod for crate::CtKey {}
    unsafe impl aya::Pod for crate::CtValue {}
    unsafe impl aya::Pod for crate::HostPortKey {}
    unsafe impl aya::Pod for crate::HostPortValue {}
    unsafe impl aya::Pod for crate::FragKey {}
    unsafe impl aya::Pod for crate::FragValue {}
    unsafe impl aya::Pod for crate::UplinkValue {}
    unsafe impl aya::Pod for crate::IfStatsKey {}
    unsafe impl aya::Pod for crate::ClatValue {}
    unsafe impl aya::Pod for crate::v6::Endpoint6Key {}
    unsafe impl aya::Pod for crate::v6::Uplink6Value {}
    unsafe impl aya::Pod for crate::v6::Ct6Key {}
    unsafe impl aya::Pod for crate::v6::Ct6Value {}
    unsafe impl aya::Pod for crate::v6::Nat66Scratch {}
    unsafe impl aya::Pod for crate::v6::HostPort6Value {}
    unsafe impl aya::Pod for crate::v6::Frag6Key {}
    unsafe impl aya::Pod for crate::v6::Frag6Value {}
}
