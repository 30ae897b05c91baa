//! Node-namespace preparation shared by both datapaths: forwarding, reserving the NAT port
//! range so the node's own sockets never pick a port the NAT hands out, and the sysctls that
//! keep the node from taking configuration from pods on the bridge and every host veth
//! ([`guard_interface`], checked by [`guard_drift`]).
//!
//! The plugin runs inside the node's network namespace; `/proc/sys/net` is that
//! namespace's view, so nothing here reaches any other namespace.

use std::fs;

use crate::cni::{CniError, PortRange};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// The per-interface sysctls (family, name, value) that keep the node from listening to pods:
/// no router advertisements or redirects taken (IPv6 and IPv4), no redirects sent (IPv4; the
/// kernel sends them when `all` or the interface says so). The datapaths drop a pod's router
/// messages anyway; these hold before any program or rule is in place.
pub const GUARD_SYSCTLS: [(&str, &str, &str); 4] = [
    ("ipv6", "accept_ra", "0"),
    ("ipv6", "accept_redirects", "0"),
    ("ipv4", "accept_redirects", "0"),
    ("ipv4", "send_redirects", "0"),
];

fn guard_path(family: &str, ifname: &str, name: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{ifname}/{name}")
}

/// Whether the node namespace has IPv6 at all (a kernel booted with `ipv6.disable=1` has no
/// `/proc/sys/net/ipv6`: nothing to guard there).
fn has_ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// Sets [`GUARD_SYSCTLS`] on `ifname` (the bridge, or a host veth as soon as it exists).
/// Idempotent: writes only what differs.
///
/// # Errors
/// An I/O CNI error naming the sysctl.
pub fn guard_interface(ifname: &str) -> Result<(), CniError> {
    for (family, name, value) in GUARD_SYSCTLS {
        if family == "ipv6" && !has_ipv6() {
            continue;
        }
        write_if_changed(&guard_path(family, ifname, name), value)?;
    }
    Ok(())
}

/// How `ifname`'s sysctls differ from [`GUARD_SYSCTLS`], one sentence each (empty: as set).
/// An interface that does not exist has no drift here (its absence is reported elsewhere).
#[must_use]
pub fn guard_drift(ifname: &str) -> Vec<String> {
    GUARD_SYSCTLS
        .iter()
        .filter_map(|&(family, name, want)| {
            let found = fs::read_to_string(guard_path(family, ifname, name)).ok()?;
            let found = found.trim();
            (found != want)
                .then(|| format!("net.{family}.conf.{ifname}.{name} is {found}, not {want}"))
        })
        .collect()
}

/// Enables IPv4 forwarding, lets the bridge accept the eBPF datapath's translated replies to
/// the node's own hostPort connections (their source is the node's address:
/// `accept_local`), sets [`GUARD_SYSCTLS`] on the bridge, and reserves `nat` in
/// `ip_local_reserved_ports` (merged with what is already reserved). Idempotent: writes only
/// when something changes.
///
/// # Errors
/// An I/O CNI error naming the sysctl.
pub fn prepare(bridge: &str, nat: PortRange) -> Result<(), CniError> {
    write_if_changed(IP_FORWARD, "1")?;
    guard_interface(bridge)?;
    write_if_changed(
        &format!("/proc/sys/net/ipv4/conf/{bridge}/accept_local"),
        "1",
    )?;
    let current = fs::read_to_string(RESERVED_PORTS).unwrap_or_default();
    let merged = merge_reserved(&current, nat.start, nat.end);
    write_if_changed(RESERVED_PORTS, &merged)
}

fn write_if_changed(path: &str, value: &str) -> Result<(), CniError> {
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(path, value).map_err(|e| {
        CniError::new(
            CniError::IO,
            format!("cannot set {path} to {value}: {e}"),
            "sysctl",
        )
    })
}

/// Merges `start-end` into a reserved-ports list (`"a,b-c"` as the kernel prints it),
/// returning the kernel's syntax with overlapping or adjacent ranges joined.
#[must_use]
pub fn merge_reserved(current: &str, start: u16, end: u16) -> String {
    let mut ranges: Vec<(u16, u16)> = current
        .trim()
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            if part.is_empty() {
                return None;
            }
            match part.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => part.parse().ok().map(|p| (p, p)),
            }
        })
        .collect();
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::merge_reserved;

    #[test]
    fn merges_into_existing_reservations() {
        assert_eq!(merge_reserved("", 61000, 64999), "61000-64999");
        assert_eq!(merge_reserved("\n", 61000, 64999), "61000-64999");
        assert_eq!(
            merge_reserved("8080,9000-9100", 61000, 64999),
            "8080,9000-9100,61000-64999"
        );
        assert_eq!(merge_reserved("61000-64999", 61000, 64999), "61000-64999");
        assert_eq!(
            merge_reserved("60000-61500,65000", 61000, 64999),
            "60000-65000"
        );
    }
}
