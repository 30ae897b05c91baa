//! Comparing our datapaths' outcomes with the reference's, case by case: equal, a deliberate
//! difference ([`deliberate`]), a case only the reference's leak answered, or an unexplained
//! difference (a failure); and the per-topology table.

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
        _ => None,
    }
}

/// How one datapath's outcomes compare with the reference's.
#[derive(Debug, Default)]
pub struct Verdict {
    pub cases: usize,
    pub answered: usize,
    pub equal: usize,
    pub deliberate: usize,
    pub ref_leak_only: usize,
    /// Differences nothing explains.
    pub unexplained: Vec<String>,
}

/// Compares `ours` (datapath `dp` in `topo`) with `reference`.
pub fn compare(dp: Dp, reference: &Outcomes, ours: &Outcomes) -> Verdict {
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
        if got == want {
            v.equal += 1;
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
        "| datapath | cases | answered | equal | deliberate | ref-leak-only | differ | \
         frames per interface | leaks per interface |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} (any interface: {}) |",
            r.dp.name(),
            v.cases,
            v.answered,
            v.equal,
            v.deliberate,
            v.ref_leak_only,
            v.unexplained.len(),
            per(|c| c.frames),
            per(|c| c.leaks),
            r.leaks,
        );
    }
    s
}
