//! The node installer run by the `DaemonSet`'s init container (`smarter-agent install`), its
//! uninstall step, and the agent's health probe.
//!
//! [`install`] validates everything first — the conflist built from the ConfigMap
//! ([`settings`]) goes through the plugin's own parser, the binaries must be there — then
//! places the binaries in the CNI bin directory and, last, the conflist in the CNI config
//! directory (so the conflist never names a plugin that is not there yet). Every file is placed
//! atomically (temp file + rename) and only when it differs ([`files`]); a second run with
//! the same inputs changes nothing, not even an mtime. What was placed is recorded in a
//! [`Manifest`] in `stateDir`.
//!
//! When the conflist may use eBPF, [`install`] also creates the pin root (`bpffsDir`) on the
//! node's bpf file system if it is missing ([`prepare_pin_root`]); without a bpf file system
//! it only warns.
//!
//! [`uninstall`] removes exactly what the manifest lists (files still holding what was
//! written); while pods are attached it keeps the plugin binary (the runtime needs it to
//! tear them down) and the datapath; once none is, it also removes the network's pins and
//! programs, nftables tables, bridge and state ([`cleanup`]).
//!
//! [`health`] is the exec probe of the agent container (the image has no shell).

mod cleanup;
pub mod cli;
mod error;
pub mod files;
pub mod health;
pub mod manifest;
pub mod settings;

use std::fs;
use std::path::{Path, PathBuf};

pub use error::InstallError;
pub use manifest::{FileKind, InstalledFile, Manifest};
pub use settings::{Conflist, KNOBS, Knob, KnobKind, conflist_from};

use files::Placed;

/// Default conflist file name: sorts before the usual `10-*.conflist` (flannel, bridge), so
/// the runtime picks it as the node's network.
pub const DEFAULT_CONFLIST_NAME: &str = "05-smarter-cni.conflist";
/// The binaries installed by default: the plugin, and `smarter-bpfctl` for operators on the
/// node.
pub const DEFAULT_BINARIES: [&str; 2] = ["smarter-cni", "smarter-bpfctl"];

/// Where the binaries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CniBinDir {
    /// `<root>/usr/libexec/cni` where that directory exists, else `<root>/opt/cni/bin`.
    Auto {
        /// The host's root as seen by the installer (`/`, or a host mount).
        root: PathBuf,
    },
    /// This directory.
    Path(PathBuf),
}

impl CniBinDir {
    /// The directory this resolves to now.
    #[must_use]
    pub fn resolve(&self) -> PathBuf {
        match self {
            Self::Path(p) => p.clone(),
            Self::Auto { root } => {
                let libexec = root.join("usr/libexec/cni");
                if libexec.is_dir() {
                    libexec
                } else {
                    root.join("opt/cni/bin")
                }
            }
        }
    }
}

/// What to install and where.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// Directory holding the binaries to install (in the image: the installer's own).
    pub source_dir: PathBuf,
    /// File names of the binaries to install.
    pub binaries: Vec<String>,
    /// The CNI bin directory.
    pub cni_bin_dir: CniBinDir,
    /// The CNI config directory (`/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
    /// The conflist's file name in it.
    pub conflist_name: String,
    /// The validated conflist ([`conflist_from`]).
    pub conflist: Conflist,
}

/// What [`install`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Files created or replaced.
    pub written: Vec<PathBuf>,
    /// Files that already held exactly this.
    pub unchanged: Vec<PathBuf>,
    /// Files of a previous install no longer wanted (another name or directory), removed.
    pub removed: Vec<PathBuf>,
    /// Things an operator should know (another config sorting first, no bpf file system for
    /// the pin root...).
    pub warnings: Vec<String>,
    /// The pin root (`bpffsDir`), when this run created it (see [`prepare_pin_root`]).
    pub created_pin_root: Option<PathBuf>,
}

/// Installs the binaries and the conflist; see the [module docs](self).
///
/// # Errors
///
/// [`InstallError::MissingBinary`] before anything is touched; [`InstallError::Io`] when a
/// file cannot be placed (files already placed stay: each is complete and valid).
pub fn install(cfg: &InstallConfig) -> Result<InstallReport, InstallError> {
    // Validate first: every source binary must be readable before anything changes.
    let mut sources = Vec::new();
    for name in &cfg.binaries {
        let path = cfg.source_dir.join(name);
        let bytes = fs::read(&path).map_err(|_| InstallError::MissingBinary { path })?;
        sources.push((name, bytes));
    }
    let bin_dir = cfg.cni_bin_dir.resolve();
    for dir in [&bin_dir, &cfg.cni_conf_dir] {
        fs::create_dir_all(dir).map_err(|e| InstallError::io("create directory", dir, e))?;
    }
    let net = &cfg.conflist.netconf;
    let previous = Manifest::load(&net.state_dir)?;

    let mut report = InstallReport::default();
    let mut placed = Vec::new();
    let mut put = |kind, path: PathBuf, bytes: &[u8], mode| -> Result<(), InstallError> {
        match files::place(&path, bytes, mode)? {
            Placed::Written => report.written.push(path.clone()),
            Placed::Unchanged => report.unchanged.push(path.clone()),
        }
        placed.push(InstalledFile {
            kind,
            path,
            sha256: files::sha256_hex(bytes),
        });
        Ok(())
    };
    for (name, bytes) in &sources {
        put(FileKind::Binary, bin_dir.join(name), bytes, 0o755)?;
    }
    let conflist_path = cfg.cni_conf_dir.join(&cfg.conflist_name);
    put(
        FileKind::Conflist,
        conflist_path.clone(),
        &cfg.conflist.bytes,
        0o644,
    )?;

    // A previous install's files that this one no longer places (renamed, moved): ours, so
    // they go — unless someone replaced them since.
    for old in previous.iter().flat_map(|m| &m.files) {
        if !placed.iter().any(|p| p.path == old.path) && still_ours(old) {
            files::remove(&old.path)?;
            report.removed.push(old.path.clone());
        }
    }
    let manifest = Manifest {
        format: 1,
        files: placed,
        network: net.name.clone(),
        bridge: net.bridge.clone(),
        bpffs_dir: net.bpffs_dir.clone(),
        state_dir: net.state_dir.clone(),
    };
    manifest.store()?;
    report.warnings.extend(sorts_first_warning(&conflist_path));
    match prepare_pin_root(net) {
        Ok(created) => report.created_pin_root = created,
        Err(w) => report.warnings.push(w),
    }
    Ok(report)
}

/// Creates the network's pin root (`bpffsDir`) when the conflist may use eBPF (`datapath`
/// `auto` or `ebpf`), it is missing and its nearest existing ancestor is on a bpf file system:
/// mode 0700, root-owned, then checked as the plugin checks it
/// ([`crate::datapath::ensure_pin_root`]). Nothing is created on another file system.
/// `Ok(Some(path))` when it was created.
///
/// # Errors
///
/// A warning for the operator saying why eBPF will not work (the install itself goes on: with
/// `auto` the plugin then uses nftables, with `ebpf` ADD fails with code 103).
pub fn prepare_pin_root(net: &crate::cni::NetConf) -> Result<Option<PathBuf>, String> {
    if net.datapath == crate::cni::DatapathMode::Nftables {
        return Ok(None);
    }
    match crate::datapath::ensure_pin_root(&net.bpffs_dir) {
        Ok(created) => Ok(created.then(|| net.bpffs_dir.clone())),
        Err(e) => Err(match net.datapath {
            crate::cni::DatapathMode::Ebpf => format!(
                "eBPF datapath unavailable: {e}; with datapath ebpf every ADD fails (code 103) \
                 until this is fixed"
            ),
            _ => format!("eBPF datapath unavailable: {e}; datapath auto will use nftables"),
        }),
    }
}

/// What to uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallConfig {
    /// The `stateDir` holding the install manifest.
    pub state_dir: PathBuf,
    /// Remove the binaries even while pods are attached (their teardown will then fail).
    pub force: bool,
    /// Leave the datapath (pins, programs, rules, bridge, state) alone.
    pub keep_datapath: bool,
}

/// What [`uninstall`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UninstallReport {
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Files kept, with the reason.
    pub kept: Vec<(PathBuf, String)>,
    /// Datapath objects removed (pins, tables, bridge, state), described.
    pub datapath: Vec<String>,
    /// Attachments (pods) still recorded for the network.
    pub attachments: usize,
    /// False when no manifest was found (nothing was installed here).
    pub had_manifest: bool,
}

/// Removes what [`install`] placed; see the [module docs](self).
///
/// # Errors
///
/// [`InstallError::Manifest`] for an unreadable manifest; [`InstallError::Incomplete`] naming
/// every step that failed (the others are still done).
pub fn uninstall(cfg: &UninstallConfig) -> Result<UninstallReport, InstallError> {
    let mut report = UninstallReport::default();
    let Some(manifest) = Manifest::load(&cfg.state_dir)? else {
        return Ok(report);
    };
    report.had_manifest = true;
    let mut failures = Vec::new();
    report.attachments = cleanup::attachment_count(&manifest.state_dir, &manifest.network)
        .unwrap_or_else(|| {
            failures.push(format!(
                "cannot list the attachment records in {}: treating the network as in use",
                manifest.state_dir.join(&manifest.network).display()
            ));
            1
        });
    let mut kept_files = Vec::new();
    // The conflist first: from now on no new pod is put on this network.
    let mut ordered = manifest.files.clone();
    ordered.sort_by_key(|f| f.kind != FileKind::Conflist);
    for f in ordered {
        if !f.path.exists() {
            continue; // Already gone: nothing to do, nothing to track.
        }
        if !still_ours(&f) {
            report
                .kept
                .push((f.path.clone(), "changed since it was installed".into()));
            continue; // Someone else's now: no longer tracked.
        }
        if f.kind == FileKind::Binary && report.attachments > 0 && !cfg.force {
            let why = format!(
                "{} pod(s) still attached need it for their teardown (--force removes it)",
                report.attachments
            );
            report.kept.push((f.path.clone(), why));
            kept_files.push(f);
            continue;
        }
        match files::remove(&f.path) {
            Ok(_) => report.removed.push(f.path.clone()),
            Err(e) => {
                failures.push(e.to_string());
                kept_files.push(f);
            }
        }
    }
    if report.attachments == 0 && !cfg.keep_datapath {
        let (done, errors) = cleanup::remove_datapath(&manifest);
        report.datapath = done;
        failures.extend(errors);
    }
    let manifest_path = Manifest::path_in(&cfg.state_dir);
    let stored = if kept_files.is_empty() {
        files::remove(&manifest_path).map(|_| ())
    } else {
        Manifest {
            files: kept_files,
            ..manifest
        }
        .store()
        .map(|_| ())
    };
    if let Err(e) = stored {
        failures.push(e.to_string());
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(InstallError::Incomplete(failures))
    }
}

/// True when `f` still holds what the installer wrote.
fn still_ours(f: &InstalledFile) -> bool {
    fs::read(&f.path).is_ok_and(|bytes| files::sha256_hex(&bytes) == f.sha256)
}

/// A warning when another network configuration sorts before ours (the runtime would use it).
fn sorts_first_warning(ours: &Path) -> Option<String> {
    let dir = ours.parent()?;
    let name = ours.file_name()?.to_string_lossy().into_owned();
    let mut earlier: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|ext| n.ends_with(ext))
                && *n < name
        })
        .collect();
    earlier.sort();
    (!earlier.is_empty()).then(|| {
        format!(
            "{} sort(s) before {name} in {}: the runtime uses the first file, so pods will not \
             get smarter-cni; remove it or choose a lower --conflist-name",
            earlier.join(", "),
            dir.display()
        )
    })
}
