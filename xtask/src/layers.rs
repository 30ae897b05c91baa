//! The architecture as a checked rule, for every crate of the workspace: which module of a
//! crate imports which ([`imports`]), then two checks:
//!
//! - **no circles**, in every crate: the graph of file modules has no cycle between modules
//!   that are not parent and child (a child using what its parent re-exports is the module
//!   tree, not a circle);
//! - **no upward imports**, where a crate declares layers ([`DECLARED`]): its top-level
//!   modules are given in layers, bottom first; a module may import its own layer and the
//!   ones below.
//!
//! The crates are the workspace's `members`, so a new crate is checked from its first day.
//! `cargo xtask layers` prints the violations; the unit tests run the check on every crate,
//! so CI fails on a new circle or upward import.

mod imports;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::Context as _;

pub use imports::{Graph, graph};

/// One broken rule, printable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// A cycle of modules (each imports the next, the last the first).
    Circle(Vec<String>),
    /// `from` (layer `from_layer`) imports `to` from the higher layer `to_layer`.
    Upward {
        from: String,
        to: String,
        from_layer: usize,
        to_layer: usize,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Circle(c) => write!(f, "import circle: {} -> {}", c.join(" -> "), c[0]),
            Violation::Upward {
                from,
                to,
                from_layer,
                to_layer,
            } => write!(
                f,
                "upward import: {from} (layer {from_layer}) uses {to} (layer {to_layer})"
            ),
        }
    }
}

/// Violations of the two rules in `g`; `layers` lists the top-level modules bottom first
/// (modules not listed are not layer-checked).
#[must_use]
pub fn check(g: &Graph, layers: &[&[&str]]) -> Vec<Violation> {
    let mut out = BTreeSet::new();
    let layer_of = |m: &str| {
        let top = m.split("::").next().unwrap_or("");
        layers.iter().position(|l| l.contains(&top))
    };
    for (from, deps) in g {
        for to in deps {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && b > a
            {
                out.insert(Violation::Upward {
                    from: from.clone(),
                    to: to.clone(),
                    from_layer: a,
                    to_layer: b,
                });
            }
        }
    }
    for c in circles(g) {
        out.insert(Violation::Circle(c));
    }
    out.into_iter().collect()
}

/// The graph's cycles, leaving out edges between a module and its ancestors, one per strongly connected component, as a shortest cycle
/// through its smallest member.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    let related = |a: &str, b: &str| {
        a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::")) || b.is_empty()
    };
    let edges: BTreeMap<&str, Vec<&str>> = g
        .iter()
        .map(|(k, v)| {
            let vs = v
                .iter()
                .map(String::as_str)
                .filter(|t| !related(k, t))
                .collect();
            (k.as_str(), vs)
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for start in edges.keys() {
        if seen.contains(start) {
            continue;
        }
        if let Some(cycle) = shortest_cycle(&edges, start) {
            seen.extend(cycle.iter().copied());
            out.push(cycle.into_iter().map(str::to_string).collect());
        }
    }
    out
}

/// Breadth-first search from `start` back to itself.
fn shortest_cycle<'a>(
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in edges.get(n).into_iter().flatten() {
            if m == start {
                let mut cycle = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = prev[cur];
                    cycle.push(cur);
                }
                cycle.reverse();
                return Some(cycle);
            }
            if m != start && !prev.contains_key(m) {
                prev.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    None
}

/// The layers of smarter-cni, bottom first: foundations, the CNI protocol and config,
/// IPAM, the datapaths, DNS, the verbs, the programs built on them.
pub const CNI_LAYERS: &[&[&str]] = &[
    &["opstats", "state", "netlink", "naming"],
    &["cni"],
    &["ipam"],
    &["datapath"],
    &["dns"],
    &["cmd"],
    &["agent", "bpfctl", "install"],
];

/// The layers of the benchmark harness (`bench`), bottom first: foundations (the command
/// line, the results, errors, statistics, profiles, one plugin call, the load generators, the
/// targets), what a stage is with the contenders and the report, the stages, the runner.
pub const BENCH_LAYERS: &[&[&str]] = &[
    &[
        "cli", "results", "error", "stats", "profile", "plugin", "load", "targets",
    ],
    &["stage", "contender", "report"],
    &["workloads", "scaling", "control", "memory", "cri"],
    &["run"],
];

/// The crates (as their directories in the workspace) that declare layers, with them; every
/// other crate of the workspace is checked for circles only.
pub const DECLARED: &[(&str, &[&[&str]])] = &[("smarter-cni", CNI_LAYERS), ("bench", BENCH_LAYERS)];

/// The layers `krate` declares (none when it is not in [`DECLARED`]).
#[must_use]
pub fn layers_of(krate: &str) -> &'static [&'static [&'static str]] {
    DECLARED
        .iter()
        .find(|(k, _)| *k == krate)
        .map_or(&[], |(_, layers)| layers)
}

/// The crates of the workspace at `root`: the `members` of its `Cargo.toml`, as directories
/// relative to `root`, in the order listed.
///
/// # Errors
///
/// When the manifest cannot be read or lists no members.
pub fn members(root: &Path) -> anyhow::Result<Vec<String>> {
    let path = root.join("Cargo.toml");
    let manifest =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut list = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        let code = line.split('#').next().unwrap_or("");
        if !inside {
            let Some(value) = code
                .trim_start()
                .strip_prefix("members")
                .and_then(|r| r.trim_start().strip_prefix('='))
            else {
                continue;
            };
            inside = true;
            list.push_str(value);
        } else {
            list.push_str(code);
        }
        if list.contains(']') {
            break;
        }
    }
    let names: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        !names.is_empty(),
        "{}: no workspace members",
        path.display()
    );
    Ok(names)
}

/// The import graph of crate `krate` (a member of the workspace at `root`) and its
/// violations: circles, and upward imports against the layers it declares.
///
/// # Errors
///
/// When a source cannot be read.
pub fn check_crate(root: &Path, krate: &str) -> std::io::Result<(Graph, Vec<Violation>)> {
    let g = graph(&root.join(krate).join("src"))?;
    let v = check(&g, layers_of(krate));
    Ok((g, v))
}

/// Prints the violations of every crate of the workspace at `root`; an error when there are
/// any.
///
/// # Errors
///
/// When a source cannot be read or a rule is broken.
pub fn report(root: &Path) -> anyhow::Result<()> {
    let mut n = 0;
    for krate in members(root)? {
        let (g, v) = check_crate(root, &krate).with_context(|| format!("reading {krate}"))?;
        let layers = match layers_of(&krate).len() {
            0 => "no layers declared (circles only)".to_string(),
            l => format!("{l} layers"),
        };
        println!(
            "{krate}: {} modules, {layers}, {} violations",
            g.len(),
            v.len()
        );
        for x in &v {
            println!("  {x}");
        }
        n += v.len();
    }
    anyhow::ensure!(n == 0, "{n} layering violations");
    Ok(())
}

#[cfg(test)]
mod tests;
