//! `smarter_pod`: TC classifier on the host-side veth's ingress, i.e. every packet a pod sends.
//!
//! For now it only counts packets and bytes per host veth and lets everything pass; anti-spoofing,
//! pod-to-pod redirect and NAT come later and return their verdicts from [`try_smarter_pod`].

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK},
    macros::classifier,
    programs::TcContext,
};
use smarter_common::EndpointStats;

use crate::maps::EP_STATS;

/// `EEXIST`: another CPU created the entry between our lookup and insert.
const EEXIST: i32 = 17;

#[classifier]
pub fn smarter_pod(ctx: TcContext) -> i32 {
    match try_smarter_pod(&ctx) {
        Ok(verdict) => verdict,
        // Failing to count (e.g. the stats map is full) must never cost the pod its traffic.
        Err(_errno) => TC_ACT_OK,
    }
}

/// The verdict for one packet leaving a pod, or the (negative) errno of a failed map update.
#[inline(always)]
fn try_smarter_pod(ctx: &TcContext) -> Result<i32, i32> {
    // SAFETY: `skb` is the context pointer the kernel passed in; the verifier allows reading
    // `ifindex` from a TC program's `__sk_buff`.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    count(ifindex, ctx.len())?;
    Ok(TC_ACT_OK)
}

/// Adds one packet of `len` bytes to this CPU's counters for `ifindex`, creating them if absent.
#[inline(always)]
fn count(ifindex: u32, len: u32) -> Result<(), i32> {
    if let Some(stats) = EP_STATS.get_ptr_mut(ifindex) {
        add(stats, len);
        return Ok(());
    }
    let first = EndpointStats {
        packets: 1,
        bytes: u64::from(len),
    };
    match EP_STATS.insert(ifindex, first, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(()),
        Err(err) if err == -EEXIST => match EP_STATS.get_ptr_mut(ifindex) {
            Some(stats) => {
                add(stats, len);
                Ok(())
            }
            None => Err(err),
        },
        Err(err) => Err(err),
    }
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
