//! Per-CPU packet and byte counters that create their entry on first use: per pod port
//! ([`crate::maps::EP_STATS`]) and per pod and external interface ([`crate::maps::IF_STATS`]).

use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};
use smarter_common::{EndpointStats, IfStatsKey};

use crate::maps::IF_STATS;

/// `EEXIST`: another CPU created the entry between our lookup and insert.
const EEXIST: i32 = 17;

/// Adds one packet of `len` bytes to this CPU's counters for `key`, creating them if absent.
#[inline(always)]
pub fn bump<K: Copy>(map: &PerCpuHashMap<K, EndpointStats>, key: K, len: u32) -> Result<(), i32> {
    if let Some(stats) = map.get_ptr_mut(key) {
        add(stats, len);
        return Ok(());
    }
    let first = EndpointStats {
        packets: 1,
        bytes: u64::from(len),
    };
    match map.insert(key, first, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(()),
        Err(err) if err == -EEXIST => match map.get_ptr_mut(key) {
            Some(stats) => {
                add(stats, len);
                Ok(())
            }
            None => Err(err),
        },
        Err(err) => Err(err),
    }
}

/// Counts `len` bytes of pod `pod`'s traffic through external interface `ifindex` in
/// direction `dir` (`smarter_common::uplink::DIR_*`). A full map costs the count, never the
/// packet.
#[inline(always)]
pub fn pod_iface(pod: u32, ifindex: u32, dir: u32, len: u32) {
    let key = IfStatsKey { pod, ifindex, dir };
    let _ = bump(&IF_STATS, key, len);
}

#[inline(always)]
fn add(stats: *mut EndpointStats, len: u32) {
    // SAFETY: a non-null pointer from a per-CPU map lookup points at this CPU's value, which no
    // other program run touches concurrently (preemption is off while a TC program runs).
    unsafe {
        (*stats).packets += 1;
        (*stats).bytes += u64::from(len);
    }
}
