//! The bridge table: what a pod may send on the link, the nftables side of the pod program's
//! anti-spoofing and RA guard (the rules' constants are `smarter_common::link`'s).
//!
//! Every frame from a pod port is checked: IPv4 and ARP against the `endpoints` set (address
//! and MAC, also the frame's source MAC), ICMP redirects and router advertisements dropped;
//! any other ethertype but IPv6 (and every VLAN-tagged frame) dropped; IPv6 only with the
//! port's MAC (`macs`), from `::` or a link-local address, never a router advertisement,
//! redirect, DHCPv6 server message or fragment, and neighbour discovery only claiming the
//! pod's own link-local address (`link_locals`, derived from its MAC) and MAC. In a dual-stack
//! network (`v6`) a pod may also send from, and claim in neighbour discovery, its own ULA
//! (`endpoints6`).

use smarter_common::link::{
    DHCPV6_CLIENT_PORT, ICMP_REDIRECT, ICMP_ROUTER_ADVERT, ICMPV6_NEIGHBOUR_ADVERT,
    ICMPV6_NEIGHBOUR_SOLICIT, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERT, ICMPV6_ROUTER_SOLICIT,
    ND_MAX_OPTION_BYTES, ND_OPT_SOURCE_LINK_ADDR, ND_OPT_TARGET_LINK_ADDR, ND_OPTION_SLOTS,
    link_local_of, nd_fixed_len, nexthdr,
};

use crate::datapath::types::PodLink;

/// Bridge-family set of pod ports (host veth names) whose frames are checked.
pub(super) const SET_PORTS: &str = "ports";
/// Bridge-family set of `ifname . ipv4_addr . ether_addr` the pods may send from.
pub(super) const SET_ENDPOINTS: &str = "endpoints";
/// Bridge-family set of `ifname . MAC` (48-bit integers, so link-layer options in neighbour
/// discovery can be looked up too): the source MAC of a port's IPv6.
pub(super) const SET_MACS: &str = "macs";
/// Bridge-family set of `ifname . link-local address` (128-bit integers, so neighbour
/// discovery target addresses can be looked up too): the one address a port's neighbour
/// discovery may claim.
pub(super) const SET_LINK_LOCALS: &str = "link_locals";
/// Bridge-family set of `ifname . IPv6 address` (128-bit integers, as [`SET_LINK_LOCALS`]):
/// the pod's own ULA in a dual-stack network, the one global-scope source its IPv6 may carry
/// and the one address besides its link-local one its neighbour discovery may claim.
pub(super) const SET_ENDPOINTS6: &str = "endpoints6";
/// Named counters of the bridge table.
pub(super) const BRIDGE_COUNTERS: [&str; 6] = [
    "drop_spoof_ip",
    "drop_spoof_arp",
    "drop_spoof_l2",
    "drop_spoof_ip6",
    "drop_ra_guard",
    "drop_ethertype",
];

/// The bridge table's sets, counters and its one chain (flushed and refilled), for table
/// `t`, one command per line; with `v6` (a dual-stack network) also the set
/// [`SET_ENDPOINTS6`] and the rules letting a pod use its own ULA.
pub(super) fn bridge_script(t: &str, v6: bool) -> Vec<String> {
    let b = format!("bridge {t}");
    let mut out = vec![
        format!("add table {b}"),
        format!("add set {b} {SET_PORTS} {{ type ifname; }}"),
        format!("add set {b} {SET_ENDPOINTS} {{ type ifname . ipv4_addr . ether_addr; }}"),
        format!("add set {b} {SET_MACS} {{ typeof iifname . @ll,48,48; }}"),
        format!("add set {b} {SET_LINK_LOCALS} {{ typeof iifname . @nh,64,128; }}"),
    ];
    if v6 {
        out.push(format!(
            "add set {b} {SET_ENDPOINTS6} {{ typeof iifname . @nh,64,128; }}"
        ));
    }
    out.extend(
        BRIDGE_COUNTERS
            .iter()
            .map(|c| format!("add counter {b} {c}")),
    );
    out.push(format!(
        "add chain {b} prerouting {{ type filter hook prerouting priority -300; policy accept; }}"
    ));
    out.push(format!("flush chain {b} prerouting"));
    out.extend(
        prerouting_rules(v6)
            .into_iter()
            .map(|r| format!("add rule {b} prerouting {r}")),
    );
    out
}

/// The rules of the bridge table's prerouting chain, in order (`v6`: a pod may also use its
/// own ULA, from [`SET_ENDPOINTS6`]).
fn prerouting_rules(v6: bool) -> Vec<String> {
    let drop = |counter: &str| format!("counter name {counter} drop");
    let (rs, ns, na) = (
        ICMPV6_ROUTER_SOLICIT,
        ICMPV6_NEIGHBOUR_SOLICIT,
        ICMPV6_NEIGHBOUR_ADVERT,
    );
    let nd = format!("icmpv6 type {{ {rs}, {ns}, {na} }}");
    // An address the pod may claim at `at` (`nh,64` its source, `th,64` an NDP target): its
    // link-local one, or (dual-stack) its ULA.
    let not_own = |at: &str| {
        let ll = format!("iifname . @{at},128 != @{SET_LINK_LOCALS}");
        if v6 {
            format!("{ll} iifname . @{at},128 != @{SET_ENDPOINTS6}")
        } else {
            ll
        }
    };
    let ula = if v6 {
        format!(" iifname . @nh,64,128 != @{SET_ENDPOINTS6}")
    } else {
        String::new()
    };
    let mut rules = vec![
        format!("iifname != @{SET_PORTS} accept"),
        // IPv4: the endpoint's address and MAC; no router messages.
        format!(
            "ether type ip iifname . ip saddr . ether saddr != @{SET_ENDPOINTS} {}",
            drop("drop_spoof_ip")
        ),
        // Only a first fragment (or a whole datagram) holds the ICMP header: in the bridge
        // family `icmp type` would read a later fragment's payload.
        format!(
            "ip frag-off & 0x1fff 0 icmp type {{ {ICMP_REDIRECT}, {ICMP_ROUTER_ADVERT} }} {}",
            drop("drop_ra_guard")
        ),
        "ether type ip accept".to_owned(),
        // ARP: sender address and MAC, and the frame's MAC, are the endpoint's.
        format!(
            "ether type arp iifname . arp saddr ip . arp saddr ether != @{SET_ENDPOINTS} {}",
            drop("drop_spoof_arp")
        ),
        format!(
            "ether type arp iifname . arp saddr ip . ether saddr != @{SET_ENDPOINTS} {}",
            drop("drop_spoof_arp")
        ),
        "ether type arp accept".to_owned(),
        // Pods have no use for other ethertypes (VLAN tags show as 8100 here).
        format!("ether type != ip6 {}", drop("drop_ethertype")),
        // IPv6: the port's MAC, from `::` or link-local (or, dual-stack, the pod's own ULA).
        format!(
            "iifname . @ll,48,48 != @{SET_MACS} {}",
            drop("drop_spoof_l2")
        ),
        format!(
            "ip6 saddr != {{ ::, fe80::/10 }}{ula} {}",
            drop("drop_spoof_ip6")
        ),
        // The RA guard: router messages and what could hide one.
        // A router message comes from a link-local source to a link-local or multicast
        // destination (RFC 4861), so only fragments that could be one are dropped: a pod's
        // fragmented datagrams from its ULA to a routed destination go on.
        format!(
            "ip6 saddr {{ ::, fe80::/10 }} exthdr frag exists {}",
            drop("drop_ra_guard")
        ),
        format!(
            "ip6 daddr {{ fe80::/10, ff00::/8 }} exthdr frag exists {}",
            drop("drop_ra_guard")
        ),
        format!(
            "icmpv6 type {{ {ICMPV6_ROUTER_ADVERT}, {ICMPV6_REDIRECT} }} {}",
            drop("drop_ra_guard")
        ),
        format!("udp dport {DHCPV6_CLIENT_PORT} {}", drop("drop_ra_guard")),
        // Neighbour discovery: right after the IPv6 header, from `::` or the pod's own
        // link-local address (or ULA), advertising (or probing from `::`) only that address.
        // By number: a protocol name would need /etc/protocols, which minimal nodes lack.
        format!(
            "{nd} ip6 nexthdr != {} {}",
            nexthdr::ICMPV6,
            drop("drop_spoof_ip6")
        ),
        format!(
            "{nd} ip6 saddr != :: {} {}",
            not_own("nh,64"),
            drop("drop_spoof_ip6")
        ),
        format!(
            "icmpv6 type {na} {} {}",
            not_own("th,64"),
            drop("drop_spoof_ip6")
        ),
        format!(
            "icmpv6 type {ns} ip6 saddr :: {} {}",
            not_own("th,64"),
            drop("drop_spoof_ip6")
        ),
    ];
    // At most two 8-byte options, and a link-layer address option carries the port's MAC.
    let (src_opt, dst_opt) = (ND_OPT_SOURCE_LINK_ADDR, ND_OPT_TARGET_LINK_ADDR);
    for (types, kind) in [(format!("{rs}"), rs), (format!("{{ {ns}, {na} }}"), ns)] {
        let fixed = nd_fixed_len(kind).unwrap_or_default();
        rules.push(format!(
            "icmpv6 type {types} ip6 length > {} {}",
            fixed + ND_MAX_OPTION_BYTES,
            drop("drop_spoof_ip6")
        ));
        for slot in ND_OPTION_SLOTS {
            let bit = (fixed + slot) * 8;
            rules.push(format!(
                "icmpv6 type {types} @th,{bit},8 {{ {src_opt}, {dst_opt} }} iifname . @th,{},48 != @{SET_MACS} {}",
                bit + 16,
                drop("drop_spoof_ip6")
            ));
        }
    }
    rules
}

/// The `macs` and `link_locals` elements of `ep` (`op` is `add` or `delete`).
pub(super) fn link_elements(op: &str, t: &str, ep: &PodLink) -> String {
    let ifname = &ep.host_ifname;
    let mac: String = ep.mac.iter().map(|b| format!("{b:02x}")).collect();
    let ll: String = link_local_of(ep.mac)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{op} element bridge {t} {SET_MACS} {{ \"{ifname}\" . 0x{mac} }}\n\
         {op} element bridge {t} {SET_LINK_LOCALS} {{ \"{ifname}\" . 0x{ll} }}\n"
    )
}

/// The [`SET_ENDPOINTS6`] element of `ep` (`op` is `add` or `delete`); empty without an IPv6
/// address.
pub(super) fn endpoint6_element(op: &str, t: &str, ep: &PodLink) -> String {
    ep.ip6.map_or_else(String::new, |ip6| {
        format!(
            "{op} element bridge {t} {SET_ENDPOINTS6} {{ \"{}\" . 0x{:032x} }}\n",
            ep.host_ifname,
            u128::from(ip6)
        )
    })
}

/// The `macs` element of `ep` as [`super::parse::link_macs`] reads it back.
pub(super) fn mac_key(ep: &PodLink) -> (String, u64) {
    let mut n = 0u64;
    for b in ep.mac {
        n = n << 8 | u64::from(b);
    }
    (ep.host_ifname.clone(), n)
}
