//! The IPv6 half of a dual-stack network in the eBPF datapath: a pod's IPv6 (ULA) endpoint
//! ([`maps::ENDPOINTS6`]) beside its IPv4 one, forwarding on its host veth (the NAT66 route
//! lookup is made as if the packet came in there, and an IPv6 FIB lookup needs forwarding on
//! its input device), its NAT66 conntrack, and the external side's IPv6 addresses
//! ([`maps::UPLINKS6`], [`maps::NODE_ADDRS6`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use aya::maps::MapError;
use smarter_common::{
    EndpointValue, maps,
    v6::{Ct6Key, Endpoint6Key, Uplink6Value},
};

use super::error::EbpfError;
use super::error::is_absent;
use super::handle::EbpfDatapath;
use crate::datapath::types::CtEntryView;
use crate::datapath::uplink::External;

/// `Ok(None)` for an absent key.
fn found<V>(
    got: Result<V, MapError>,
    map: &'static str,
    what: &str,
) -> Result<Option<V>, EbpfError> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(EbpfError::map(map, format!("read {what}"), e)),
    }
}

/// A removal that treats "already gone" as success.
fn removed(r: Result<(), MapError>, map: &'static str, what: &str) -> Result<(), EbpfError> {
    match r {
        Err(e) if !is_absent(&e) => Err(EbpfError::map(map, format!("remove {what}"), e)),
        _ => Ok(()),
    }
}

/// Sets `net.ipv6.conf.<ifname>.forwarding` to 1 in the calling thread's namespace (the node's):
/// the NAT66 route lookup of a pod's packet is made from its host veth. Only that interface:
/// `all.forwarding` would make the node drop the default routes it learns from router
/// advertisements.
///
/// # Errors
///
/// [`EbpfError::Io`] when the sysctl cannot be written.
pub(super) fn enable_forwarding6(ifname: &str) -> Result<(), EbpfError> {
    super::pins::validate_ifname(ifname)?;
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        _ => std::fs::write(&path, "1")
            .map_err(|e| EbpfError::io("enable IPv6 forwarding", &path, e)),
    }
}

impl EbpfDatapath {
    /// The IPv6 endpoint at `ip6`, if any.
    pub(super) fn endpoint6(&self, ip6: Ipv6Addr) -> Result<Option<EndpointValue>, EbpfError> {
        let m = self.lock_maps();
        let key = Endpoint6Key { addr: ip6.octets() };
        found(
            m.endpoints6.get(&key, 0),
            maps::ENDPOINTS6,
            &ip6.to_string(),
        )
    }

    /// For CHECK: one sentence per difference between the IPv6 endpoint at `ip6` and host veth
    /// `ifindex` with `mac`; empty when consistent.
    pub(super) fn check_endpoint6(
        &self,
        ip6: Ipv6Addr,
        ifindex: u32,
        mac: [u8; 6],
    ) -> Result<Vec<String>, EbpfError> {
        Ok(match self.endpoint6(ip6)? {
            None => vec![format!(
                "endpoint {ip6} is missing from map {}",
                maps::ENDPOINTS6
            )],
            Some(v) if v.ifindex != ifindex || v.mac != mac => vec![format!(
                "endpoint {ip6} has ifindex {} and MAC {}, expected {ifindex} and {}",
                v.ifindex,
                crate::netlink::format_mac(&v.mac),
                crate::netlink::format_mac(&mac)
            )],
            Some(_) => Vec::new(),
        })
    }

    /// Writes (`Some`) or removes (`None`) the IPv6 endpoint at `ip6`.
    pub(super) fn write_endpoint6(
        &self,
        ip6: Ipv6Addr,
        value: Option<EndpointValue>,
    ) -> Result<(), EbpfError> {
        let mut m = self.lock_maps();
        let key = Endpoint6Key { addr: ip6.octets() };
        match value {
            Some(v) => m
                .endpoints6
                .insert(key, v, 0)
                .map_err(|e| EbpfError::map(maps::ENDPOINTS6, format!("write {ip6}"), e)),
            None => removed(
                m.endpoints6.remove(&key),
                maps::ENDPOINTS6,
                &ip6.to_string(),
            ),
        }
    }

    /// Removes the IPv6 endpoints that lead to host veth `ifindex` (a pod's, at DEL; or, at
    /// ADD, those a veth that had this ifindex before left behind: all but `keep`) and their
    /// NAT66 conntrack entries; entries leading to other interfaces (another pod holding the
    /// address now) stay. Returns the addresses removed.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub(super) fn remove_endpoints6_of(
        &self,
        ifindex: u32,
        keep: Option<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>, EbpfError> {
        let kept = keep.map(|k| k.octets());
        let doomed: Vec<Endpoint6Key> = {
            let m = self.lock_maps();
            m.endpoints6
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, v)| v.ifindex == ifindex && Some(k.addr) != kept)
                .map(|(k, _)| k)
                .collect()
        };
        let mut gone = Vec::with_capacity(doomed.len());
        for key in doomed {
            let ip6 = Ipv6Addr::from(key.addr);
            self.write_endpoint6(ip6, None)?;
            self.ct6_flush_pod(ip6)?;
            gone.push(ip6);
        }
        Ok(gone)
    }

    /// Removes the IPv6 endpoints whose host veth has no IPv4 endpoint, with their NAT66 flows,
    /// and returns how many. Every dual-stack pod has both, written IPv4 first under the
    /// network lock and removed together at DEL, so such an entry has no owner (a DEL killed
    /// between its steps); left alone it would deliver its address's traffic into whatever
    /// veth gets that ifindex next. Call it under the network lock.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn remove_ownerless_endpoints6(&self) -> Result<usize, EbpfError> {
        let orphans: BTreeSet<u32> = {
            let m = self.lock_maps();
            let owners: BTreeSet<u32> = m
                .endpoints
                .iter()
                .filter_map(Result::ok)
                .map(|(_, v)| v.ifindex)
                .collect();
            m.endpoints6
                .iter()
                .filter_map(Result::ok)
                .map(|(_, v)| v.ifindex)
                .filter(|i| !owners.contains(i))
                .collect()
        };
        let mut removed = 0;
        for ifindex in orphans {
            let gone = self.remove_endpoints6_of(ifindex, None)?;
            tracing::info!(ifindex, ?gone, "removed IPv6 endpoints with no owner");
            removed += gone.len();
        }
        Ok(removed)
    }

    /// Every NAT66 flow (pod-side entries), decoded.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the conntrack map cannot be read.
    pub fn ct6_entries(&self) -> Result<Vec<CtEntryView<Ipv6Addr>>, EbpfError> {
        let now = super::ct::ktime_now();
        let m = self.lock_maps();
        let mut out = Vec::new();
        for entry in m.ct6_out.iter() {
            let (k, v) = entry.map_err(|e| EbpfError::map(maps::CT6_OUT, "read", e))?;
            out.push(CtEntryView {
                proto: k.proto,
                pod_ip: k.a.into(),
                pod_port: u16::from_be(k.a_port),
                remote_ip: k.b.into(),
                remote_port: u16::from_be(k.b_port),
                nat_ip: v.addr.into(),
                nat_port: u16::from_be(v.port),
                state: super::ct::state_name(v.state),
                age: std::time::Duration::from_nanos(now.saturating_sub(v.last_seen)),
            });
        }
        Ok(out)
    }

    /// Removes the NAT66 flows (both sides) `doomed` picks by (protocol, pod address, pod
    /// port, remote address, remote port); returns how many. For operators' careful flushes
    /// (`smarter-bpfctl ct flush`).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn ct6_remove(
        &self,
        doomed: impl Fn(u8, Ipv6Addr, u16, Ipv6Addr, u16) -> bool,
    ) -> Result<usize, EbpfError> {
        let mut m = self.lock_maps();
        let out: Vec<(Ct6Key, u16)> = m
            .ct6_out
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| {
                doomed(
                    k.proto,
                    k.a.into(),
                    u16::from_be(k.a_port),
                    k.b.into(),
                    u16::from_be(k.b_port),
                )
            })
            .map(|(k, v)| (k, v.port))
            .collect();
        for (k, port) in &out {
            removed(
                m.ct6_in.remove(&k.to_wire_side(*port)),
                maps::CT6_IN,
                "flow",
            )?;
            removed(m.ct6_out.remove(k), maps::CT6_OUT, "flow")?;
        }
        Ok(out.len())
    }

    /// Removes the NAT66 conntrack entries of pod `ip6` (both sides). Returns how many flows.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn ct6_flush_pod(&self, ip6: Ipv6Addr) -> Result<usize, EbpfError> {
        let flows = self.ct6_remove(|_, pod, _, _, _| pod == ip6)?;
        let a = ip6.octets();
        let mut m = self.lock_maps();
        let orphans: Vec<Ct6Key> = m
            .ct6_in
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.addr == a)
            .map(|(k, _)| k)
            .collect();
        for k in &orphans {
            removed(m.ct6_in.remove(k), maps::CT6_IN, "flow")?;
        }
        Ok(flows)
    }

    /// Removes NAT66 flows idle for longer than their timeout (`slots`, as
    /// [`smarter_common::ct::expired`] takes them, at `now`), in both maps. Returns how many
    /// flows (pod-side entries) were removed.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub(super) fn ct6_gc(&self, slots: &[u32; 4], now: u64) -> Result<usize, EbpfError> {
        let expired = |proto: u8, v: &smarter_common::v6::Ct6Value| {
            smarter_common::ct::expired(slots, proto, v.state, v.last_seen, now)
        };
        let mut m = self.lock_maps();
        let out: Vec<(Ct6Key, u16)> = m
            .ct6_out
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| expired(k.proto, v))
            .map(|(k, v)| (k, v.port))
            .collect();
        for (k, port) in &out {
            removed(
                m.ct6_in.remove(&k.to_wire_side(*port)),
                maps::CT6_IN,
                "flow",
            )?;
            removed(m.ct6_out.remove(k), maps::CT6_OUT, "flow")?;
        }
        // Reverse entries whose forward entry the LRU evicted.
        let orphans: Vec<Ct6Key> = m
            .ct6_in
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| expired(k.proto, v))
            .map(|(k, _)| k)
            .collect();
        for k in &orphans {
            removed(m.ct6_in.remove(k), maps::CT6_IN, "flow")?;
        }
        Ok(out.len())
    }

    /// Replaces [`maps::UPLINKS6`] with the NAT66 addresses of `ext`'s selected interfaces and
    /// [`maps::NODE_ADDRS6`] with its node addresses: new entries first, stale ones after.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be written.
    pub(super) fn set_external6(&self, ext: &External) -> Result<(), EbpfError> {
        let selected = |ifindex: &u32| {
            ext.uplinks
                .iter()
                .any(|u| u.ifindex == *ifindex && u.selected)
        };
        let uplinks: BTreeMap<u32, [u8; 16]> = ext
            .uplinks6
            .iter()
            .filter(|(i, _)| selected(i))
            .map(|(i, a)| (*i, a.octets()))
            .collect();
        let addrs: BTreeMap<[u8; 16], u32> = ext
            .node_addrs6
            .iter()
            .map(|(a, i)| (a.octets(), *i))
            .collect();
        let mut m = self.lock_maps();
        for (i, a) in &uplinks {
            let value = Uplink6Value { addr: *a };
            if m.uplinks6.get(i, 0).ok() != Some(value) {
                m.uplinks6
                    .insert(i, value, 0)
                    .map_err(|e| EbpfError::map(maps::UPLINKS6, "write", e))?;
                tracing::info!(
                    "eBPF datapath: pods' IPv6 leaves ifindex {i} as {}",
                    Ipv6Addr::from(*a)
                );
            }
        }
        let stale: Vec<u32> = m
            .uplinks6
            .keys()
            .filter_map(Result::ok)
            .filter(|i| !uplinks.contains_key(i))
            .collect();
        for i in stale {
            removed(m.uplinks6.remove(&i), maps::UPLINKS6, "uplink")?;
        }
        for (a, i) in &addrs {
            if m.node_addrs6.get(a, 0).ok() != Some(*i) {
                m.node_addrs6
                    .insert(a, i, 0)
                    .map_err(|e| EbpfError::map(maps::NODE_ADDRS6, "write", e))?;
            }
        }
        let stale: Vec<[u8; 16]> = m
            .node_addrs6
            .keys()
            .filter_map(Result::ok)
            .filter(|a| !addrs.contains_key(a))
            .collect();
        for a in stale {
            removed(m.node_addrs6.remove(&a), maps::NODE_ADDRS6, "address")?;
        }
        Ok(())
    }

    /// The NAT66 address of each external interface ([`maps::UPLINKS6`]), by ifindex.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn uplinks6(&self) -> Result<Vec<(u32, Ipv6Addr)>, EbpfError> {
        let m = self.lock_maps();
        let mut all = Vec::new();
        for r in m.uplinks6.iter() {
            let (i, v) = r.map_err(|e| EbpfError::map(maps::UPLINKS6, "list", e))?;
            all.push((i, Ipv6Addr::from(v.addr)));
        }
        all.sort_unstable();
        Ok(all)
    }
}
