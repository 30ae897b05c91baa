//! Per-verdict counters shared by every program.

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};
use smarter_common::Verdict;

use crate::maps::VERDICTS;

/// Adds one packet of `len` bytes to this CPU's counter of `verdict`.
#[inline(always)]
pub fn count_verdict(verdict: Verdict, len: u32) {
    if let Some(stats) = VERDICTS.get_ptr_mut(verdict as u32) {
        // SAFETY: this CPU's slot of a per-CPU array; no concurrent writer while we run.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += u64::from(len);
        }
    }
}

/// The TC action of `verdict` when no helper decided it (`helper_action < 0`).
#[inline(always)]
pub fn action(verdict: Verdict, helper_action: i32) -> i32 {
    if helper_action >= 0 {
        return helper_action;
    }
    match verdict {
        Verdict::DropSpoof
        | Verdict::DropDeny
        | Verdict::DropMalformed
        | Verdict::DropNodelocal
        | Verdict::DropNatPorts
        | Verdict::DropNoRoute => TC_ACT_SHOT,
        Verdict::RedirectPod
        | Verdict::NatOut
        | Verdict::NatIn
        | Verdict::HostportIn
        | Verdict::IcmpErrorIn => TC_ACT_REDIRECT,
        Verdict::PassHost | Verdict::PassL2 | Verdict::PassUnparsed => TC_ACT_OK,
    }
}
