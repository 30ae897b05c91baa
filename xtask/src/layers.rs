//! The architecture as a checked rule: which module of a crate imports which, read from the
//! sources (`use` trees and inline `crate::`/`super::` paths, comments and `#[cfg(test)]`
//! modules left out), then two checks:
//!
//! - **no circles**: the graph of file modules has no cycle between modules that are not
//!   parent and child (a child using what its parent re-exports is the module tree, not a
//!   circle);
//! - **no upward imports**: top-level modules are given in layers, bottom first; a module
//!   may import its own layer and the ones below.
//!
//! `cargo xtask layers` prints the violations; the unit tests below run the check on the
//! workspace's crates, so CI fails on a new circle or upward import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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

/// Module path (`a::b`, "" for the crate root) → the modules it imports.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads every `.rs` file under `src` (a crate's source root) into the import graph.
/// `bin/` (thin binaries at the top) is left out.
///
/// # Errors
///
/// When a file cannot be read.
pub fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g = Graph::new();
    for file in &files {
        let here = module_of(src, file);
        if here == "bin" || here.starts_with("bin::") || is_test_module(&here) {
            continue;
        }
        let text = strip(&fs::read_to_string(file)?);
        let deps = g.entry(here.clone()).or_default();
        for path in paths(&text) {
            if let Some(target) = resolve(&here, &path, &modules)
                && target != here
                && !is_test_module(&target)
            {
                deps.insert(target);
            }
        }
    }
    Ok(g)
}

/// Test-only modules (`tests`, `tests_*`) may import anything of their parent.
fn is_test_module(m: &str) -> bool {
    m.rsplit("::")
        .next()
        .is_some_and(|last| last == "tests" || last.starts_with("tests_"))
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

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`; `lib.rs`/`main.rs` → "".
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments, string literals' contents and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += brace_delta(code);
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test {
            pending_cfg_test = false;
            let depth = brace_delta(code);
            if depth > 0 {
                skip_depth = Some(depth);
            }
            // `mod x;` or a one-line item: dropped either way.
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn brace_delta(code: &str) -> i32 {
    let open = i32::try_from(code.matches('{').count()).unwrap_or(i32::MAX);
    let close = i32::try_from(code.matches('}').count()).unwrap_or(i32::MAX);
    open - close
}

/// Every path starting at `crate::`, `super::` or `self::` (with `use` trees expanded), as
/// its segments.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_use: Vec<String> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").or_else(|| {
            t.strip_prefix("pub(")
                .and_then(|r| r.split_once(") ").map(|(_, r)| r))
        });
        let Some(tree) = t.unwrap_or(line.trim_start()).strip_prefix("use ") else {
            continue;
        };
        let mut stmt = tree.to_string();
        while !stmt.contains(';') {
            match lines.next() {
                Some(l) => stmt.push_str(l),
                None => break,
            }
        }
        let end = stmt.find(';').unwrap_or(stmt.len());
        expand(&stmt[..end], &mut Vec::new(), &mut out);
        in_use.push(stmt);
    }
    let text = text
        .lines()
        .filter(|l| {
            !in_use
                .iter()
                .any(|u| u.contains(l.trim()) && l.contains("use "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.as_str();
    let bytes = text.as_bytes();
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(j) = text[from..].find(anchor) {
            let at = from + j;
            from = at + anchor.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            if at >= 2 && &text[at - 2..at] == "::" {
                continue;
            }
            let seg: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<String> = seg
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            out.push(parts);
        }
    }
    out.retain(|p| {
        matches!(
            p.first().map(String::as_str),
            Some("crate" | "super" | "self")
        )
    });
    out
}

/// Expands a `use` tree (`a::{b, c::{d}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let depth = prefix.len();
        prefix.extend(head);
        for part in split_top(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(depth);
    } else {
        let name = tree.split(" as ").next().unwrap_or("").trim();
        let mut p = prefix.clone();
        p.extend(
            name.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_string),
        );
        if !p.is_empty() {
            out.push(p);
        }
    }
}

/// Splits at the commas of the outermost level.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The file module a path lands in, seen from module `here`: the longest known module
/// prefix after making the path absolute.
fn resolve(here: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut abs: Vec<String> = if here.is_empty() {
        Vec::new()
    } else {
        here.split("::").map(str::to_string).collect()
    };
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            abs.clear();
            segs.next();
        }
        Some("self") => {
            segs.next();
        }
        Some("super") => {
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                abs.pop()?;
            }
        }
        _ => return None,
    }
    abs.extend(segs.cloned());
    (0..=abs.len())
        .rev()
        .map(|n| abs[..n].join("::"))
        .find(|m| modules.contains(m))
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

/// Prints the violations of both crates; an error when there are any.
///
/// # Errors
///
/// When a source cannot be read or a rule is broken.
pub fn report(root: &Path) -> anyhow::Result<()> {
    let mut n = 0;
    for (krate, layers) in [("smarter-cni", CNI_LAYERS), ("smarter-ebpf", &[][..])] {
        let g = graph(&root.join(krate).join("src"))?;
        let v = check(&g, layers);
        println!("{krate}: {} modules, {} violations", g.len(), v.len());
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
