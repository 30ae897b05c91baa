//! Results: the JSON with every figure, the markdown table of medians and ratios, the SVG
//! chart, and the summary printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// `--quick` (a smoke run: figures are not meaningful).
    pub quick: bool,
    /// Seconds per measurement.
    pub seconds_per_run: f64,
    /// Repetitions of each data-plane workload.
    pub repetitions: usize,
    /// Unix time of the run.
    pub unix_time: u64,
    /// Machine, kernel and versions.
    pub machine: BTreeMap<String, String>,
    /// Data-plane workloads.
    pub workloads: Vec<Workload>,
    /// NAT and hostPort with more pods attached.
    pub scaling: Vec<ScalingRow>,
    /// CNI ADD/DEL latency.
    pub control_plane: Vec<ControlRow>,
    /// Memory.
    pub memory: Memory,
}

/// One data-plane workload across contenders.
#[derive(Debug, Serialize)]
pub struct Workload {
    /// Name, e.g. `stream pod→pod`.
    pub name: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Per contender.
    pub contenders: BTreeMap<String, Figure>,
}

/// The repetitions of one workload for one contender.
#[derive(Debug, Serialize)]
pub struct Figure {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Every repetition.
    pub samples: Vec<f64>,
    /// Median of the per-repetition p50 latencies, microseconds (transactional workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// Median of the per-repetition p99 latencies, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
}

/// One scaling point.
#[derive(Debug, Serialize)]
pub struct ScalingRow {
    /// Contender.
    pub contender: String,
    /// Pods attached (each with a hostPort).
    pub pods: usize,
    /// NAT connect/request/close per second.
    pub nat_crr_per_s: f64,
    /// hostPort request/response per second from the wan.
    pub hostport_rr_per_s: f64,
}

/// CNI latency at one concurrency.
#[derive(Debug, Serialize)]
pub struct ControlRow {
    /// Contender.
    pub contender: String,
    /// Calls in flight.
    pub concurrency: usize,
    /// ADD median, ms.
    pub add_p50_ms: f64,
    /// ADD 99th percentile, ms.
    pub add_p99_ms: f64,
    /// DEL median, ms.
    pub del_p50_ms: f64,
    /// DEL 99th percentile, ms.
    pub del_p99_ms: f64,
}

/// Memory figures.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// Peak RSS of any plugin process but the first of a world (the whole chain for the
    /// reference), KiB.
    pub plugin_peak_rss_kib: BTreeMap<String, u64>,
    /// Peak RSS of the first plugin call of a world, KiB: for smarter-ebpf without an agent,
    /// the ADD that loads and pins the programs.
    pub plugin_first_call_rss_kib: BTreeMap<String, u64>,
    /// The agent's RSS after settling, KiB.
    pub agent_rss_kib: Option<u64>,
    /// The agent's peak RSS (`VmHWM`) by then, KiB.
    pub agent_peak_rss_kib: Option<u64>,
    /// Pods attached while the agent's RSS was read.
    pub agent_pods: Option<usize>,
}

fn unit_of(workload: &str) -> &'static str {
    if workload.starts_with("stream") {
        "Gbit/s"
    } else if workload.starts_with("udp") {
        "packets/s"
    } else if workload.starts_with("crr") {
        "connections/s"
    } else {
        "transactions/s"
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let m = s.len() / 2;
    if s.len().is_multiple_of(2) {
        (s[m - 1] + s[m]) / 2.0
    } else {
        s[m]
    }
}

/// Builds the workload figures from raw samples and latencies.
pub fn workloads(
    samples: &BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    latency: &BTreeMap<(&'static str, &'static str), Vec<(f64, f64)>>,
) -> Vec<Workload> {
    samples
        .iter()
        .map(|(name, by)| Workload {
            name: (*name).to_string(),
            unit: unit_of(name),
            contenders: by
                .iter()
                .map(|(c, v)| {
                    let lat = latency.get(&(*name, *c));
                    let pick = |f: fn(&(f64, f64)) -> f64| {
                        lat.map(|l| median(&l.iter().map(f).collect::<Vec<_>>()))
                    };
                    (
                        (*c).to_string(),
                        Figure {
                            median: median(v),
                            min: v.iter().copied().fold(f64::INFINITY, f64::min),
                            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            samples: v.clone(),
                            p50_us: pick(|l| l.0),
                            p99_us: pick(|l| l.1),
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

impl Results {
    /// Assembles the results with the machine's description.
    pub fn new(
        quick: bool,
        seconds_per_run: f64,
        repetitions: usize,
        workloads: Vec<Workload>,
        scaling: Vec<ScalingRow>,
        control_plane: Vec<ControlRow>,
        memory: Memory,
    ) -> Self {
        Self {
            quick,
            seconds_per_run,
            repetitions,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: machine(),
            workloads,
            scaling,
            control_plane,
            memory,
        }
    }
}

fn machine() -> BTreeMap<String, String> {
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

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# smarter-cni benchmark{}\n\nMedians of {} repetition(s) of {} s each, contenders interleaved. Machine: {} ({} CPUs), kernel {}.\n",
        if r.quick {
            " (quick smoke run: not meaningful)"
        } else {
            ""
        },
        r.repetitions,
        r.seconds_per_run,
        r.machine.get("cpu").map_or("", String::as_str),
        r.machine.get("cpus").map_or("", String::as_str),
        r.machine.get("kernel").map_or("", String::as_str),
    );
    let _ = writeln!(
        s,
        "| workload | unit | reference | smarter-iptables | smarter-ebpf | limit | ebpf/ref | ebpf/limit | iptables/ref |\n|---|---|---|---|---|---|---|---|---|"
    );
    for w in &r.workloads {
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
    let _ = writeln!(
        s,
        "\n## Latency (median of per-repetition percentiles, µs)\n\n| workload | contender | p50 | p99 |\n|---|---|---|---|"
    );
    for w in &r.workloads {
        for c in ORDER {
            if let Some(f) = w.contenders.get(c)
                && let (Some(p50), Some(p99)) = (f.p50_us, f.p99_us)
            {
                let _ = writeln!(s, "| {} | {c} | {p50:.0} | {p99:.0} |", w.name);
            }
        }
    }
    let _ = writeln!(
        s,
        "\n## Scaling (each pod with a hostPort)\n\n| contender | pods | NAT connections/s | hostPort transactions/s |\n|---|---|---|---|"
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
    let _ = writeln!(
        s,
        "\n## CNI ADD/DEL latency (ms)\n\n| contender | concurrency | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n|---|---|---|---|---|---|"
    );
    for c in &r.control_plane {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            c.contender, c.concurrency, c.add_p50_ms, c.add_p99_ms, c.del_p50_ms, c.del_p99_ms
        );
    }
    let _ = writeln!(s, "\n## Memory\n");
    for (c, kib) in &r.memory.plugin_peak_rss_kib {
        let first = r
            .memory
            .plugin_first_call_rss_kib
            .get(c)
            .map_or_else(String::new, |f| {
                format!(" (first call of the node: {:.1} MiB)", *f as f64 / 1024.0)
            });
        let _ = writeln!(
            s,
            "- plugin peak RSS, {c}: {:.1} MiB{first}",
            *kib as f64 / 1024.0
        );
    }
    if let (Some(kib), Some(pods)) = (r.memory.agent_rss_kib, r.memory.agent_pods) {
        let peak = r.memory.agent_peak_rss_kib.map_or_else(String::new, |p| {
            format!(", peak {:.1} MiB", p as f64 / 1024.0)
        });
        let _ = writeln!(
            s,
            "- smarter-agent RSS (with --dns) with {pods} pods: {:.1} MiB{peak}",
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
pub fn svg(r: &Results) -> String {
    let colors = ["#9e9e9e", "#f5a623", "#2e7d32", "#1565c0"];
    let (bar, gap, group_gap, h, top, left) = (18.0, 2.0, 30.0, 260.0, 40.0, 60.0);
    let max_ratio = r
        .workloads
        .iter()
        .flat_map(|w| ORDER.iter().filter_map(|c| ratio(w, c, "reference")))
        .fold(1.0_f64, f64::max)
        .min(10.0);
    let group_w = 4.0 * (bar + gap) + group_gap;
    let width = left + group_w * r.workloads.len() as f64 + 20.0;
    let height = top + h + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">Throughput relative to the reference chain (1.0 = upstream smarter-cni){}</text>"#,
        if r.quick { " — quick run" } else { "" }
    );
    let y_of = |v: f64| top + h - (v / max_ratio) * h;
    let one = y_of(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{:.0}" y1="{one:.1}" y2="{one:.1}" stroke="#444" stroke-dasharray="4 3"/><text x="4" y="{:.1}">1.0×</text>"##,
        width - 10.0,
        one + 4.0
    );
    for (i, w) in r.workloads.iter().enumerate() {
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

/// Writes `results.json`, `results.md` and `chart.svg` under `dir` (plus a timestamped copy
/// of the JSON) and prints the summary.
pub fn write(dir: &Path, r: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r)?;
    std::fs::write(dir.join("results.json"), &json)?;
    std::fs::write(dir.join(format!("results-{}.json", r.unix_time)), &json)?;
    let md = markdown(r);
    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(dir.join("chart.svg"), svg(r))?;
    println!("{md}");
    println!(
        "written: {}/results.json, results.md, chart.svg",
        dir.display()
    );
    Ok(())
}
