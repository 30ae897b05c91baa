//! hostPorts in the inet table: which map a mapping lives in, its element, and who may hold it.
//!
//! A mapping without `hostIP` is an element of `hostport_<proto>` (`port : pod ip . pod port`),
//! DNATed on every local address; one with `hostIP` is an element of `hostip_<proto>`
//! (`address . port : pod ip . pod port`), DNATed only for that destination address. Two
//! mappings of one protocol and port conflict when either answers on every address or both
//! on the same one (as the Kubernetes scheduler counts hostPort conflicts).
//!
//! In a dual-stack network a mapping without `hostIP` of a pod with an IPv6 address is also an
//! element of `hostport6_<proto>` (`port : pod ip6 . pod port`), DNATed on every local IPv6
//! address; `hostIP` is IPv4 only. Conflicts are decided by the IPv4 maps (every IPv6 element
//! has its IPv4 twin).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::NftablesError;
use crate::datapath::types::HostPortSpec;

/// Inet-family maps `port : pod ip . pod port` (every node address).
pub(super) const MAP_TCP: &str = "hostport_tcp";
/// See [`MAP_TCP`].
pub(super) const MAP_UDP: &str = "hostport_udp";
/// Inet-family maps `node address . port : pod ip . pod port` (`hostIP`).
pub(super) const MAP_IP_TCP: &str = "hostip_tcp";
/// See [`MAP_IP_TCP`].
pub(super) const MAP_IP_UDP: &str = "hostip_udp";

/// The four maps: name, protocol number, keyed by address; in the order the nat chains look
/// them up (the two kinds never both hold a port of one address, see [`check`]).
pub(super) const MAPS: [(&str, u8, bool); 4] = [
    (MAP_IP_TCP, 6, true),
    (MAP_IP_UDP, 17, true),
    (MAP_TCP, 6, false),
    (MAP_UDP, 17, false),
];

/// Inet-family maps `port : pod ip6 . pod port` (every node IPv6 address), dual-stack only.
pub(super) const MAP6_TCP: &str = "hostport6_tcp";
/// See [`MAP6_TCP`].
pub(super) const MAP6_UDP: &str = "hostport6_udp";

/// The IPv6 maps: name, protocol number.
pub(super) const MAPS6: [(&str, u8); 2] = [(MAP6_TCP, 6), (MAP6_UDP, 17)];

/// `tcp` or `udp` for IP protocol numbers 6 and 17.
///
/// # Errors
///
/// [`NftablesError::Invalid`] for any other protocol.
pub(super) fn proto_name(protocol: u8) -> Result<&'static str, NftablesError> {
    match smarter_common::ct::proto::name(protocol) {
        Some(name @ ("tcp" | "udp")) => Ok(name),
        _ => Err(NftablesError::Invalid {
            what: "hostPort protocol",
            value: protocol.to_string(),
            reason: "only 6 (tcp) and 17 (udp) are supported",
        }),
    }
}

/// The map holding `hp`.
///
/// # Errors
///
/// As [`proto_name`].
pub(super) fn map_of(hp: &HostPortSpec) -> Result<&'static str, NftablesError> {
    let tcp = proto_name(hp.protocol)? == "tcp";
    Ok(match (hp.host_ip.is_some(), tcp) {
        (false, true) => MAP_TCP,
        (false, false) => MAP_UDP,
        (true, true) => MAP_IP_TCP,
        (true, false) => MAP_IP_UDP,
    })
}

/// The `add` or `delete` element of `hp` leading to pod address `ip`, one line.
///
/// # Errors
///
/// As [`proto_name`].
pub(super) fn element(
    op: &str,
    t: &str,
    hp: &HostPortSpec,
    ip: Ipv4Addr,
) -> Result<String, NftablesError> {
    let map = map_of(hp)?;
    let key = match hp.host_ip {
        Some(addr) => format!("{addr} . {}", hp.host_port),
        None => hp.host_port.to_string(),
    };
    Ok(format!(
        "{op} element inet {t} {map} {{ {key} : {ip} . {} }}\n",
        hp.container_port
    ))
}

/// The `add` or `delete` element of `hp` in its IPv6 map, leading to pod address `ip6`, one
/// line; empty for a `hostIP` mapping (IPv4 only).
///
/// # Errors
///
/// As [`proto_name`].
pub(super) fn element6(
    op: &str,
    t: &str,
    hp: &HostPortSpec,
    ip6: Ipv6Addr,
) -> Result<String, NftablesError> {
    let map = if proto_name(hp.protocol)? == "tcp" {
        MAP6_TCP
    } else {
        MAP6_UDP
    };
    if hp.host_ip.is_some() {
        return Ok(String::new());
    }
    Ok(format!(
        "{op} element inet {t} {map} {{ {} : {ip6} . {} }}\n",
        hp.host_port, hp.container_port
    ))
}

/// `hp` as it is stored: a `hostIP` of `0.0.0.0` means every address (as an absent one).
#[must_use]
pub(super) fn normalized(hp: &HostPortSpec) -> HostPortSpec {
    HostPortSpec {
        host_ip: hp.host_ip.filter(|a| !a.is_unspecified()),
        ..*hp
    }
}

/// Whether two mappings claim the same packets: one protocol and port, and every address on
/// either side or the same address on both.
#[must_use]
pub(super) fn overlap(a: &HostPortSpec, b: &HostPortSpec) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && match (a.host_ip, b.host_ip) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// Checks that `wanted` (normalized) can be mapped to `pod`: no two of them overlap, and none
/// overlaps a mapping of another pod in `mapped`.
///
/// # Errors
///
/// [`NftablesError::Invalid`] for a bad protocol or two overlapping mappings in `wanted`,
/// [`NftablesError::HostPortTaken`] naming the holder of an overlapping mapping.
pub(super) fn check(
    pod: Ipv4Addr,
    wanted: &[HostPortSpec],
    mapped: &[(HostPortSpec, Ipv4Addr)],
) -> Result<(), NftablesError> {
    for (i, hp) in wanted.iter().enumerate() {
        let proto = proto_name(hp.protocol)?;
        if wanted[..i].iter().any(|o| overlap(o, hp)) {
            return Err(NftablesError::Invalid {
                what: "hostPort list",
                value: format!("{proto}/{}", hp.host_port),
                reason: "the same host port appears twice on one address",
            });
        }
        if let Some((m, ip)) = mapped.iter().find(|(m, ip)| *ip != pod && overlap(m, hp)) {
            return Err(NftablesError::HostPortTaken {
                protocol: proto,
                port: hp.host_port,
                owner: format!("{ip}:{}", m.container_port),
            });
        }
    }
    Ok(())
}

/// The DNAT rules of a nat chain, one per map (in [`MAPS`] order), each starting with
/// `guard` (the chain's leading matches).
pub(super) fn dnat_rules(guard: &str) -> Vec<String> {
    MAPS.iter()
        .map(|&(map, proto, by_addr)| {
            let proto = if proto == 6 { "tcp" } else { "udp" };
            let addr = if by_addr { "ip daddr . " } else { "" };
            format!("{guard} dnat ip to {addr}{proto} dport map @{map}")
        })
        .collect()
}

/// The IPv6 DNAT rules of a nat chain, one per map (in [`MAPS6`] order), each starting with
/// `guard`.
pub(super) fn dnat_rules6(guard: &str) -> Vec<String> {
    MAPS6
        .iter()
        .map(|&(map, proto)| {
            let proto = if proto == 6 { "tcp" } else { "udp" };
            format!("{guard} dnat ip6 to {proto} dport map @{map}")
        })
        .collect()
}

#[cfg(test)]
#[path = "hostports_tests.rs"]
mod tests;
