//! The targets of issue 15, checked against the results (medians of the same run): every
//! miss is shown with the figure that missed.

use std::fmt::Write as _;

use crate::results::{ControlRow, Results, Workload};

/// Plugin peak RSS target, KiB.
const PLUGIN_RSS_KIB: u64 = 10 * 1024;
/// Agent RSS target (250 pods, DNS), KiB.
const AGENT_RSS_KIB: u64 = 16 * 1024;

/// The workloads issue 15 set its targets on (the later ones, issue 25's LAN and layer-3
/// workloads, have none).
const ISSUE_15_WORKLOADS: [&str; 6] = [
    "stream-pod",
    "stream-nat",
    "rr-pod",
    "crr-nat",
    "udp-nat",
    "rr-hostport",
];

/// One checked target.
struct Check {
    what: String,
    target: String,
    got: String,
    ok: bool,
}

fn ratio(w: &Workload, a: &str, b: &str) -> Option<f64> {
    let (x, y) = (w.contenders.get(a)?.median, w.contenders.get(b)?.median);
    (y > 0.0).then(|| x / y)
}

fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    for p in &r.profiles {
        for w in &p.workloads {
            let (base, min) = match (p.profile.as_str(), w.id.as_str()) {
                ("default", id) if ISSUE_15_WORKLOADS.contains(&id) => ("limit", 0.97),
                ("edge", "udp-nat" | "crr-nat") => ("reference", 1.5),
                ("edge", "stream-pod" | "stream-nat") => ("reference", 1.2),
                _ => continue,
            };
            if let Some(x) = ratio(w, "smarter-ebpf", base) {
                out.push(Check {
                    what: format!("{}: {} ebpf/{base}", p.profile, w.name),
                    target: format!("≥ {min:.2}×"),
                    got: format!("{x:.2}×"),
                    ok: x >= min,
                });
            }
        }
    }
    let row = |c: &str, conc: usize| -> Option<&ControlRow> {
        r.control_plane
            .iter()
            .find(|x| x.contender == c && x.concurrency == conc)
    };
    if let Some(e) = row("smarter-ebpf", 1) {
        for (verb, v) in [("ADD", e.add_p50_ms), ("DEL", e.del_p50_ms)] {
            out.push(Check {
                what: format!("smarter-ebpf {verb} p50, concurrency 1"),
                target: "≤ 10 ms".into(),
                got: format!("{v:.1} ms"),
                ok: v <= 10.0,
            });
        }
    }
    let top = r.control_plane.iter().map(|x| x.concurrency).max();
    if let Some(conc) = top.filter(|&c| c > 1)
        && let (Some(e), Some(f)) = (row("smarter-ebpf", conc), row("reference", conc))
    {
        for (verb, v, rf) in [
            ("ADD", e.add_p50_ms, f.add_p50_ms),
            ("DEL", e.del_p50_ms, f.del_p50_ms),
        ] {
            let x = v / rf.max(f64::MIN_POSITIVE);
            out.push(Check {
                what: format!("smarter-ebpf {verb} p50 / reference, concurrency {conc}"),
                target: "≤ 0.25×".into(),
                got: format!("{x:.2}× ({v:.1} / {rf:.1} ms)"),
                ok: x <= 0.25,
            });
        }
    }
    if let Some(m) = &r.memory {
        for c in ["smarter-ebpf", "smarter-iptables"] {
            let first = m.plugin_first_call_rss_kib.get(c).copied().unwrap_or(0);
            if let Some(peak) = m.plugin_peak_rss_kib.get(c).map(|p| (*p).max(first)) {
                out.push(Check {
                    what: format!("{c}: every plugin call's peak RSS (first ADD included)"),
                    target: "≤ 10 MiB".into(),
                    got: format!("{:.1} MiB", peak as f64 / 1024.0),
                    ok: peak <= PLUGIN_RSS_KIB,
                });
            }
        }
        if let (Some(rss), Some(pods)) = (m.agent_rss_kib, m.agent_pods) {
            let peak = m.agent_peak_rss_kib.unwrap_or(rss).max(rss);
            out.push(Check {
                what: format!("smarter-agent peak RSS with {pods} pods and DNS"),
                target: "≤ 16 MiB".into(),
                got: format!(
                    "{:.1} MiB (settled {:.1} MiB)",
                    peak as f64 / 1024.0,
                    rss as f64 / 1024.0
                ),
                ok: peak <= AGENT_RSS_KIB,
            });
        }
    }
    out
}

/// The targets section of the report.
pub fn markdown(r: &Results) -> String {
    let checks = checks(r);
    let mut s = String::new();
    if checks.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "## Targets (issue 15)\n\n| what | target | measured | |\n|---|---|---|---|"
    );
    for c in &checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.what,
            c.target,
            c.got,
            if c.ok { "met" } else { "MISSED" }
        );
    }
    s
}
