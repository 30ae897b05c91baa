//! Per-verdict counters shared by every program.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use smarter_common::{Event, Verdict, config::CFG_F_TRACE, maps::CONFIG_INDEX};

use crate::{
    maps::{CONFIG, EVENTS, VERDICTS},
    parse::{ETH_LEN, ETH_P_IP, ETH_TYPE, IP_LEN, read},
};

/// Counts `verdict` and, for drops (or any verdict while tracing), emits an [`Event`]. Call
/// it before any rewrite-free exit, after the program decided.
#[inline(always)]
pub fn record(ctx: &TcContext, verdict: Verdict, len: u32) {
    count_verdict(verdict, len);
    let tracing = CONFIG
        .get(CONFIG_INDEX)
        .is_some_and(|c| c.flags & CFG_F_TRACE != 0);
    if verdict.is_drop() || tracing {
        emit(ctx, verdict, len);
    }
}

/// Writes one event; a full ring buffer loses it (never the packet).
#[inline(always)]
fn emit(ctx: &TcContext, verdict: Verdict, len: u32) {
    let mut ev = Event {
        // SAFETY: ktime has no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        verdict: verdict as u32,
        // SAFETY: reading `ifindex` from a TC program's `__sk_buff` is allowed.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len,
        ..Event::default()
    };
    if read::<[u8; 2]>(ctx, ETH_TYPE).map(u16::from_be_bytes) == Some(ETH_P_IP)
        && let Some(ip) = read::<[u8; IP_LEN]>(ctx, ETH_LEN)
    {
        ev.proto = ip[9];
        ev.saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        ev.daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let l4 = ETH_LEN + usize::from(ip[0] & 0x0f) * 4;
        if matches!(ev.proto, 1 | 6 | 17)
            && ip[0] & 0x0f >= 5
            && let Some(p) = read::<[u8; 8]>(ctx, l4.min(ETH_LEN + 60))
        {
            if ev.proto == 1 {
                ev.sport = u16::from_ne_bytes([p[4], p[5]]);
            } else {
                ev.sport = u16::from_ne_bytes([p[0], p[1]]);
                ev.dport = u16::from_ne_bytes([p[2], p[3]]);
            }
        }
    }
    let _ = EVENTS.output::<Event>(&ev, 0);
}

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

/// What a program decided for one packet: its verdict and, when a redirect helper already
/// chose the TC action, that action. Built from a [`Verdict`] (`verdict.into()`) or with
/// [`Decision::redirected`]; [`Decision::finish`] counts it and returns the TC action.
#[derive(Clone, Copy)]
pub struct Decision {
    verdict: Verdict,
    /// The redirect helper's return value; negative: none (the verdict decides).
    helper: i32,
}

impl Decision {
    /// `verdict`, with the TC action a redirect helper returned.
    #[inline(always)]
    pub const fn redirected(verdict: Verdict, helper_action: i32) -> Self {
        Self {
            verdict,
            helper: helper_action,
        }
    }

    /// Counts the decision (and emits its event, see [`record`]) for a packet of `len`
    /// bytes and returns the TC action.
    #[inline(always)]
    pub fn finish(self, ctx: &TcContext, len: u32) -> i32 {
        record(ctx, self.verdict, len);
        if self.helper >= 0 {
            return self.helper;
        }
        if self.verdict.is_drop() {
            return TC_ACT_SHOT;
        }
        match self.verdict {
            Verdict::RedirectPod
            | Verdict::NatOut
            | Verdict::NatIn
            | Verdict::HostportIn
            | Verdict::IcmpErrorIn
            | Verdict::FragIn => TC_ACT_REDIRECT,
            _ => TC_ACT_OK,
        }
    }
}

impl From<Verdict> for Decision {
    #[inline(always)]
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            helper: -1,
        }
    }
}
