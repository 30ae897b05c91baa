//! Conntrack of the eBPF SNAT: decoding for operators, garbage collection by age, and flushing a
//! deleted pod's flows. The kernel only refreshes `last_seen`; user space expires entries.

use crate::datapath::types::CtEntryView;
use std::{net::Ipv4Addr, time::Duration};

use smarter_common::{
    CtKey, CtValue,
    ct::{self, CT_CLOSING, CT_ESTABLISHED, CT_NEW, CT_RESET, CT_SYN},
    maps,
};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::handle::addr;
use smarter_common::CtTimeouts;

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a.to_ne_bytes())
}

pub(super) fn state_name(s: u8) -> &'static str {
    match s {
        CT_NEW => "new",
        CT_SYN => "syn",
        CT_ESTABLISHED => "established",
        CT_CLOSING => "closing",
        CT_RESET => "reset",
        _ => "unknown",
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub(super) fn ktime_now() -> u64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

impl EbpfDatapath {
    /// Every NATed flow (pod-side conntrack entries), decoded.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the conntrack map cannot be read.
    pub fn ct_entries(&self) -> Result<Vec<CtEntryView>, EbpfError> {
        let now = ktime_now();
        let maps_guard = self.lock_maps();
        let mut out = Vec::new();
        for entry in maps_guard.ct_out.iter() {
            let (k, v) = entry.map_err(|e| EbpfError::map(maps::CT_OUT, "read", e))?;
            out.push(CtEntryView {
                proto: k.proto,
                pod_ip: ip(k.a),
                pod_port: u16::from_be(k.a_port),
                remote_ip: ip(k.b),
                remote_port: u16::from_be(k.b_port),
                nat_ip: ip(v.addr),
                nat_port: u16::from_be(v.port),
                state: state_name(v.state),
                age: Duration::from_nanos(now.saturating_sub(v.last_seen)),
            });
        }
        Ok(out)
    }

    /// Removes flows idle for longer than their timeout, in both maps (and NAT66's,
    /// [`Self::ct6_gc`]). Returns how many flows (pod-side entries) were removed.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn ct_gc(&self, timeouts: &CtTimeouts) -> Result<usize, EbpfError> {
        let now = ktime_now();
        let slots = timeouts.slots();
        self.ct_remove_where(|k, v| ct::expired(&slots, k.proto, v.state, v.last_seen, now))
            .and_then(|n| {
                // Reverse entries whose forward entry the LRU evicted.
                let mut maps_guard = self.lock_maps();
                let orphans: Vec<CtKey> = maps_guard
                    .ct_in
                    .iter()
                    .filter_map(Result::ok)
                    .filter(|(k, v)| ct::expired(&slots, k.proto, v.state, v.last_seen, now))
                    .map(|(k, _)| k)
                    .collect();
                for k in orphans {
                    remove(&mut maps_guard.ct_in, &k, maps::CT_IN)?;
                }
                Ok(n)
            })
            .and_then(|n| Ok(n + self.ct6_gc(&slots, now)?))
    }

    /// Removes every flow of `pod_ip` (both maps). DEL calls this (via
    /// [`Self::detach_endpoint`]). Returns how many flows were removed.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read or an entry cannot be removed.
    pub fn ct_flush_pod(&self, pod_ip: Ipv4Addr) -> Result<usize, EbpfError> {
        let a = addr(pod_ip);
        let n = self.ct_remove_where(|k, _| k.a == a)?;
        let mut maps_guard = self.lock_maps();
        let orphans: Vec<CtKey> = maps_guard
            .ct_in
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.addr == a)
            .map(|(k, _)| k)
            .collect();
        for k in orphans {
            remove(&mut maps_guard.ct_in, &k, maps::CT_IN)?;
        }
        Ok(n)
    }

    pub(super) fn ct_remove_where(
        &self,
        pred: impl Fn(&CtKey, &CtValue) -> bool,
    ) -> Result<usize, EbpfError> {
        let mut maps_guard = self.lock_maps();
        let doomed: Vec<(CtKey, CtValue)> = maps_guard
            .ct_out
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| pred(k, v))
            .collect();
        for (k, v) in &doomed {
            // The reverse entry: its key follows from the pod-side key and its NAT port.
            remove(&mut maps_guard.ct_in, &k.to_wire_side(v.port), maps::CT_IN)?;
            remove(&mut maps_guard.ct_out, k, maps::CT_OUT)?;
        }
        Ok(doomed.len())
    }
}

fn remove(
    map: &mut aya::maps::HashMap<aya::maps::MapData, CtKey, CtValue>,
    k: &CtKey,
    name: &'static str,
) -> Result<(), EbpfError> {
    match map.remove(k) {
        Err(e) if !super::error::is_absent(&e) => Err(EbpfError::map(name, "remove", e)),
        _ => Ok(()),
    }
}
