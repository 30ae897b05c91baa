//! Which networks exist on the node and which datapath each uses: eBPF networks are found by
//! their pins under `--bpffs-dir`, nftables networks by their record directory under
//! `--state-dir` plus their `smarter_<network>` tables. Nothing here writes anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use smarter_common::LAYOUT_VERSION;

use super::Failure;
use crate::cni::NetConf;
use crate::datapath::{self, Datapath, DatapathError, DatapathKind};

/// One network found on the node.
#[derive(Debug)]
pub struct Net {
    /// CNI network name.
    pub name: String,
    /// Its datapath.
    pub dp: Box<dyn Datapath>,
    /// `<stateDir>/<network>`: the plugin's attachment records.
    pub records: PathBuf,
}

/// The networks under `root` (pins) and `state_dir` (records of nftables networks), or the
/// failure that explains why there are none: nothing found, an unknown `only` network, no
/// privileges, or only pins of other layout versions.
///
/// # Errors
///
/// [`Failure`] with exit code 3, 4 or 5.
pub fn networks(root: &Path, state_dir: &Path, only: Option<&str>) -> Result<Vec<Net>, Failure> {
    let pinned = match subdirs(root) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::denied(format!("{}: {e}", root.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(Failure::new(1, format!("{}: {e}", root.display()))),
    };
    let recorded = subdirs(state_dir).unwrap_or_default();
    let wanted = |n: &String| only.is_none_or(|o| o == n);
    let mut out = Vec::new();
    let mut incompatible = Vec::new();
    let mut denied = None;
    for name in pinned.iter().filter(|n| wanted(n)) {
        match datapath::open_existing(&conf(name, root, state_dir), DatapathKind::Ebpf) {
            Ok(Some(dp)) => out.push(net(name, dp, state_dir)),
            Ok(None) => incompatible.push(format!("{name} ({})", versions(&root.join(name)))),
            Err(e) => return Err(Failure::from_err(name, &e)),
        }
    }
    for name in recorded
        .iter()
        .filter(|n| wanted(n) && !pinned.contains(*n))
    {
        match datapath::open_existing(&conf(name, root, state_dir), DatapathKind::Nftables) {
            Ok(Some(dp)) => out.push(net(name, dp, state_dir)),
            Ok(None) => {}
            Err(e) => denied = Some(Failure::from_err(name, &e)),
        }
    }
    if !out.is_empty() {
        out.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(out);
    }
    if !incompatible.is_empty() {
        return Err(Failure::new(
            5,
            format!(
                "pins found for {} but none with this build's layout v{LAYOUT_VERSION}: use the \
                 smarter-bpfctl of the plugin's version",
                incompatible.join(", ")
            ),
        ));
    }
    if let Some(f) = denied {
        return Err(f);
    }
    Err(Failure::new(
        3,
        match only {
            Some(n) => format!(
                "network {n} has no pins under {} and no nftables datapath (records under {})",
                root.display(),
                state_dir.display()
            ),
            None => format!(
                "no network found: no pins under {} and no nftables network recorded under {} \
                 (is smarter-cni installed, or are --bpffs-dir/--state-dir wrong?)",
                root.display(),
                state_dir.display()
            ),
        },
    ))
}

/// What opening a network's datapath needs to know, for a network found on the node (the rest
/// of its configuration is not needed to read it).
fn conf(name: &str, root: &Path, state_dir: &Path) -> NetConf {
    NetConf {
        name: name.to_string(),
        bpffs_dir: root.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        ..NetConf::default()
    }
}

fn net(name: &str, dp: Box<dyn Datapath>, state_dir: &Path) -> Net {
    Net {
        name: name.to_string(),
        dp,
        records: state_dir.join(name),
    }
}

fn subdirs(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// The layout directories (`v1`, `v2`...) present for a network, for error messages.
fn versions(dir: &Path) -> String {
    match subdirs(dir) {
        Ok(v) if !v.is_empty() => format!("has {}", v.into_iter().collect::<Vec<_>>().join(", ")),
        _ => "empty".to_string(),
    }
}

/// Rows of every network, each from its own datapath.
pub(super) fn collect<B: std::borrow::Borrow<Net>, T>(
    nets: &[B],
    rows: impl Fn(&Net) -> Result<Vec<T>, DatapathError>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    for n in nets {
        let n = n.borrow();
        out.extend(rows(n).map_err(|e| Failure::from_err(&n.name, &e))?);
    }
    Ok(out)
}
