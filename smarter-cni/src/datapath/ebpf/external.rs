//! The external interfaces in the eBPF datapath: on each one the ingress program
//! (`smarter_uplink`, or `smarter_l3_in` on a layer-3 device) and the egress backstop
//! (`smarter_egress` / `smarter_l3_out`), TCX links pinned at `links/in_<ifindex>` and
//! `links/out_<ifindex>` (netlink filters persist by themselves); the [`maps::UPLINKS`] entry
//! that lets pods leave by it, and the node's addresses in [`maps::NODE_ADDRS`].
//!
//! Order keeps every moment leak-free: an interface gets its backstop, then its ingress
//! program, and only then its `uplinks` entry (from which packets are NATed out of it); it
//! loses the entry first and its programs last.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use smarter_common::{
    IfStatsKey, UplinkValue,
    clat::CLAT_V4,
    maps, progs,
    uplink::{DIR_IN, UPLINK_F_CLAT, UPLINK_F_L3, UPLINK_F_NO_EGRESS},
};

use super::attach::{self, Hook};
use super::error::EbpfError;
use super::handle::{EbpfDatapath, addr};
use crate::datapath::types::{AttachMode, PodTraffic, TrafficDir};
use crate::datapath::uplink::{External, Uplink};

/// The ingress and egress programs for a device of this kind.
pub(super) fn programs(l3: bool) -> (&'static str, &'static str) {
    if l3 {
        (progs::L3_IN, progs::L3_OUT)
    } else {
        (progs::UPLINK, progs::EGRESS)
    }
}

pub(super) fn in_pin(ifindex: u32) -> String {
    format!("in_{ifindex}")
}

pub(super) fn out_pin(ifindex: u32) -> String {
    format!("out_{ifindex}")
}

/// The name of `ifindex` in the calling thread's namespace, if it exists.
fn name_of(ifindex: u32) -> Option<String> {
    nix::net::if_::if_indextoname(ifindex)
        .ok()
        .and_then(|n| n.into_string().ok())
}

/// One external interface as the datapath records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkEntry {
    /// Interface index.
    pub ifindex: u32,
    /// Its name now (`None` when it is gone).
    pub name: Option<String>,
    /// The address pods are masqueraded to through it (unspecified: none).
    pub addr: Ipv4Addr,
    /// Layer 3 (no Ethernet header).
    pub l3: bool,
    /// MTU as recorded.
    pub mtu: u32,
    /// Pods may start flows out of it (`uplink` selects it); else only replies of flows that
    /// came in by it leave by it.
    pub egress: bool,
}

impl EbpfDatapath {
    /// Makes the datapath serve exactly `ext`: programs on every interface of it, its
    /// `uplinks` entries (flagged where pods may not start flows), the node's addresses; interfaces no longer in it lose their entry and
    /// programs. The config record's uplink fields name the default route's uplink (shown by
    /// status). Idempotent.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be written; [`EbpfError::Program`],
    /// [`EbpfError::Tc`] or [`EbpfError::Pin`] when attaching fails.
    pub fn set_external(&self, ext: &External, mode: AttachMode) -> Result<(), EbpfError> {
        let recorded = self.uplink_values()?;
        let wanted: BTreeSet<u32> = ext.uplinks.iter().map(|u| u.ifindex).collect();
        for (ifindex, value) in &recorded {
            // Gone from the selection, or the ifindex now names a device of the other kind
            // (its programs are swapped below).
            let same_kind = ext
                .uplinks
                .iter()
                .any(|u| u.ifindex == *ifindex && u.l3 == value.is_l3());
            if !wanted.contains(ifindex) || !same_kind {
                self.forget_uplink(*ifindex, value.is_l3())?;
            }
        }
        let clat = ext.clat.as_ref();
        if clat.is_none() {
            // Pods' IPv4 stops being translated before the CLAT's entries go.
            self.update_config(|c| c.clat_ifindex = 0)?;
        }
        self.add_clat(clat)?;
        for up in &ext.uplinks {
            let clat_here = clat.is_some_and(|c| c.ifindex == up.ifindex);
            self.serve_uplink(up, clat_here, mode)?;
        }
        let mut node_addrs = ext.node_addrs.clone();
        if let Some(c) = clat {
            // Replies the CLAT translated are for this address: the reverse NAT takes them.
            node_addrs.push((Ipv4Addr::from(CLAT_V4.to_ne_bytes()), c.ifindex));
        }
        self.set_node_addrs(&node_addrs)?;
        self.set_external6(ext)?;
        let preferred = ext.preferred();
        self.update_config(|c| {
            c.uplink_ifindex = preferred.map_or(0, |u| u.ifindex);
            c.uplink_addr = preferred.map_or(0, |u| addr(u.addr));
            c.clat_ifindex = clat.map_or(0, |c| c.ifindex);
        })?;
        self.prune_clat(clat)
    }

    /// Backstop, ingress program, then the `uplinks` entry of one interface (`clat`: pods'
    /// IPv4 leaves it by the CLAT, NATed to [`CLAT_V4`]).
    fn serve_uplink(&self, up: &Uplink, clat: bool, mode: AttachMode) -> Result<(), EbpfError> {
        super::pins::validate_ifname(&up.name)?;
        let found = attach::ifindex(&up.name)?;
        if found != up.ifindex {
            return Err(EbpfError::IfindexMismatch {
                name: up.name.clone(),
                expected: up.ifindex,
                found,
            });
        }
        let (ingress, egress) = programs(up.l3);
        let mut prog = self.program(egress)?;
        let pin = self.pins.link(&out_pin(up.ifindex));
        attach::attach(&mut prog, Hook::egress(&up.name, egress), mode, &pin)?;
        let mut prog = self.program(ingress)?;
        let pin = self.pins.link(&in_pin(up.ifindex));
        attach::attach(&mut prog, Hook::ingress(&up.name, ingress), mode, &pin)?;
        // Not selected: pods may not start flows out of it (replies of hostPort flows on its
        // address leave by it; the programs guard it).
        let mut flags = if up.l3 { UPLINK_F_L3 } else { 0 };
        if !up.selected {
            flags |= UPLINK_F_NO_EGRESS;
        }
        if clat {
            flags |= UPLINK_F_CLAT;
        }
        let value = UplinkValue {
            addr: if clat { CLAT_V4 } else { addr(up.addr) },
            flags,
            mtu: up.mtu,
            pad: 0,
        };
        let mut m = self.lock_maps();
        if m.uplinks.get(&up.ifindex, 0).ok() != Some(value) {
            m.uplinks
                .insert(up.ifindex, value, 0)
                .map_err(|e| EbpfError::map(maps::UPLINKS, "write", e))?;
            tracing::info!("eBPF datapath: pods leave by {up}");
        }
        Ok(())
    }

    /// Removes one interface's `uplinks` entry, then its programs (when it still exists).
    fn forget_uplink(&self, ifindex: u32, l3: bool) -> Result<(), EbpfError> {
        {
            let mut m = self.lock_maps();
            match m.uplinks.remove(&ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(EbpfError::map(maps::UPLINKS, "remove", e)),
            }
        }
        let name = name_of(ifindex).unwrap_or_default();
        let (ingress, egress) = programs(l3);
        // An empty name (the interface is gone, with its filters) resolves to nothing: only the
        // pins are removed.
        attach::detach(
            Hook::ingress(&name, ingress),
            &self.pins.link(&in_pin(ifindex)),
        )?;
        attach::detach(
            Hook::egress(&name, egress),
            &self.pins.link(&out_pin(ifindex)),
        )?;
        tracing::info!("eBPF datapath: pods no longer leave by ifindex {ifindex} ({name})");
        Ok(())
    }

    /// Detaches every external interface's programs and clears [`maps::UPLINKS`],
    /// [`maps::UPLINKS6`] and [`maps::NODE_ADDRS6`] (and the CLAT, its address included).
    ///
    /// # Errors
    ///
    /// As [`Self::set_external`].
    pub fn detach_external(&self) -> Result<(), EbpfError> {
        self.update_config(|c| c.clat_ifindex = 0)?;
        self.set_external6(&External::default())?;
        self.prune_clat(None)?;
        for (ifindex, value) in self.uplink_values()? {
            self.forget_uplink(ifindex, value.is_l3())?;
        }
        Ok(())
    }

    /// Replaces [`maps::NODE_ADDRS`] with `addrs`: new ones first, stale ones after.
    fn set_node_addrs(&self, addrs: &[(Ipv4Addr, u32)]) -> Result<(), EbpfError> {
        let mut m = self.lock_maps();
        let wanted: BTreeMap<u32, u32> = addrs.iter().map(|(a, i)| (addr(*a), *i)).collect();
        for (a, i) in &wanted {
            if m.node_addrs.get(a, 0).ok() != Some(*i) {
                m.node_addrs
                    .insert(a, i, 0)
                    .map_err(|e| EbpfError::map(maps::NODE_ADDRS, "write", e))?;
            }
        }
        let stale: Vec<u32> = m
            .node_addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|a| !wanted.contains_key(a))
            .collect();
        for a in stale {
            match m.node_addrs.remove(&a) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(EbpfError::map(maps::NODE_ADDRS, "remove", e)),
            }
        }
        Ok(())
    }

    fn uplink_values(&self) -> Result<Vec<(u32, UplinkValue)>, EbpfError> {
        let m = self.lock_maps();
        m.uplinks
            .iter()
            .map(|r| r.map_err(|e| EbpfError::map(maps::UPLINKS, "read", e)))
            .collect()
    }

    /// The external interfaces the datapath serves, in ifindex order.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn uplinks(&self) -> Result<Vec<UplinkEntry>, EbpfError> {
        let mut out: Vec<UplinkEntry> = self
            .uplink_values()?
            .into_iter()
            .map(|(ifindex, v)| UplinkEntry {
                ifindex,
                name: name_of(ifindex),
                addr: Ipv4Addr::from(v.addr.to_ne_bytes()),
                l3: v.is_l3(),
                mtu: v.mtu,
                egress: v.is_egress(),
            })
            .collect();
        out.sort_by_key(|u| u.ifindex);
        Ok(out)
    }

    /// The node's addresses as the datapath knows them, with the ifindex holding each.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the map cannot be read.
    pub fn node_addrs(&self) -> Result<Vec<(Ipv4Addr, u32)>, EbpfError> {
        let m = self.lock_maps();
        let mut out = Vec::new();
        for r in m.node_addrs.iter() {
            let (a, i) = r.map_err(|e| EbpfError::map(maps::NODE_ADDRS, "read", e))?;
            out.push((Ipv4Addr::from(a.to_ne_bytes()), i));
        }
        out.sort();
        Ok(out)
    }

    /// Re-attaches every external interface's programs to the programs pinned now (after an
    /// upgrade swapped them): TCX links new-first, netlink filters in place. How many
    /// attachments were renewed.
    pub(super) fn renew_external(&self) -> Result<usize, EbpfError> {
        let mut renewed = 0;
        for up in self.uplinks()? {
            let Some(name) = up.name else { continue };
            let (ingress, egress) = programs(up.l3);
            let mut prog = self.program(egress)?;
            let pin = self.pins.link(&out_pin(up.ifindex));
            if attach::replace(&mut prog, Hook::egress(&name, egress), &pin, false)? {
                renewed += 1;
            }
            let mut prog = self.program(ingress)?;
            let pin = self.pins.link(&in_pin(up.ifindex));
            attach::replace(&mut prog, Hook::ingress(&name, ingress), &pin, true)?;
            renewed += 1;
        }
        Ok(renewed)
    }

    /// What each pod sent and received through each external interface, summed over CPUs.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the counters cannot be read.
    pub fn pod_traffic(&self) -> Result<Vec<PodTraffic>, EbpfError> {
        let m = self.lock_maps();
        let mut out = Vec::new();
        for r in m.if_stats.iter() {
            let (k, per_cpu) = r.map_err(|e| EbpfError::map(maps::IF_STATS, "read", e))?;
            let (packets, bytes) = per_cpu
                .iter()
                .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
            out.push(PodTraffic {
                pod: Ipv4Addr::from(k.pod.to_ne_bytes()),
                ifindex: k.ifindex,
                ifname: name_of(k.ifindex),
                dir: if k.dir == DIR_IN {
                    TrafficDir::In
                } else {
                    TrafficDir::Out
                },
                packets,
                bytes,
            });
        }
        out.sort_by_key(|t| (t.pod, t.ifindex, t.dir));
        Ok(out)
    }

    /// Removes the per-interface counters of the pods `doomed` picks; how many entries went.
    pub(super) fn forget_pod_traffic(
        &self,
        doomed: impl Fn(Ipv4Addr) -> bool,
    ) -> Result<usize, EbpfError> {
        let mut m = self.lock_maps();
        let keys: Vec<IfStatsKey> = m
            .if_stats
            .keys()
            .filter_map(Result::ok)
            .filter(|k| doomed(Ipv4Addr::from(k.pod.to_ne_bytes())))
            .collect();
        for k in &keys {
            match m.if_stats.remove(k) {
                Err(e) if !super::error::is_absent(&e) => {
                    return Err(EbpfError::map(maps::IF_STATS, "remove", e));
                }
                _ => {}
            }
        }
        Ok(keys.len())
    }
}
