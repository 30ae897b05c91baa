//! `smarter-bpfctl`: operators' view of the pinned datapath, from the pins alone (no agent, no
//! Kubernetes). Every read command prints a human table by default and, with `-o json`, a JSON
//! array of objects whose fields are documented on the row types in [`rows`] (stable: fields
//! are only ever added). Writes (`ct flush`, `ct delete`) need `--yes` and say what they
//! changed.
//!
//! Exit codes: 0 success, 1 other failures, 2 usage, 3 no pins (no network, unknown network),
//! 4 permission denied, 5 pins of an incompatible layout version.
//!
//! Interface names (attachments, uplink) resolve in the caller's network namespace: run it in
//! the node's (host) namespace.

mod cli;
mod monitor;
pub mod rows;
mod write;

use std::path::{Path, PathBuf};

use smarter_common::LAYOUT_VERSION;

pub use cli::{Cli, run};

use crate::datapath::{EbpfDatapath, EbpfError};

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code (see the module docs).
    pub code: i32,
    /// One line for stderr.
    pub message: String,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn from_ebpf(network: &str, e: &EbpfError) -> Self {
        let text = e.to_string();
        let denied = text.contains("Operation not permitted") || text.contains("Permission denied");
        if denied {
            Self::new(
                4,
                format!("{network}: {text} (run as root, or with CAP_BPF and CAP_NET_ADMIN)"),
            )
        } else {
            Self::new(1, format!("{network}: {text}"))
        }
    }
}

/// The networks pinned under `root` with this build's layout, or the failure that explains why
/// there are none: no pins, an unknown `only` network, or only other layout versions.
///
/// # Errors
///
/// [`Failure`] with exit code 3, 4 or 5.
pub fn networks(root: &Path, only: Option<&str>) -> Result<Vec<(String, EbpfDatapath)>, Failure> {
    let entries = std::fs::read_dir(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Failure::new(4, format!("{}: {e}", root.display())),
        _ => Failure::new(
            3,
            format!(
                "no pins under {} ({e}): is smarter-cni installed, or is --bpffs-dir wrong?",
                root.display()
            ),
        ),
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| only.is_none_or(|o| o == n))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Failure::new(
            3,
            match only {
                Some(n) => format!("network {n} has no pins under {}", root.display()),
                None => format!("no network is pinned under {}", root.display()),
            },
        ));
    }
    let mut out = Vec::new();
    let mut incompatible = Vec::new();
    for name in names {
        match EbpfDatapath::open_existing(root, &name) {
            Ok(Some(dp)) => out.push((name, dp)),
            Ok(None) => incompatible.push(format!("{name} ({})", versions(&root.join(&name)))),
            Err(e) => return Err(Failure::from_ebpf(&name, &e)),
        }
    }
    if out.is_empty() {
        return Err(Failure::new(
            5,
            format!(
                "pins found for {} but none with this build's layout v{LAYOUT_VERSION}: upgrade \
                 or downgrade smarter-bpfctl to the plugin's version",
                incompatible.join(", ")
            ),
        ));
    }
    Ok(out)
}

/// The layout directories (`v1`, `v2`...) present for a network, for error messages.
fn versions(dir: &Path) -> String {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    if v.is_empty() {
        "empty".to_string()
    } else {
        format!("has {}", v.join(", "))
    }
}

/// Default pin root, as the plugin's `bpffsDir` default.
#[must_use]
pub fn default_bpffs_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/smarter-cni")
}
