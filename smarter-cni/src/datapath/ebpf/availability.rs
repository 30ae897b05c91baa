//! Whether the eBPF datapath can run on this node: [`EbpfUnavailable`], the typed reason it
//! cannot (no bpf file system for the pin root, no permission to use bpf(2), the kernel
//! refusing the programs); [`probe`] finds the first two without creating anything (STATUS,
//! `smarter-bpfctl`); [`EbpfUnavailable::from_error`] classifies a failed load;
//! [`ensure_pin_root`] creates the pin root on bpffs.
//!
//! `datapath: auto` falls back to nftables only for an [`EbpfUnavailable`] reason
//! ([`crate::datapath::DatapathChoice::after_failure`]); any other eBPF failure (a changed map
//! layout, a full map, an unsafe pin root...) is an error, never a silent switch.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::error::EbpfError;
use super::pins::{self, RootState};

/// Why the eBPF datapath cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EbpfUnavailable {
    /// The pin root is not on a bpf file system, or is missing and its nearest existing
    /// ancestor is not on one (so it is not created).
    NoBpffs {
        /// The pin root (`bpffsDir`).
        path: PathBuf,
        /// What was found, naming the paths checked.
        why: String,
    },
    /// bpf(2) refused with `EPERM`/`EACCES`: no `CAP_BPF`/`CAP_SYS_ADMIN`, or a seccomp or
    /// LSM policy.
    Permission(String),
    /// The kernel refused the programs (the verifier, a missing helper) or the object could not
    /// be loaded at all.
    Load(String),
}

impl EbpfUnavailable {
    /// A short stable label: `no_bpffs`, `permission` or `load` (metrics, JSON).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoBpffs { .. } => "no_bpffs",
            Self::Permission(_) => "permission",
            Self::Load(_) => "load",
        }
    }

    /// The reason behind a failed eBPF open or load, or `None` when the failure is not one
    /// that makes eBPF unusable (it must then be reported, not worked around).
    #[must_use]
    pub fn from_error(e: &EbpfError) -> Option<Self> {
        if permission_denied(e) {
            return Some(Self::Permission(e.to_string()));
        }
        match e {
            EbpfError::NotBpffs { path } | EbpfError::NoBpffsAncestor { path, .. } => {
                Some(Self::NoBpffs {
                    path: path.clone(),
                    why: e.to_string(),
                })
            }
            EbpfError::Load { .. } | EbpfError::NoObject | EbpfError::MissingInObject { .. } => {
                Some(Self::Load(e.to_string()))
            }
            EbpfError::Program { op, .. } if op == "load" => Some(Self::Load(e.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for EbpfUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBpffs { why, .. } => write!(f, "no bpf filesystem: {why}"),
            Self::Permission(why) => write!(
                f,
                "no permission to use bpf() (needs CAP_BPF or CAP_SYS_ADMIN): {why}"
            ),
            Self::Load(why) => write!(f, "the kernel refused the eBPF programs: {why}"),
        }
    }
}

impl std::error::Error for EbpfUnavailable {}

/// Whether `e` (or anything in its source chain) is `EPERM` or `EACCES`.
fn permission_denied(e: &EbpfError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(
                io.raw_os_error(),
                Some(nix::libc::EPERM | nix::libc::EACCES)
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether eBPF can run with its pins under `bpffs_root`, without creating anything: the pin
/// root is on a bpf file system, or missing with its nearest existing ancestor on one (then
/// opening the datapath creates it), and bpf(2) is permitted. A kernel refusing the programs
/// is only found by loading them.
///
/// # Errors
///
/// [`EbpfUnavailable::NoBpffs`] or [`EbpfUnavailable::Permission`].
pub fn probe(bpffs_root: &Path) -> Result<PinRootState, EbpfUnavailable> {
    let state = match pins::probe_root(bpffs_root) {
        Ok(RootState::Exists) => PinRootState::Exists,
        Ok(RootState::Missing { ancestor }) => PinRootState::WillBeCreated { ancestor },
        Err(e) => {
            return Err(EbpfUnavailable::NoBpffs {
                path: bpffs_root.into(),
                why: e.to_string(),
            });
        }
    };
    match super::sys::probe_map_create() {
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EPERM | nix::libc::EACCES)) => Err(
            EbpfUnavailable::Permission(format!("creating a test map: {e}")),
        ),
        // Anything else (an old kernel's EINVAL...) is for the real load to judge.
        _ => Ok(state),
    }
}

/// What [`probe`] found at the pin root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinRootState {
    /// It exists on a bpf file system.
    Exists,
    /// It is missing; its nearest existing ancestor is on a bpf file system, so it is created
    /// (mode 0700) when the datapath is first opened.
    WillBeCreated {
        /// The nearest existing ancestor (normally the parent, e.g. `/sys/fs/bpf`).
        ancestor: PathBuf,
    },
}

/// Creates the pin root when it is missing and its nearest existing ancestor is on a bpf file
/// system (mode 0700, root-owned), then checks it as the plugin checks its directories (a bpf
/// file system, no unsafe symlink, owned by root, writable by root alone). Returns whether it
/// was created. The installer calls it; opening the datapath does the same.
///
/// # Errors
///
/// [`EbpfError::NotBpffs`] / [`EbpfError::NoBpffsAncestor`] (nothing is created),
/// [`EbpfError::UnsafePinRoot`], [`EbpfError::Io`].
pub fn ensure_pin_root(bpffs_root: &Path) -> Result<bool, EbpfError> {
    pins::ensure_root(bpffs_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_bpffs_ancestors_are_named_and_nothing_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/smarter-cni");
        let err = probe(&root).unwrap_err();
        assert_eq!(err.label(), "no_bpffs");
        let text = err.to_string();
        assert!(text.contains(&root.display().to_string()), "{text}");
        assert!(text.contains(&tmp.path().display().to_string()), "{text}");
        let err = ensure_pin_root(&root).unwrap_err();
        assert!(
            matches!(&err, EbpfError::NoBpffsAncestor { ancestor, .. } if ancestor == tmp.path()),
            "{err}"
        );
        assert!(!tmp.path().join("a").exists(), "nothing created");
    }
}
