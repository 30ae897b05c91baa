//! `smarter-bpfctl`: operators' view of the datapath from the node alone (no agent, no
//! Kubernetes). eBPF networks are read from their pins under `--bpffs-dir`; networks on the
//! nftables datapath are found through the plugin's records under `--state-dir` and read from
//! their tables (`status`, `endpoints`, `hostports`, `stats` and `traffic` work for both; the
//! conntrack, config and event commands are eBPF only).
//!
//! Every read command prints a human table by default and, with `-o json`, a JSON array of
//! objects (`monitor`: one object per line) whose fields are documented on the row types in
//! [`rows`]; the schema is stable: fields are only ever added (nullable where a datapath lacks them).
//! Writes (`ct flush`, `ct delete`) need `--yes` and say what they changed.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (a map that cannot be read, a broken pipe...) |
//! | 2 | usage: bad arguments, or a write without `--yes` (nothing changed) |
//! | 3 | nothing to work on: no pins and no nftables network, or `--network` unknown |
//! | 4 | permission denied (run as root, or with `CAP_BPF` and `CAP_NET_ADMIN`) |
//! | 5 | only pins of another layout version (both versions are named) |
//! | 6 | the command needs the eBPF datapath and every selected network uses nftables |
//!
//! Interface names (attachments, uplinks, traffic) resolve in the caller's network namespace: run it in
//! the node's (host) namespace.

pub mod args;
mod cli;
mod discover;
mod drift;
mod monitor;
mod output;
mod traffic;
mod write;

pub use crate::datapath::rows;

use std::fmt::Display;
use std::path::PathBuf;

pub use args::Cli;
pub use cli::run;
pub use discover::{Net, networks};

/// A failure with the exit code it maps to (see the module docs).
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
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

    fn denied(what: impl Display) -> Self {
        Self::new(
            4,
            format!("{what} (run as root, or with CAP_BPF and CAP_NET_ADMIN)"),
        )
    }

    /// Maps a datapath error of `network`: permission problems to exit code 4, the rest to 1.
    fn from_err(network: &str, e: &dyn Display) -> Self {
        let text = e.to_string();
        if text.contains("Operation not permitted") || text.contains("Permission denied") {
            Self::denied(format!("{network}: {text}"))
        } else {
            Self::new(1, format!("{network}: {text}"))
        }
    }
}

/// Default pin root, as the plugin's `bpffsDir` default.
#[must_use]
pub fn default_bpffs_dir() -> PathBuf {
    PathBuf::from(crate::cni::config::defaults::BPFFS_DIR)
}

/// Default record directory, as the plugin's `stateDir` default.
#[must_use]
pub fn default_state_dir() -> PathBuf {
    PathBuf::from(crate::cni::config::defaults::STATE_DIR)
}
