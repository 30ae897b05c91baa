//! Node-namespace preparation shared by both datapaths: forwarding, and reserving the NAT
//! port range so the node's own sockets never pick a port the NAT hands out.
//!
//! The plugin runs inside the node's network namespace; `/proc/sys/net` is that
//! namespace's view, so nothing here reaches any other namespace.

use std::fs;

use crate::cni::{CniError, PortRange};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// Enables IPv4 forwarding, lets the bridge accept the eBPF datapath's translated replies to
/// the node's own hostPort connections (their source is the node's address:
/// `accept_local`), and reserves `nat` in `ip_local_reserved_ports` (merged with what is
/// already reserved). Idempotent: writes only when something changes.
///
/// # Errors
/// An I/O CNI error naming the sysctl.
pub fn prepare(bridge: &str, nat: PortRange) -> Result<(), CniError> {
    write_if_changed(IP_FORWARD, "1")?;
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
