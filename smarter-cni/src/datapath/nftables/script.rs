//! Pure nft script generation: table names, the per-network ruleset and the element batches.
//!
//! Everything here returns text for `nft -f -`; nothing runs a command, so all of it is
//! unit-tested without root.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

use super::config::NftablesConfig;
use super::error::NftablesError;
use super::hostports::{self, MAPS, MAPS6};
use super::l2::{self, SET_ENDPOINTS, SET_PORTS};
use super::traffic::{self, CHAIN_IN, Counted};
use crate::datapath::types::{HostPortSpec, PodLink};

/// Prefix of every table this datapath owns (`inet` and `bridge` families).
pub(super) const TABLE_PREFIX: &str = "smarter_";
/// Inet-family interval set of denied destinations.
pub(super) const SET_DENY: &str = "deny";
/// Named counters of the inet table.
pub(super) const INET_COUNTERS: [&str; 5] = [
    "drop_deny",
    "drop_nodelocal",
    "nat_masquerade",
    "drop_leak",
    "drop_ipv6",
];

/// The table name of `network` in both families: `smarter_<name>` with characters nft
/// identifiers cannot hold replaced by `_`, plus a short hash when anything was replaced (so
/// `a-b` and `a_b` do not share tables).
pub(super) fn table_name(network: &str) -> String {
    let clean: String = network
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == network {
        return format!("{TABLE_PREFIX}{clean}");
    }
    let digest = Sha256::digest(network.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{TABLE_PREFIX}{clean}_{hash}")
}

/// Refuses interface names the kernel would refuse or that could break out of a quoted string.
pub(super) fn check_ifname(name: &str) -> Result<(), NftablesError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes"
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '/' | '\\' | '*' | ':'))
    {
        "contains a character interface names cannot hold"
    } else {
        return Ok(());
    };
    Err(NftablesError::Invalid {
        what: "interface name",
        value: name.to_owned(),
        reason,
    })
}

pub(super) use crate::netlink::format_mac;

/// The whole ruleset of one network as one atomic batch. Tables, sets, maps and counters are
/// `add`ed (kept with their elements and values when they exist); the deny set and every chain
/// are flushed and refilled, so re-running it converges on `cfg` without a window where rules
/// are missing. With `cfg.v6` the same rules are written for the pods' IPv6 (masquerade of the
/// ULA subnet, node-local-only, the backstop, hostPorts on the node's IPv6 addresses, the
/// bridge table's ULA elements); without it the script is exactly the IPv4-only one.
///
/// # Errors
///
/// [`NftablesError::Invalid`] for interface names or a NAT port range that cannot be used.
pub(super) fn ensure_script(cfg: &NftablesConfig) -> Result<String, NftablesError> {
    check_ifname(&cfg.bridge)?;
    for uplink in &cfg.uplinks {
        check_ifname(uplink)?;
    }
    let (lo, hi) = cfg.nat_ports;
    if lo > hi || (lo == 0) != (hi == 0) {
        return Err(NftablesError::Invalid {
            what: "NAT port range",
            value: format!("{lo}-{hi}"),
            reason: "must be (0, 0) for any port or 1 <= low <= high",
        });
    }
    let t = table_name(&cfg.network);
    let br = &cfg.bridge;
    let net = format!("{}/{}", cfg.subnet.network(), cfg.subnet.prefix());
    let out = if cfg.uplinks.is_empty() {
        format!("oifname != \"{br}\"")
    } else {
        let names: Vec<String> = cfg.uplinks.iter().map(|u| format!("\"{u}\"")).collect();
        format!("oifname {{ {} }}", names.join(", "))
    };
    let net6 = cfg
        .v6
        .map(|v6| format!("{}/{}", v6.subnet.network(), v6.subnet.prefix()));
    let mut s = String::new();
    let mut w = |line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    // inet: deny, node-local-only, masquerade, hostPort.
    let i = format!("inet {t}");
    w(format!("add table {i}"));
    w(format!(
        "add set {i} {SET_DENY} {{ type ipv4_addr; flags interval; auto-merge; }}"
    ));
    w(format!("flush set {i} {SET_DENY}"));
    if !cfg.deny.is_empty() {
        let cidrs: Vec<String> = cfg
            .deny
            .iter()
            .map(|d| format!("{}/{}", d.network(), d.prefix()))
            .collect();
        w(format!(
            "add element {i} {SET_DENY} {{ {} }}",
            cidrs.join(", ")
        ));
    }
    for (map, _, by_addr) in MAPS {
        let key = if by_addr { "ipv4_addr . " } else { "" };
        w(format!(
            "add map {i} {map} {{ type {key}inet_service : ipv4_addr . inet_service; }}"
        ));
    }
    if net6.is_some() {
        for (map, _) in MAPS6 {
            w(format!(
                "add map {i} {map} {{ type inet_service : ipv6_addr . inet_service; }}"
            ));
        }
    }
    for line in traffic::set_lines(&i, net6.is_some()) {
        w(line);
    }
    for counter in INET_COUNTERS {
        w(format!("add counter {i} {counter}"));
    }
    let chain = |w: &mut dyn FnMut(String), name: &str, spec: &str, rules: &[String]| {
        w(format!("add chain {i} {name} {{ {spec}; policy accept; }}"));
        w(format!("flush chain {i} {name}"));
        for rule in rules {
            w(format!("add rule {i} {name} {rule}"));
        }
    };
    // hostPorts on the node's own addresses (a `hostIP` one only on its address).
    let (mut pre, mut local) = (
        hostports::dnat_rules("fib daddr type local"),
        hostports::dnat_rules("ip daddr != 127.0.0.0/8 fib daddr type local"),
    );
    if net6.is_some() {
        pre.extend(hostports::dnat_rules6("fib daddr type local"));
        local.extend(hostports::dnat_rules6(
            "ip6 daddr != ::1 fib daddr type local",
        ));
    }
    chain(
        &mut w,
        "prerouting",
        "type nat hook prerouting priority dstnat",
        &pre,
    );
    chain(
        &mut w,
        "output",
        "type nat hook output priority -100",
        &local,
    );
    let ports = if lo == 0 {
        String::new()
    } else {
        format!("meta l4proto {{ tcp, udp }} counter name nat_masquerade masquerade to :{lo}-{hi}")
    };
    let mut post = Vec::new();
    for (ip, net) in [("ip", Some(&net)), ("ip6", net6.as_ref())] {
        let Some(net) = net else { continue };
        post.push(format!(
            "{ip} saddr {net} {ip} daddr {net} oifname \"{br}\" ct status dnat masquerade"
        ));
        if !ports.is_empty() {
            post.push(format!("{ip} saddr {net} {out} {ports}"));
        }
        post.push(format!(
            "{ip} saddr {net} {out} counter name nat_masquerade masquerade"
        ));
    }
    chain(
        &mut w,
        "postrouting",
        "type nat hook postrouting priority srcnat",
        &post,
    );
    // The backstop, after the masquerade: nothing leaves the node with a pod-subnet source
    // (conntrack-invalid packets, which masquerade never rewrites, included). What passes
    // is counted per pod and interface.
    let mut backstop = vec![format!(
        "oifname != {{ \"{br}\", \"lo\" }} ip saddr {net} counter name drop_leak drop"
    )];
    if let Some(net6) = &net6 {
        backstop.push(format!(
            "oifname != {{ \"{br}\", \"lo\" }} ip6 saddr {net6} counter name drop_leak drop"
        ));
    }
    backstop.extend(traffic::out_rules(br, &net));
    if let Some(net6) = &net6 {
        backstop.extend(traffic::out_rules6(br, net6));
    }
    chain(
        &mut w,
        "backstop",
        "type filter hook postrouting priority 300",
        &backstop,
    );
    // Counted into a pod, then accepted (a regular chain, jumped to by forward).
    w(format!("add chain {i} {CHAIN_IN}"));
    w(format!("flush chain {i} {CHAIN_IN}"));
    for rule in traffic::in_chain_rules(net6.is_some()) {
        w(format!("add rule {i} {CHAIN_IN} {rule}"));
    }
    let mut forward = vec![
        // Without an IPv6 network nothing of the pods' IPv6 is routed off the node; with one,
        // only what comes from the pods' subnet (masqueraded, or dropped by the backstop).
        match &net6 {
            None => format!(
                "iifname \"{br}\" oifname != \"{br}\" meta nfproto ipv6 counter name drop_ipv6 drop"
            ),
            Some(net6) => format!(
                "iifname \"{br}\" oifname != \"{br}\" ip6 saddr != {net6} counter name drop_ipv6 drop"
            ),
        },
        format!("iifname \"{br}\" ip daddr @{SET_DENY} counter name drop_deny drop"),
    ];
    for (ip, net) in [("ip", Some(&net)), ("ip6", net6.as_ref())] {
        let Some(net) = net else { continue };
        let inbound = format!("iifname != \"{br}\" oifname \"{br}\" {ip} daddr {net}");
        forward.extend([
            format!("{inbound} ct status dnat goto {CHAIN_IN}"),
            format!("{inbound} ct state established,related goto {CHAIN_IN}"),
            format!("{inbound} counter name drop_nodelocal drop"),
        ]);
    }
    chain(
        &mut w,
        "forward",
        "type filter hook forward priority filter",
        &forward,
    );
    // bridge: what pods may send on the link.
    for line in l2::bridge_script(&t, net6.is_some()) {
        w(line);
    }
    Ok(s)
}

/// One endpoint's elements: its port, its `ifname . ip . mac` tuple and its link elements.
fn endpoint_elements(op: &str, t: &str, ep: &PodLink) -> String {
    let (ifname, ip, mac) = (&ep.host_ifname, ep.ip, format_mac(&ep.mac));
    format!(
        "{op} element bridge {t} {SET_PORTS} {{ \"{ifname}\" }}\n\
         {op} element bridge {t} {SET_ENDPOINTS} {{ \"{ifname}\" . {ip} . {mac} }}\n{}{}",
        l2::link_elements(op, t, ep),
        l2::endpoint6_element(op, t, ep)
    )
}

/// What the bridge table holds besides the endpoints: the `macs` elements present, as
/// [`l2::mac_key`] writes them (endpoints attached by a build before them have none).
pub(super) type LinkKeys = [(String, u64)];

/// Elements a batch deletes.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Doomed<'a> {
    /// Endpoints (with their ports and link elements).
    pub endpoints: &'a [PodLink],
    /// hostPorts with the pod address they lead to.
    pub ports: &'a [(HostPortSpec, Ipv4Addr)],
    /// IPv6 hostPorts with the pod address they lead to.
    pub ports6: &'a [(HostPortSpec, Ipv6Addr)],
    /// Traffic counters.
    pub traffic: &'a [Counted],
}

/// The batch that attaches `ep` with `ports`, first deleting the stale elements passed in
/// (endpoints sharing its address or interface, hostPorts of its address no longer wanted,
/// counters of an earlier holder of its address), and adding the link elements of endpoints
/// in `lacking` (attached before they existed).
///
/// # Errors
///
/// [`NftablesError::Invalid`] for a bad interface name or protocol.
pub(super) fn attach_script(
    t: &str,
    ep: &PodLink,
    ports: &[HostPortSpec],
    stale: Doomed<'_>,
    links: &LinkKeys,
    lacking: &[PodLink],
) -> Result<String, NftablesError> {
    check_ifname(&ep.host_ifname)?;
    let mut s = detach_script(t, stale, links)?;
    for old in lacking {
        s.push_str(&l2::link_elements("add", t, old));
    }
    s.push_str(&endpoint_elements("add", t, ep));
    for hp in ports {
        s.push_str(&hostports::element("add", t, hp, ep.ip)?);
        if let Some(ip6) = ep.ip6 {
            s.push_str(&hostports::element6("add", t, hp, ip6)?);
        }
    }
    Ok(s)
}

/// The batch deleting `doomed`: endpoints (their ports, their IPv6 elements, and their link
/// elements when `links` has them), hostPorts and traffic counters.
///
/// # Errors
///
/// [`NftablesError::Invalid`] for a bad protocol.
pub(super) fn detach_script(
    t: &str,
    doomed: Doomed<'_>,
    links: &LinkKeys,
) -> Result<String, NftablesError> {
    let mut s = String::new();
    let mut seen_ports: Vec<&str> = Vec::new();
    let mut seen_links = Vec::new();
    let mut seen6 = Vec::new();
    for ep in doomed.endpoints {
        if ep.ip6.is_some() && !seen6.contains(&(&ep.host_ifname, ep.ip6)) {
            s.push_str(&l2::endpoint6_element("delete", t, ep));
            seen6.push((&ep.host_ifname, ep.ip6));
        }
        let key = l2::mac_key(ep);
        if links.contains(&key) && !seen_links.contains(&key) {
            s.push_str(&l2::link_elements("delete", t, ep));
            seen_links.push(key);
        }
        let _ = writeln!(
            s,
            "delete element bridge {t} {SET_ENDPOINTS} {{ \"{}\" . {} . {} }}",
            ep.host_ifname,
            ep.ip,
            format_mac(&ep.mac)
        );
        if !seen_ports.contains(&ep.host_ifname.as_str()) {
            seen_ports.push(&ep.host_ifname);
        }
    }
    for ifname in seen_ports {
        let _ = writeln!(
            s,
            "delete element bridge {t} {SET_PORTS} {{ \"{ifname}\" }}"
        );
    }
    for (hp, ip) in doomed.ports {
        s.push_str(&hostports::element("delete", t, hp, *ip)?);
    }
    for (hp, ip6) in doomed.ports6 {
        s.push_str(&hostports::element6("delete", t, hp, *ip6)?);
    }
    s.push_str(&traffic::delete_script(t, doomed.traffic));
    Ok(s)
}

/// A throwaway table with a NAT chain, a counting dynamic set and a bridge chain, deleted in
/// the same batch: proves the kernel accepts what [`ensure_script`] needs without leaving
/// anything behind.
pub(super) fn probe_script(name: &str) -> String {
    format!(
        "add table inet {name}\n\
         add chain inet {name} post {{ type nat hook postrouting priority srcnat; }}\n\
         add rule inet {name} post fib daddr type local masquerade\n\
         add set inet {name} s {{ type ipv4_addr . ifname; flags dynamic; size 1; }}\n\
         add rule inet {name} post update @s {{ ct original ip saddr . oifname counter }}\n\
         add table bridge {name}\n\
         add chain bridge {name} pre {{ type filter hook prerouting priority -300; }}\n\
         delete table inet {name}\n\
         delete table bridge {name}\n"
    )
}
