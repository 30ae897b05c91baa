//! Comparing our datapaths' outcomes with the reference's, case by case: equal, a deliberate
//! difference ([`deliberate`]), a case only the reference's leak answered, a known gap of
//! today's code ([`known_gap`], reported, failing only with `CONFORMANCE_STRICT=1`), or an
//! unexplained difference (a failure); the invariants today's code is known to break
//! ([`known_breach`]); and the per-topology table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::capture::IfCount;
use crate::topo::Topo;
use crate::traffic::{Case, Direction, Proto};
use crate::world::Dp;

/// What happened in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The sender got its answer (from the address it asked).
    pub answered: bool,
    /// A frame with a pod's address reached a capture meanwhile.
    pub leaked: bool,
    /// The server pod's echo received something meanwhile (only watched in the directions
    /// that target a pod's own address unsolicited).
    pub reached_pod: bool,
}

/// Every case's outcome.
pub type Outcomes = BTreeMap<Case, Outcome>;

/// Why our datapaths differ from the reference for a case, when they do on purpose.
pub fn deliberate(dp: Dp, case: &Case) -> Option<&'static str> {
    match (dp, case.dir, case.proto) {
        // The reference forwards anything routed to a pod address; ours are node-local-only.
        (_, Direction::WanToPod | Direction::SensorToPod, _) => {
            Some("node-local-only: unsolicited traffic to a pod is dropped")
        }
        (Dp::Ebpf, Direction::PodToWan, Proto::Raw(47)) if case.size < 8 => {
            Some("GRE under 8 bytes: the kernel's GRE tracker drops it, eBPF NATs it by address")
        }
        (Dp::Ebpf, Direction::PodToHostPort, Proto::Udp) if case.size > 1472 => Some(
            "hairpin hostPort with fragmented datagrams: eBPF hands fragments to the node, \
             which has no socket on the hostPort",
        ),
        _ => None,
    }
}

/// Differences from the reference that today's code is known to have in a topology (issue
/// 25: the datapaths are being rewritten for several uplinks, layer-3 uplinks and hostPorts on
/// every node address). They are printed as KNOWN GAP lines and fail the test only when
/// `CONFORMANCE_STRICT` is set; a gap none of whose cases differs any more is printed as
/// fixed, so the list is pruned as the fixes land.
pub fn known_gap(dp: Dp, topo: Topo, case: &Case) -> Option<&'static str> {
    use Direction::*;
    match (dp, topo, case.dir) {
        (Dp::Ebpf, _, NodeToHostPort) if case.proto == Proto::Udp && case.size > 1472 => Some(
            "not issue 25, found when the probe began to check the answer's source: eBPF \
             answers a fragmented datagram from the node to its own hostPort from the pod's \
             address (the reply of the DNAT is not translated back)",
        ),
        (Dp::Nft, Topo::Lan, PodToSensor) => Some(
            "issue 25: nftables masquerades only out of the uplink (oifname \"uplink0\"); \
             pod → LAN is dropped by the backstop instead of masqueraded to the LAN address",
        ),
        (Dp::Ebpf, Topo::Lan, SensorToHostPort | PodToHostPort | NodeToHostPort) => Some(
            "issue 25: eBPF hostPorts answer only on the uplink's address, not on the LAN \
             address (every node address, as portmap's dst-type LOCAL)",
        ),
        (Dp::Ebpf, Topo::L3, PodToWan | PodToFar | WanToHostPort) if case.ttl > 1 => Some(
            "issue 25: eBPF on a layer-3 uplink (TUN, raw IP, no Ethernet header): nothing \
             through wwan0 is answered",
        ),
        _ => None,
    }
}

/// A broken invariant (rather than an outcome that differs from the reference's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    /// Frames with a pod's address left the node.
    Leak,
    /// Unsolicited traffic to a pod's own address reached the pod (node-local-only).
    Inbound,
}

/// Breaches today's code is known to commit in a topology (issue 25); as [`known_gap`],
/// reported as KNOWN GAP and failing only with `CONFORMANCE_STRICT`.
pub fn known_breach(dp: Dp, topo: Topo, breach: Breach) -> Option<&'static str> {
    match (dp, topo, breach) {
        (Dp::Ebpf, Topo::Lan, Breach::Leak) => Some(
            "issue 25: eBPF lets pod → LAN traffic (and the pod's answers to the sensor) out \
             with the pod's address: only the uplink has the translation and the backstop",
        ),
        (Dp::Ebpf, Topo::Lan, Breach::Inbound) => Some(
            "issue 25: eBPF delivers unsolicited sensor → pod traffic: node-local-only holds \
             only on the uplink, not on the LAN",
        ),
        (Dp::Ebpf, Topo::L3, Breach::Inbound) => Some(
            "issue 25: eBPF delivers unsolicited wan → pod traffic arriving on the layer-3 \
             uplink wwan0: node-local-only does not hold there",
        ),
        (Dp::Ebpf, Topo::Failover, Breach::Leak) => Some(
            "issue 25: eBPF lets new flows out with the pod's address after each route change \
             (by the new default interface) until the agent has switched the uplink",
        ),
        _ => None,
    }
}

/// Whether known gaps fail the test (`CONFORMANCE_STRICT=1`).
pub fn strict() -> bool {
    std::env::var_os("CONFORMANCE_STRICT").is_some_and(|v| v != "0")
}

/// How one datapath's outcomes compare with the reference's.
#[derive(Debug, Default)]
pub struct Verdict {
    pub cases: usize,
    pub answered: usize,
    pub equal: usize,
    pub deliberate: usize,
    pub ref_leak_only: usize,
    /// Known gaps that differ, one line each (with the reason).
    pub known: Vec<String>,
    /// Per known-gap reason: cases that differ, cases that equal the reference.
    pub gaps: BTreeMap<&'static str, (usize, usize)>,
    /// Differences nothing explains.
    pub unexplained: Vec<String>,
}

/// Compares `ours` (datapath `dp` in `topo`) with `reference`.
pub fn compare(dp: Dp, topo: Topo, reference: &Outcomes, ours: &Outcomes) -> Verdict {
    let mut v = Verdict {
        cases: ours.len(),
        answered: ours.values().filter(|o| o.answered).count(),
        ..Verdict::default()
    };
    for (case, r) in reference {
        let Some(o) = ours.get(case) else {
            continue;
        };
        let (want, got) = (r.answered, o.answered);
        let gap = known_gap(dp, topo, case);
        if got == want {
            v.equal += 1;
            if let Some(why) = gap {
                v.gaps.entry(why).or_default().1 += 1;
            }
            continue;
        }
        if r.leaked {
            // The reference forwarded it with the pod's address (the kernel's conntrack could
            // not track it, or the pod answered unsolicited traffic) and the far side's route
            // brought the answer back: not an outcome to copy. Ours translate it or drop it
            // (no leak, as asserted separately).
            v.ref_leak_only += 1;
        } else if deliberate(dp, case).is_some() {
            v.deliberate += 1;
        } else if let Some(why) = gap {
            v.gaps.entry(why).or_default().0 += 1;
            v.known.push(format!(
                "{}: reference {want}, {} {got}",
                case.label(),
                dp.name()
            ));
        } else {
            v.unexplained.push(format!(
                "{}: reference {want}, {} {got}",
                case.label(),
                dp.name()
            ));
        }
    }
    v
}

impl Verdict {
    /// The KNOWN GAP lines of datapath `dp` in `topo`: per reason, how many cases still differ
    /// (and which), or that none does any more.
    pub fn gap_lines(&self, dp: Dp, topo: Topo) -> String {
        let mut s = String::new();
        for (why, (differ, equal)) in &self.gaps {
            let tag = format!("({}, {})", topo.name(), dp.name());
            if *differ == 0 {
                let _ = writeln!(
                    s,
                    "KNOWN GAP FIXED {tag}: all {equal} cases equal the reference now; remove \
                     it from compare::known_gap: {why}"
                );
            } else {
                let _ = writeln!(s, "KNOWN GAP {tag}: {differ} cases differ: {why}");
            }
        }
        if !self.known.is_empty() {
            let _ = writeln!(s, "    {}", self.known.join("\n    "));
        }
        s
    }
}

/// One datapath's row: its verdict (none for the reference itself) and its captures.
pub struct Row {
    pub dp: Dp,
    pub verdict: Verdict,
    /// Per far-side interface (`ns/if`): frames and leaks.
    pub links: Vec<(String, IfCount)>,
    /// Leaks on any captured interface (the far sides included).
    pub leaks: usize,
}

/// The per-topology table, markdown-shaped so it can be pasted into a report.
pub fn table(topo: Topo, rows: &[Row]) -> String {
    let mut s = String::new();
    let uplink = topo
        .uplink_key()
        .map_or_else(|| "absent".to_owned(), |u| format!("\"{u}\""));
    let _ = writeln!(s, "\n## topology {} (\"uplink\": {uplink})", topo.name());
    let _ = writeln!(
        s,
        "| datapath | cases | answered | equal | deliberate | ref-leak-only | known gap | \
         differ | frames per interface | leaks per interface |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let v = &r.verdict;
        let per = |f: fn(&IfCount) -> usize| {
            r.links
                .iter()
                .map(|(n, c)| format!("{n}={}", f(c)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} (any interface: {}) |",
            r.dp.name(),
            v.cases,
            v.answered,
            v.equal,
            v.deliberate,
            v.ref_leak_only,
            v.known.len(),
            v.unexplained.len(),
            per(|c| c.frames),
            per(|c| c.leaks),
            r.leaks,
        );
    }
    s
}
