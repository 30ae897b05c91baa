//! The report: the markdown table of medians and ratios per profile, the other stages'
//! sections, the targets, the SVG chart and the summary printed at the end. Everything is
//! rendered from [`Results`], so `smarter-bench --report results.json` regenerates it; the
//! whole report asks each stage it is given for its section ([`Stage::markdown`]), which
//! renders it with the section functions here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::results::{ProfileResults, Results, Workload};
use crate::stage::Stage;

/// The machine's description.
pub fn machine() -> BTreeMap<String, String> {
    let cmd = |c: &str, args: &[&str]| {
        std::process::Command::new(c)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    BTreeMap::from([
        ("kernel".to_string(), cmd("uname", &["-r"])),
        ("arch".to_string(), cmd("uname", &["-m"])),
        ("cpu".to_string(), cpu),
        (
            "cpus".to_string(),
            std::thread::available_parallelism()
                .map_or(0, usize::from)
                .to_string(),
        ),
        (
            "smarter_cni".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("iperf3".to_string(), cmd("iperf3", &["--version"])),
        // The checkout measured (the run's working directory): commit, `-dirty` when the
        // tree has changes; empty outside a git checkout.
        (
            "commit".to_string(),
            cmd("git", &["describe", "--always", "--dirty", "--abbrev=12"]),
        ),
        (
            "containernetworking_plugins".to_string(),
            cmd(
                "dpkg-query",
                &["-W", "-f=${Version}", "containernetworking-plugins"],
            ),
        ),
    ])
}

const ORDER: [&str; 4] = ["reference", "smarter-iptables", "smarter-ebpf", "limit"];

fn ratio(w: &Workload, a: &str, b: &str) -> Option<f64> {
    let (x, y) = (w.contenders.get(a)?.median, w.contenders.get(b)?.median);
    (y > 0.0).then(|| x / y)
}

/// The whole markdown report: the header, the section of each of `stages` (in their order),
/// the targets, the stages' wall times and the failures.
pub fn markdown(r: &Results, stages: &[Box<dyn Stage>]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# smarter-cni benchmark{}{}\n\nMedians of {} repetition(s) of {} s each, contenders interleaved. Machine: {} ({} CPUs), kernel {}.\n",
        if r.quick {
            " (quick smoke run: not meaningful)"
        } else {
            ""
        },
        if r.complete { "" } else { " (INCOMPLETE run)" },
        r.repetitions,
        r.seconds_per_run,
        r.machine.get("cpu").map_or("", String::as_str),
        r.machine.get("cpus").map_or("", String::as_str),
        r.machine.get("kernel").map_or("", String::as_str),
    );
    for stage in stages {
        if let Some(section) = stage.markdown(r) {
            s.push_str(&section);
            s.push('\n');
        }
    }
    s.push_str(&crate::targets::markdown(r));
    if !r.stages.is_empty() {
        let _ = writeln!(
            s,
            "\n## Stages\n\n| stage | wall time | result |\n|---|---|---|"
        );
        for st in &r.stages {
            let _ = writeln!(
                s,
                "| {} | {:.0} s | {} |",
                st.name,
                st.seconds,
                if st.ok { "ok" } else { "FAILED" }
            );
        }
    }
    for f in &r.failures {
        let _ = writeln!(
            s,
            "\n### Failure in stage `{}`{}{}\n\n```\n{}\n```",
            f.stage,
            f.contender
                .as_ref()
                .map_or(String::new(), |c| format!(", contender `{c}`")),
            f.workload
                .as_ref()
                .map_or(String::new(), |w| format!(", `{w}`")),
            f.error
        );
    }
    s
}

/// One profile's table of medians and ratios, the CPU cost and the latencies.
pub fn profile_markdown(p: &ProfileResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Data plane, profile `{}`\n\n{}.\n\n| workload | unit | reference | smarter-iptables | smarter-ebpf | limit | ebpf/ref | ebpf/limit | iptables/ref |\n|---|---|---|---|---|---|---|---|---|",
        p.profile, p.description
    );
    for w in &p.workloads {
        let cell = |c: &str| {
            w.contenders.get(c).map_or("-".to_string(), |f| {
                let spread = if f.max > f.min {
                    format!(" ({}–{})", fmt_num(f.min), fmt_num(f.max))
                } else {
                    String::new()
                };
                format!("{}{spread}", fmt_num(f.median))
            })
        };
        let rt = |a: &str, b: &str| ratio(w, a, b).map_or("-".to_string(), |x| format!("{x:.2}×"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.name,
            w.unit,
            cell(ORDER[0]),
            cell(ORDER[1]),
            cell(ORDER[2]),
            cell(ORDER[3]),
            rt("smarter-ebpf", "reference"),
            rt("smarter-ebpf", "limit"),
            rt("smarter-iptables", "reference"),
        );
    }
    paths_markdown(&mut s, p);
    let _ = writeln!(
        s,
        "\nCPU time per unit of work (medians; ms of softirq / ms of system+softirq, all CPUs, from /proc/stat over each measurement: it includes the pods' and the wan's own stacks, which are the same for every contender, and anything else the machine ran meanwhile):\n\n| workload | per | reference | smarter-iptables | smarter-ebpf | limit |\n|---|---|---|---|---|---|"
    );
    for w in &p.workloads {
        let cell = |c: &str| {
            w.contenders
                .get(c)
                .map_or("-".to_string(), |f| match (f.softirq_ms, f.kernel_ms) {
                    (Some(a), Some(b)) => format!("{} / {}", fmt_num(a), fmt_num(b)),
                    _ => "-".to_string(),
                })
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            w.name,
            w.cpu_unit,
            cell(ORDER[0]),
            cell(ORDER[1]),
            cell(ORDER[2]),
            cell(ORDER[3])
        );
    }
    let _ = writeln!(
        s,
        "\nLatency (median of per-repetition percentiles, µs):\n\n| workload | contender | p50 | p99 |\n|---|---|---|---|"
    );
    for w in &p.workloads {
        for c in ORDER {
            if let Some(f) = w.contenders.get(c)
                && let (Some(p50), Some(p99)) = (f.p50_us, f.p99_us)
            {
                let _ = writeln!(s, "| {} | {c} | {p50:.0} | {p99:.0} |", w.name);
            }
        }
    }
    s
}

/// The path each figure was checked to take, where a workload records it (the CLAT
/// workloads: which translator on the node carried the traffic), appended to `s`.
fn paths_markdown(s: &mut String, p: &ProfileResults) {
    let mut first = true;
    for w in &p.workloads {
        for c in ORDER {
            if let Some(path) = w.contenders.get(c).and_then(|f| f.path.as_ref()) {
                if first {
                    s.push_str("\nPaths checked (last repetition):\n\n");
                    first = false;
                }
                let _ = writeln!(s, "- {}, `{c}`: {path}", w.name);
            }
        }
    }
}

/// The scaling section.
pub fn scaling_markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Scaling (each pod with a hostPort)\n\n| contender | pods | NAT connections/s | hostPort transactions/s |\n|---|---|---|---|"
    );
    for row in &r.scaling {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            row.contender,
            row.pods,
            fmt_num(row.nat_crr_per_s),
            fmt_num(row.hostport_rr_per_s)
        );
    }
    s
}

/// The control-plane section.
pub fn control_markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## CNI ADD/DEL latency (ms, wall time of the whole chain as a runtime runs it)\n\n| contender | concurrency | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n|---|---|---|---|---|---|"
    );
    for c in &r.control_plane {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            c.contender, c.concurrency, c.add_p50_ms, c.add_p99_ms, c.del_p50_ms, c.del_p99_ms
        );
    }
    s
}

/// The memory section.
pub fn memory_markdown(m: &crate::results::Memory) -> String {
    let mut s = String::from("## Memory (peak RSS, GNU time)\n\n");
    for (c, kib) in &m.plugin_peak_rss_kib {
        let first = m
            .plugin_first_call_rss_kib
            .get(c)
            .map_or_else(String::new, |f| {
                format!(" (first call of the node: {:.1} MiB)", *f as f64 / 1024.0)
            });
        let calls = m
            .plugin_calls
            .get(c)
            .map_or_else(String::new, |n| format!(", {n} calls"));
        let by_verb: String = m
            .plugin_peak_rss_by_verb_kib
            .get(c)
            .map(|v| {
                v.iter()
                    .map(|(verb, kib)| format!(", {verb} {:.1} MiB", *kib as f64 / 1024.0))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- plugin peak RSS, {c}: {:.1} MiB{by_verb}{first}{calls}",
            *kib as f64 / 1024.0
        );
    }
    if let (Some(kib), Some(pods)) = (m.agent_rss_kib, m.agent_pods) {
        let peak = m.agent_peak_rss_kib.map_or_else(String::new, |p| {
            format!(", peak {:.1} MiB", p as f64 / 1024.0)
        });
        let _ = writeln!(
            s,
            "- smarter-agent RSS (with --dns, metrics on) with {pods} pods: {:.1} MiB{peak}",
            kib as f64 / 1024.0
        );
    }
    s
}

fn fmt_num(x: f64) -> String {
    if x >= 1000.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A grouped bar chart of each contender relative to the reference, per workload.
pub fn svg(p: &ProfileResults, quick: bool) -> String {
    let colors = ["#9e9e9e", "#f5a623", "#2e7d32", "#1565c0"];
    let (bar, gap, group_gap, h, top, left) = (18.0, 2.0, 30.0, 260.0, 40.0, 60.0);
    let max_ratio = p
        .workloads
        .iter()
        .flat_map(|w| ORDER.iter().filter_map(|c| ratio(w, c, "reference")))
        .fold(1.0_f64, f64::max)
        .min(10.0);
    let group_w = 4.0 * (bar + gap) + group_gap;
    let width = left + group_w * p.workloads.len() as f64 + 20.0;
    let height = top + h + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Throughput relative to the reference chain (1.0 = upstream smarter-cni), profile {}{}</text>"#,
        p.profile,
        if quick { " — quick run" } else { "" }
    );
    let y_of = |v: f64| top + h - (v / max_ratio) * h;
    let one = y_of(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{:.0}" y1="{one:.1}" y2="{one:.1}" stroke="#444" stroke-dasharray="4 3"/><text x="4" y="{:.1}">1.0×</text>"##,
        width - 10.0,
        one + 4.0
    );
    for (i, w) in p.workloads.iter().enumerate() {
        let x0 = left + i as f64 * group_w;
        for (j, c) in ORDER.iter().enumerate() {
            if let Some(v) = ratio(w, c, "reference") {
                let v = v.min(max_ratio);
                let x = x0 + j as f64 * (bar + gap);
                let y = y_of(v);
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{bar}" height="{:.1}" fill="{}"><title>{c}: {v:.2}×</title></rect>"#,
                    top + h - y,
                    colors[j]
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + 2.0 * (bar + gap),
            top + h + 16.0,
            w.name
        );
    }
    for (j, c) in ORDER.iter().enumerate() {
        let x = left + j as f64 * 140.0;
        let y = top + h + 45.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{:.0}" width="12" height="12" fill="{}"/><text x="{:.0}" y="{:.0}">{c}</text>"#,
            y - 10.0,
            colors[j],
            x + 16.0,
            y
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `results.json` (complete or not, as `r` says), `results.md` (with the sections of
/// `stages`) and a chart per profile (`chart.svg`, `chart-edge.svg`) under `dir`, plus a
/// timestamped copy of the JSON, and prints the summary.
///
/// # Errors
///
/// When a file cannot be written.
pub fn write(dir: &Path, r: &Results, stages: &[Box<dyn Stage>]) -> anyhow::Result<()> {
    r.save(dir)?;
    std::fs::write(
        dir.join(format!("results-{}.json", r.unix_time)),
        serde_json::to_string_pretty(r)?,
    )?;
    render(dir, r, stages)
}

/// Writes `results.md` (with the sections of `stages`) and the charts from `r` (what
/// `--report` does) and prints the summary.
///
/// # Errors
///
/// When a file cannot be written.
pub fn render(dir: &Path, r: &Results, stages: &[Box<dyn Stage>]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let md = markdown(r, stages);
    std::fs::write(dir.join("results.md"), &md)?;
    for p in &r.profiles {
        let name = if p.profile == "default" {
            "chart.svg".to_string()
        } else {
            format!("chart-{}.svg", p.profile)
        };
        std::fs::write(dir.join(name), svg(p, r.quick))?;
    }
    println!("{md}");
    println!(
        "written: {}/results.json, results.md, chart*.svg",
        dir.display()
    );
    Ok(())
}
