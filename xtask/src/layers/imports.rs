//! The import graph of a crate, read from its sources: `use` trees and inline
//! `crate::`/`super::`/`self::` paths, each resolved to the file module it lands in
//! (comments and `#[cfg(test)]` items left out).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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
