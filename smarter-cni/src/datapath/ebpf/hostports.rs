//! hostPorts: `portMappings` as entries of the `hostports` map (DNAT on every node address, or
//! on its `hostIP` only, by the external interfaces' ingress programs and, hairpinned, by
//! `smarter_pod`; replies reverse-DNATed by `smarter_pod` through conntrack). A dual-stack
//! pod's mappings without `hostIP` answer on every node IPv6 address too: entries of
//! `hostports6` ([`EbpfDatapath::set_host_ports6`]), owned by the pod's IPv4 address like the
//! IPv4 ones (removed with them).

use std::net::{Ipv4Addr, Ipv6Addr};

use smarter_common::{EndpointKey, HostPortKey, HostPortValue, maps, v6::HostPort6Value};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::handle::addr;
use crate::datapath::types::HostPortSpec;

fn proto_name(p: u8) -> &'static str {
    smarter_common::ct::proto::name(p).unwrap_or("?")
}

fn hp_key(p: &HostPortSpec) -> HostPortKey {
    HostPortKey {
        port: p.host_port.to_be(),
        proto: p.protocol,
        pad: 0,
        host_ip: p.host_ip.map_or(0, addr),
    }
}

impl EbpfDatapath {
    /// Maps `ports` to `pod_ip`, all or nothing. Ports this pod already holds are rewritten;
    /// ports it held before but are not in `ports` are kept (call [`Self::remove_host_ports`]
    /// first to replace the set).
    ///
    /// # Errors
    ///
    /// [`EbpfError::InvalidHostPort`] for a protocol other than 6/17 or port 0 (nothing is
    /// written), [`EbpfError::HostPortTaken`] when a port is mapped to another pod (nothing is
    /// written), [`EbpfError::Map`] when a write fails (entries written so far are removed).
    pub fn set_host_ports(
        &self,
        pod_ip: Ipv4Addr,
        ports: &[HostPortSpec],
    ) -> Result<(), EbpfError> {
        let pod = addr(pod_ip);
        let mut maps_guard = self.lock_maps();
        for p in ports {
            if !matches!(p.protocol, 6 | 17) || p.host_port == 0 || p.container_port == 0 {
                return Err(EbpfError::InvalidHostPort {
                    port: p.host_port,
                    protocol: p.protocol,
                    reason: "protocol must be 6 (tcp) or 17 (udp) and ports non-zero",
                });
            }
            // A mapping answering the same flows (same port on every address, or on the same
            // one) held by a live endpoint is refused. One held by an address with no
            // endpoint has no owner (its pod is gone): garbage, taken over.
            let wanted = hp_key(p);
            let held = maps_guard
                .hostports
                .iter()
                .filter_map(Result::ok)
                .find(|(k, v)| {
                    k.overlaps(&wanted)
                        && v.pod_ip != pod
                        && maps_guard
                            .endpoints
                            .get(&EndpointKey { addr: v.pod_ip }, 0)
                            .is_ok()
                });
            if let Some((_, held)) = held {
                return Err(EbpfError::HostPortTaken {
                    port: p.host_port,
                    protocol: proto_name(p.protocol),
                    holder: Ipv4Addr::from(held.pod_ip.to_ne_bytes()),
                });
            }
        }
        // Ownerless mappings these ports overlap go (an exact key is simply overwritten).
        let stale: Vec<HostPortKey> = maps_guard
            .hostports
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| v.pod_ip != pod && ports.iter().any(|p| k.overlaps(&hp_key(p))))
            .map(|(k, _)| k)
            .collect();
        for k in &stale {
            let _ = maps_guard.hostports.remove(k);
        }
        let mut written = Vec::new();
        for p in ports {
            let value = HostPortValue {
                pod_ip: pod,
                pod_port: p.container_port.to_be(),
                pad: 0,
            };
            if let Err(e) = maps_guard.hostports.insert(hp_key(p), value, 0) {
                for k in &written {
                    let _ = maps_guard.hostports.remove(k);
                }
                return Err(EbpfError::map(maps::HOSTPORTS, "write", e));
            }
            written.push(hp_key(p));
        }
        Ok(())
    }

    /// The IPv6 half of [`Self::set_host_ports`] (call it after): every mapping of `ports`
    /// without `hostIP` also answers on the node's IPv6 addresses, leading to `pod_ip6` (the
    /// pod's IPv4 address `pod_ip` owns the entries). Mappings with a `hostIP` (IPv4 only) are
    /// not written.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a write fails (entries written so far are removed).
    pub fn set_host_ports6(
        &self,
        pod_ip: Ipv4Addr,
        pod_ip6: Ipv6Addr,
        ports: &[HostPortSpec],
    ) -> Result<(), EbpfError> {
        let mut maps_guard = self.lock_maps();
        let mut written = Vec::new();
        for p in ports.iter().filter(|p| p.host_ip.is_none()) {
            let value = HostPort6Value {
                addr: pod_ip6.octets(),
                pod_ip: addr(pod_ip),
                pod_port: p.container_port.to_be(),
                pad: 0,
            };
            if let Err(e) = maps_guard.hostports6.insert(hp_key(p), value, 0) {
                for k in &written {
                    let _ = maps_guard.hostports6.remove(k);
                }
                return Err(EbpfError::map(maps::HOSTPORTS6, "write", e));
            }
            written.push(hp_key(p));
        }
        Ok(())
    }

    /// Removes the IPv6 hostPorts whose owner (IPv4 address) `owner` accepts; returns how many.
    fn remove_host_ports6(
        maps_guard: &mut super::handle::Maps,
        owner: impl Fn(u32) -> bool,
    ) -> Result<usize, EbpfError> {
        let mut doomed: Vec<HostPortKey> = maps_guard
            .hostports6
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| owner(v.pod_ip))
            .map(|(k, _)| k)
            .collect();
        doomed.sort_by_key(|k| (k.proto, k.port));
        doomed.dedup_by_key(|k| (k.proto, k.port));
        for k in &doomed {
            match maps_guard.hostports6.remove(k) {
                Err(e) if !super::error::is_absent(&e) => {
                    return Err(EbpfError::map(maps::HOSTPORTS6, "remove", e));
                }
                _ => {}
            }
        }
        Ok(doomed.len())
    }

    /// Removes every hostPort of `pod_ip`; returns how many. Success (0) when it has none.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read or an entry cannot be removed.
    pub fn remove_host_ports(&self, pod_ip: Ipv4Addr) -> Result<usize, EbpfError> {
        let pod = addr(pod_ip);
        let mut maps_guard = self.lock_maps();
        let mut doomed: Vec<HostPortKey> = maps_guard
            .hostports
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.pod_ip == pod)
            .map(|(k, _)| k)
            .collect();
        Self::remove_host_ports6(&mut maps_guard, |owner| owner == pod)?;
        // Another process writing the map meanwhile can make the iteration repeat keys.
        doomed.sort_by_key(|k| (k.proto, k.port, k.host_ip));
        doomed.dedup_by_key(|k| (k.proto, k.port, k.host_ip));
        for k in &doomed {
            match maps_guard.hostports.remove(k) {
                Err(e) if !super::error::is_absent(&e) => {
                    return Err(EbpfError::map(maps::HOSTPORTS, "remove", e));
                }
                _ => {}
            }
        }
        Ok(doomed.len())
    }

    /// Removes the hostPorts whose pod address has no endpoint (their owner is gone, e.g. a
    /// DEL killed between its steps) and returns how many. Call it under the network lock:
    /// an ADD writes its endpoint before its hostPorts.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read or an entry cannot be removed.
    pub fn remove_ownerless_host_ports(&self) -> Result<usize, EbpfError> {
        let mut maps_guard = self.lock_maps();
        let doomed: Vec<HostPortKey> = maps_guard
            .hostports
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| {
                maps_guard
                    .endpoints
                    .get(&EndpointKey { addr: v.pod_ip }, 0)
                    .is_err()
            })
            .map(|(k, _)| k)
            .collect();
        let endpoints = &maps_guard.endpoints;
        let gone: Vec<u32> = maps_guard
            .hostports6
            .iter()
            .filter_map(Result::ok)
            .map(|(_, v)| v.pod_ip)
            .filter(|ip| endpoints.get(&EndpointKey { addr: *ip }, 0).is_err())
            .collect();
        Self::remove_host_ports6(&mut maps_guard, |owner| gone.contains(&owner))?;
        for k in &doomed {
            tracing::info!(
                port = u16::from_be(k.port),
                "removing a hostPort with no owner"
            );
            match maps_guard.hostports.remove(k) {
                Err(e) if !super::error::is_absent(&e) => {
                    return Err(EbpfError::map(maps::HOSTPORTS, "remove", e));
                }
                _ => {}
            }
        }
        Ok(doomed.len())
    }

    /// Every hostPort mapping with the pod it leads to.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn host_ports(&self) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, EbpfError> {
        let maps_guard = self.lock_maps();
        let mut out = Vec::new();
        for entry in maps_guard.hostports.iter() {
            let (k, v) = entry.map_err(|e| EbpfError::map(maps::HOSTPORTS, "read", e))?;
            let spec = HostPortSpec {
                host_port: u16::from_be(k.port),
                container_port: u16::from_be(v.pod_port),
                protocol: k.proto,
                host_ip: (k.host_ip != 0).then(|| Ipv4Addr::from(k.host_ip.to_ne_bytes())),
            };
            out.push((spec, Ipv4Addr::from(v.pod_ip.to_ne_bytes())));
        }
        out.sort_by_key(|(s, _)| (s.protocol, s.host_port));
        Ok(out)
    }

    /// Every IPv6 hostPort mapping (on every node IPv6 address) with the pod ULA it leads to.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn host_ports6(&self) -> Result<Vec<(HostPortSpec, Ipv6Addr)>, EbpfError> {
        let maps_guard = self.lock_maps();
        let mut out = Vec::new();
        for entry in maps_guard.hostports6.iter() {
            let (k, v) = entry.map_err(|e| EbpfError::map(maps::HOSTPORTS6, "read", e))?;
            let spec = HostPortSpec {
                host_port: u16::from_be(k.port),
                container_port: u16::from_be(v.pod_port),
                protocol: k.proto,
                host_ip: None,
            };
            out.push((spec, Ipv6Addr::from(v.addr)));
        }
        out.sort_by_key(|(s, _)| (s.protocol, s.host_port));
        Ok(out)
    }
}
