//! Where a network's pins live, the checks made before trusting them, and the loader lock.
//!
//! ```text
//! <bpffs_root>/<network>/v<LAYOUT_VERSION>/
//!     maps/<map name>        endpoints, ep_meta, ep_stats, config, verdicts, deny, ct_out, ct_in,
//!                            hostports, events, frag, ep_ifaces (smarter_common::maps)
//!     progs/<program name>   smarter_uplink, then smarter_pod (pinned last: means "loaded")
//!     links/<host ifname>    TCX links keeping a pod program attached
//!     links/uplink           the TCX link of smarter_uplink
//! <lock_dir>/ebpf-<network>.lock   (bpffs cannot hold regular files)
//! ```

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use aya::maps::MapData;
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
use smarter_common::{
    LAYOUT_VERSION,
    maps::{self, MapSpec},
};

use super::error::EbpfError;

/// The pin paths of one network at this build's [`LAYOUT_VERSION`].
#[derive(Debug, Clone)]
pub(super) struct PinLayout {
    dir: PathBuf,
}

impl PinLayout {
    /// The layout of `network` under `bpffs_root` (the name is validated, nothing is touched).
    pub(super) fn new(bpffs_root: &Path, network: &str) -> Result<Self, EbpfError> {
        validate_network(network)?;
        Ok(Self {
            dir: bpffs_root.join(network).join(format!("v{LAYOUT_VERSION}")),
        })
    }

    /// `<bpffs_root>/<network>/v<LAYOUT_VERSION>`.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn map(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    pub(super) fn prog(&self, name: &str) -> PathBuf {
        self.dir.join("progs").join(name)
    }

    /// The TCX link pin of a host interface (the name must have passed [`validate_ifname`]).
    pub(super) fn link(&self, ifname: &str) -> PathBuf {
        self.dir.join("links").join(ifname)
    }

    pub(super) fn create_dirs(&self) -> Result<(), EbpfError> {
        for sub in ["maps", "progs", "links"] {
            let path = self.dir.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| EbpfError::io("create pin directory", path, e))?;
        }
        Ok(())
    }
}

/// Refuses anything but a bpf filesystem (statfs magic `BPF_FS_MAGIC`).
pub(super) fn check_bpffs(path: &Path) -> Result<(), EbpfError> {
    if on_bpffs(path).map_err(|e| EbpfError::io("statfs", path, e))? {
        Ok(())
    } else {
        Err(EbpfError::NotBpffs { path: path.into() })
    }
}

fn on_bpffs(path: &Path) -> io::Result<bool> {
    Ok(statfs(path)?.filesystem_type() == BPF_FS_MAGIC)
}

/// What [`probe_root`] found at a pin root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::datapath) enum RootState {
    /// The pin root exists on a bpf filesystem.
    Exists,
    /// The pin root is missing; `ancestor`, its nearest existing directory, is on a bpf
    /// filesystem, so [`ensure_root`] may create it.
    Missing {
        /// The nearest existing ancestor.
        ancestor: PathBuf,
    },
}

/// Where the pin root `root` stands, without creating anything: an existing pin root must be
/// on a bpf filesystem, a missing one must have its nearest existing ancestor on one.
///
/// # Errors
///
/// [`EbpfError::NotBpffs`], [`EbpfError::NoBpffsAncestor`], or [`EbpfError::Io`] when a
/// path cannot be examined.
pub(in crate::datapath) fn probe_root(root: &Path) -> Result<RootState, EbpfError> {
    match fs::symlink_metadata(root) {
        Ok(_) => check_bpffs(root).map(|()| RootState::Exists),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let ancestor = nearest_existing(root)?;
            if on_bpffs(&ancestor).map_err(|e| EbpfError::io("statfs", &ancestor, e))? {
                Ok(RootState::Missing { ancestor })
            } else {
                Err(EbpfError::NoBpffsAncestor {
                    path: root.into(),
                    ancestor,
                })
            }
        }
        Err(e) => Err(EbpfError::io("stat pin root", root, e)),
    }
}

/// The nearest ancestor of `path` that exists (`/` at worst).
fn nearest_existing(path: &Path) -> Result<PathBuf, EbpfError> {
    for a in path.ancestors().skip(1) {
        match fs::metadata(a) {
            Ok(_) => return Ok(a.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EbpfError::io("stat", a, e)),
        }
    }
    Ok(PathBuf::from("/"))
}

/// Makes sure the pin root exists and can be trusted: when it is missing and its nearest
/// existing ancestor is on a bpf filesystem it is created (mode 0700, with any missing
/// parents, all on that bpffs); nothing is ever created on another file system. Then it must
/// be a directory on a bpf filesystem, not reached through a symlink someone other than root
/// could have planted, owned by root and writable by root alone (the checks `dataDir` and
/// `stateDir` get). Returns whether it was created.
///
/// # Errors
///
/// As [`probe_root`]; [`EbpfError::Io`] when it cannot be created;
/// [`EbpfError::UnsafePinRoot`] when it fails the ownership and symlink checks.
pub(in crate::datapath) fn ensure_root(root: &Path) -> Result<bool, EbpfError> {
    let created = match probe_root(root)? {
        RootState::Exists => false,
        RootState::Missing { ancestor } => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| EbpfError::io("create pin root", root, e))?;
            tracing::info!(
                path = %root.display(),
                bpffs = %ancestor.display(),
                "created the pin root (mode 0700)"
            );
            true
        }
    };
    // Still on bpffs (nothing was mounted in between), and trustworthy.
    check_bpffs(root)?;
    check_root_safe(root)?;
    Ok(created)
}

/// The ownership and symlink checks of a pin root (see [`ensure_root`]).
fn check_root_safe(root: &Path) -> Result<(), EbpfError> {
    let refuse = |reason: String| EbpfError::UnsafePinRoot {
        path: root.into(),
        reason,
    };
    crate::cni::config::paths::check_no_unsafe_symlinks(root).map_err(refuse)?;
    let meta = fs::metadata(root).map_err(|e| EbpfError::io("stat pin root", root, e))?;
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != 0 {
        return Err(refuse(format!("is owned by uid {}, not root", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "has mode {:04o}: writable by others than root",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Network names become a directory name: the CNI rule `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`, at most
/// 128 bytes (so never `.`, `..` or a path).
pub(super) fn validate_network(name: &str) -> Result<(), EbpfError> {
    let refuse = |reason| EbpfError::InvalidName {
        what: "network",
        name: name.into(),
        reason,
    };
    let mut bytes = name.bytes();
    match bytes.next() {
        None => Err(refuse("empty")),
        Some(first) if !first.is_ascii_alphanumeric() => {
            Err(refuse("must start with a letter or digit"))
        }
        _ if name.len() > 128 => Err(refuse("longer than 128 bytes")),
        _ if !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) => {
            Err(refuse("only letters, digits, '_', '.' and '-' are allowed"))
        }
        _ => Ok(()),
    }
}

/// Interface names become link pin names: the kernel's own rule (`dev_valid_name`).
pub(super) fn validate_ifname(name: &str) -> Result<(), EbpfError> {
    let refuse = |reason| EbpfError::InvalidName {
        what: "interface",
        name: name.into(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        Err(refuse("must be 1 to 15 bytes"))
    } else if name == "." || name == ".." {
        Err(refuse("reserved name"))
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Err(refuse("contains '/', ':', NUL or whitespace"))
    } else {
        Ok(())
    }
}

/// Takes the network's loader lock (exclusive `flock` on `<lock_dir>/ebpf-<network>.lock`),
/// held until the returned guard is dropped.
pub(super) fn lock(lock_dir: &Path, network: &str) -> Result<crate::state::DirLock, EbpfError> {
    crate::state::StateDir::at(lock_dir)
        .lock_ebpf_loader(network)
        .map_err(|e| EbpfError::io("lock", &e.path, e.source))
}

/// Whether a pin exists (errors other than "not found" are reported).
pub(super) fn exists(path: &Path) -> Result<bool, EbpfError> {
    path.try_exists()
        .map_err(|e| EbpfError::io("stat pin", path, e))
}

/// Opens a pinned map after checking it has exactly the layout `spec` describes.
/// Maps whose capacity comes from the configuration (`ctMaxEntries`), not from the build: any
/// size is accepted when they are reopened.
pub(super) const SIZED_BY_CONFIG: [&str; 4] =
    [maps::CT_OUT, maps::CT_IN, maps::CT6_OUT, maps::CT6_IN];

pub(super) fn open_map(path: &Path, spec: &MapSpec) -> Result<MapData, EbpfError> {
    let op = || format!("open pin {}", path.display());
    let data = MapData::from_pin(path).map_err(|e| EbpfError::map(spec.name, op(), e))?;
    let info = data
        .info()
        .map_err(|e| EbpfError::map(spec.name, op(), e))?;
    let found_type = info.map_type().map_or(u32::MAX, |t| t as u32);
    let checks = [
        ("type", spec.kind as u32, found_type),
        ("key size", spec.key_size, info.key_size()),
        ("value size", spec.value_size, info.value_size()),
        ("max entries", spec.max_entries, info.max_entries()),
    ];
    for (field, expected, found) in checks {
        if field == "max entries" && SIZED_BY_CONFIG.contains(&spec.name) {
            continue;
        }
        if expected != found {
            return Err(EbpfError::LayoutMismatch {
                path: path.into(),
                field,
                expected,
                found,
            });
        }
    }
    Ok(data)
}

/// Removes a pin; success when it is already gone.
pub(super) fn remove_pin(path: &Path) -> Result<(), EbpfError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(EbpfError::io("remove pin", path, e)),
        _ => Ok(()),
    }
}

/// Removes every pin of `network` (all layout versions) under `bpffs_root`: maps, programs and
/// links, which detaches TCX attachments nobody else holds. For uninstall and tests.
///
/// # Errors
///
/// [`EbpfError::InvalidName`] for a bad network name, [`EbpfError::NotBpffs`] when `bpffs_root`
/// is not a bpf filesystem, [`EbpfError::Io`] when removal fails. Success when nothing is pinned.
pub fn remove_network_pins(bpffs_root: &Path, network: &str) -> Result<(), EbpfError> {
    validate_network(network)?;
    let dir = bpffs_root.join(network);
    if !exists(&dir)? {
        return Ok(());
    }
    check_bpffs(bpffs_root)?;
    fs::remove_dir_all(&dir).map_err(|e| EbpfError::io("remove pins", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names() {
        for ok in ["smartnet", "a", "net-1.x_y", "0"] {
            validate_network(ok).unwrap();
        }
        for bad in ["", ".", "..", "-x", "a/b", "a b", &"n".repeat(129)] {
            assert!(validate_network(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "smv0123456789ab", "veth-1.x"] {
            validate_ifname(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layout_paths() {
        let pins = PinLayout::new(Path::new("/sys/fs/bpf/smarter"), "smartnet").unwrap();
        let v = format!("/sys/fs/bpf/smarter/smartnet/v{LAYOUT_VERSION}");
        assert_eq!(pins.dir(), Path::new(&v));
        assert_eq!(
            pins.map("endpoints"),
            Path::new(&format!("{v}/maps/endpoints"))
        );
        assert_eq!(
            pins.prog("smarter_pod"),
            Path::new(&format!("{v}/progs/smarter_pod"))
        );
        assert_eq!(pins.link("smv01"), Path::new(&format!("{v}/links/smv01")));
        assert!(PinLayout::new(Path::new("/x"), "../etc").is_err());
    }

    #[test]
    fn bpffs_check_refuses_other_filesystems() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_bpffs(tmp.path()),
            Err(EbpfError::NotBpffs { .. })
        ));
        assert!(matches!(
            check_bpffs(&tmp.path().join("missing")),
            Err(EbpfError::Io { .. })
        ));
    }
}
