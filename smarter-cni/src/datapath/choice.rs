//! Which datapath a network is on, and why: [`DatapathKind`] (parsed once, from the
//! configuration or a record), [`DatapathChoice`] as the plugin, the agent, STATUS,
//! `smarter-bpfctl status` and the agent's metrics report it, recorded in
//! `<stateDir>/<network>/datapath.choice` ([`ChoiceRecord`]).

use std::fmt;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ebpf::{EbpfError, EbpfUnavailable, probe};
use super::types::DatapathKind;
use crate::cni::DatapathMode;

/// Why a network is on its datapath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceReason {
    /// `datapath` names it.
    Configured,
    /// `datapath: auto` and eBPF can run.
    Auto,
    /// `datapath: auto` and eBPF cannot run: nftables.
    Unavailable(EbpfUnavailable),
}

/// The datapath serving a network and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathChoice {
    /// The datapath.
    pub datapath: DatapathKind,
    /// Why.
    pub reason: ChoiceReason,
}

impl DatapathChoice {
    /// The choice before anything is opened: `datapath` as configured, or for `auto` eBPF
    /// unless [`probe`] finds a reason against it. An `auto` eBPF choice can still end on
    /// nftables when the load fails ([`Self::after_failure`]).
    #[must_use]
    pub fn select(mode: DatapathMode, bpffs_root: &Path) -> Self {
        let (datapath, reason) = match mode {
            DatapathMode::Ebpf => (DatapathKind::Ebpf, ChoiceReason::Configured),
            DatapathMode::Nftables => (DatapathKind::Nftables, ChoiceReason::Configured),
            DatapathMode::Auto => match probe(bpffs_root) {
                Ok(_) => (DatapathKind::Ebpf, ChoiceReason::Auto),
                Err(u) => (DatapathKind::Nftables, ChoiceReason::Unavailable(u)),
            },
        };
        Self { datapath, reason }
    }

    /// Where an eBPF choice goes when opening eBPF failed with `e`: nftables for an `auto`
    /// choice and a reason that makes eBPF unusable, otherwise `None` (report `e`).
    #[must_use]
    pub fn after_failure(&self, e: &EbpfError) -> Option<Self> {
        if self.reason != ChoiceReason::Auto {
            return None;
        }
        EbpfUnavailable::from_error(e).map(|u| Self {
            datapath: DatapathKind::Nftables,
            reason: ChoiceReason::Unavailable(u),
        })
    }

    /// `configured`, `auto`, or the [`EbpfUnavailable::label`] (the metrics' `reason`).
    #[must_use]
    pub fn reason_label(&self) -> &'static str {
        match &self.reason {
            ChoiceReason::Configured => "configured",
            ChoiceReason::Auto => "auto",
            ChoiceReason::Unavailable(u) => u.label(),
        }
    }

    /// The record stored for `smarter-bpfctl` and the agent's view.
    #[must_use]
    pub fn record(&self) -> ChoiceRecord {
        ChoiceRecord {
            datapath: self.datapath.name().to_string(),
            reason: self.reason_label().to_string(),
            detail: match &self.reason {
                ChoiceReason::Unavailable(u) => Some(u.to_string()),
                _ => None,
            },
        }
    }

    /// Stores [`Self::record`] in `<state_dir>/<network>/datapath.choice` unless it already
    /// holds exactly that (atomically: temp file + rename, mode 0600).
    ///
    /// # Errors
    ///
    /// An I/O error of the write.
    pub fn store(&self, state_dir: &Path, network: &str) -> io::Result<()> {
        let record = self.record();
        if ChoiceRecord::load(state_dir, network).as_ref() == Some(&record) {
            return Ok(());
        }
        let path = ChoiceRecord::path(state_dir, network);
        let tmp = path.with_extension(format!("choice.tmp.{}", std::process::id()));
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let write = || -> io::Result<()> {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| io::Write::write_all(&mut f, &bytes))?;
            std::fs::rename(&tmp, &path)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

impl fmt::Display for DatapathChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.datapath.name();
        match &self.reason {
            ChoiceReason::Configured => write!(f, "{name} (configured)"),
            ChoiceReason::Auto => write!(f, "{name} (auto: eBPF is available)"),
            ChoiceReason::Unavailable(u) => write!(f, "{name} (auto: eBPF unavailable: {u})"),
        }
    }
}

/// The stored form of a [`DatapathChoice`] (`<stateDir>/<network>/datapath.choice`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceRecord {
    /// `ebpf` or `nftables` (`iptables` in records of earlier releases).
    pub datapath: String,
    /// `configured`, `auto`, `no_bpffs`, `permission` or `load`.
    pub reason: String,
    /// Why eBPF is unavailable, in words (only for the last three reasons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ChoiceRecord {
    /// `<state_dir>/<network>/datapath.choice`.
    #[must_use]
    pub fn path(state_dir: &Path, network: &str) -> PathBuf {
        crate::state::StateDir::new(state_dir, network).choice()
    }

    /// The stored record, `None` when there is none (or it cannot be read).
    #[must_use]
    pub fn load(state_dir: &Path, network: &str) -> Option<Self> {
        let bytes = std::fs::read(Self::path(state_dir, network)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::ebpf::EbpfError;

    #[test]
    fn labels_and_display() {
        let no = EbpfUnavailable::NoBpffs {
            path: "/x/pins".into(),
            why: "/x/pins is not on a bpf filesystem".into(),
        };
        assert_eq!(no.label(), "no_bpffs");
        assert!(no.to_string().contains("/x/pins"), "{no}");
        let choice = DatapathChoice {
            datapath: DatapathKind::Nftables,
            reason: ChoiceReason::Unavailable(no),
        };
        assert_eq!(choice.reason_label(), "no_bpffs");
        assert!(
            choice
                .to_string()
                .starts_with("nftables (auto: eBPF unavailable")
        );
        let rec = choice.record();
        assert_eq!(rec.datapath, "nftables");
        assert!(rec.detail.unwrap().contains("/x/pins"));
    }

    #[test]
    fn only_unusable_ebpf_falls_back() {
        let auto = DatapathChoice {
            datapath: DatapathKind::Ebpf,
            reason: ChoiceReason::Auto,
        };
        let configured = DatapathChoice {
            reason: ChoiceReason::Configured,
            ..auto.clone()
        };
        let eperm = EbpfError::Pin {
            path: "/p".into(),
            source: io::Error::from_raw_os_error(nix::libc::EPERM),
        };
        let fallback = auto.after_failure(&eperm).expect("EPERM falls back");
        assert_eq!(fallback.datapath, DatapathKind::Nftables);
        assert_eq!(fallback.reason_label(), "permission");
        assert_eq!(configured.after_failure(&eperm), None, "ebpf: an error");
        assert_eq!(
            auto.after_failure(&EbpfError::NoObject)
                .map(|c| c.reason_label()),
            Some("load")
        );
        let layout = EbpfError::LayoutMismatch {
            path: "/p".into(),
            field: "key size",
            expected: 4,
            found: 8,
        };
        assert_eq!(auto.after_failure(&layout), None, "never hidden");
        let unsafe_root = EbpfError::UnsafePinRoot {
            path: "/p".into(),
            reason: "owned by uid 1000".into(),
        };
        assert_eq!(auto.after_failure(&unsafe_root), None, "never hidden");
    }

    #[test]
    fn records_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("net")).unwrap();
        assert_eq!(ChoiceRecord::load(tmp.path(), "net"), None);
        let c = DatapathChoice {
            datapath: DatapathKind::Ebpf,
            reason: ChoiceReason::Auto,
        };
        c.store(tmp.path(), "net").unwrap();
        assert_eq!(ChoiceRecord::load(tmp.path(), "net"), Some(c.record()));
    }
}
