//! [`StateDir`]: the one owner of the layout of `<stateDir>/<network>/`. Every file the
//! plugin, the agent, `smarter-bpfctl` and the installer keep there is named here, so the
//! layout can be read in one place:
//!
//! | file | what | written by |
//! |---|---|---|
//! | `<container id>+<ifname>.json` | an attachment's record ([`super::Attachment`]) | ADD; removed by DEL, GC, the after-boot reconciliation |
//! | `datapath.choice` | the datapath chosen and why | every open of the datapath |
//! | `network.lock` | the network's node-wide lock ([`super::lock`]) | held by writers |
//! | `boot.lock`, `boot_id` | the after-boot reconciliation's lock and the boot it ran in | the first call of a boot |
//! | `ebpf-<network>.lock`, `ebpf-<network>.object` | the eBPF loader's lock and the id of the pinned object | loading |
//! | `opstats.stats`, `opstats.lock` | per-verb counters for the metrics | every verb |
//! | `pref64` | the NAT64 prefix the agent discovered ([`super::pref64`]) | the agent |

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::StateError;
use super::lock::DirLock;

/// `<stateDir>/<network>/` and every path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The directory of `network` under the configured `stateDir` (nothing is created).
    #[must_use]
    pub fn new(state_dir: &Path, network: &str) -> Self {
        Self {
            dir: state_dir.join(network),
        }
    }

    /// A network's directory given as it is (`<stateDir>/<network>`).
    #[must_use]
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (and its parents) with mode 0700; success when it exists.
    ///
    /// # Errors
    /// [`StateError`] naming the directory.
    pub fn create(&self) -> Result<(), StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| StateError {
                path: self.dir.clone(),
                source,
            })
    }

    /// The record of (container id, ifname). Container ids are `[A-Za-z0-9_.-]` and
    /// interface names have no `/`, so this is a plain file name; the `+` cannot occur in a
    /// container id.
    #[must_use]
    pub fn record(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}+{ifname}.json"))
    }

    /// `datapath.choice`.
    #[must_use]
    pub fn choice(&self) -> PathBuf {
        self.dir.join("datapath.choice")
    }

    /// `boot_id`.
    #[must_use]
    pub fn boot_id(&self) -> PathBuf {
        self.dir.join("boot_id")
    }

    /// `pref64`: the discovered NAT64 prefix ([`Self::read_pref64`], [`Self::write_pref64`]).
    #[must_use]
    pub fn pref64(&self) -> PathBuf {
        self.dir.join("pref64")
    }

    /// `opstats.stats` (its lock: [`Self::lock_opstats`]).
    #[must_use]
    pub fn opstats(&self) -> PathBuf {
        self.dir.join("opstats.stats")
    }

    /// The id of the object whose programs are pinned, `ebpf-<network>.object` (bpffs holds
    /// no regular files).
    #[must_use]
    pub fn ebpf_object(&self, network: &str) -> PathBuf {
        self.dir.join(format!("ebpf-{network}.object"))
    }

    /// Takes the network's node-wide lock (`network.lock`; see [`super::lock`]).
    ///
    /// # Errors
    /// [`StateError`] when it cannot be created or taken.
    pub fn lock_network(&self) -> Result<DirLock, StateError> {
        DirLock::acquire(&self.dir, super::lock::NETWORK_LOCK)
    }

    /// Takes the eBPF loader's lock (`ebpf-<network>.lock`): loading, pinning and swapping
    /// the programs.
    ///
    /// # Errors
    /// [`StateError`] when it cannot be created or taken.
    pub fn lock_ebpf_loader(&self, network: &str) -> Result<DirLock, StateError> {
        DirLock::acquire(&self.dir, &format!("ebpf-{network}.lock"))
    }

    /// Takes the lock of the operation statistics (`opstats.lock`).
    ///
    /// # Errors
    /// [`StateError`] when it cannot be created or taken.
    pub fn lock_opstats(&self) -> Result<DirLock, StateError> {
        DirLock::acquire(&self.dir, "opstats.lock")
    }

    /// Takes the after-boot reconciliation's lock (`boot.lock`).
    ///
    /// # Errors
    /// [`StateError`] when it cannot be created or taken.
    pub fn lock_boot(&self) -> Result<DirLock, StateError> {
        DirLock::acquire(&self.dir, super::lock::BOOT_LOCK)
    }

    /// Removes the directory with everything in it (the installer's uninstall); `false` when
    /// there was none.
    ///
    /// # Errors
    /// An I/O error other than "not found".
    pub fn remove_all(&self) -> io::Result<bool> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn layout_and_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let d = StateDir::new(tmp.path(), "net");
        assert_eq!(d, StateDir::at(&tmp.path().join("net")));
        assert_eq!(d.record("c1", "eth0"), tmp.path().join("net/c1+eth0.json"));
        assert!(!d.remove_all().unwrap());
        d.create().unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _lock = d.lock_network().unwrap();
        assert!(d.path().join("network.lock").exists());
        drop(d.lock_ebpf_loader("net").unwrap());
        assert!(d.path().join("ebpf-net.lock").exists());
        assert!(d.remove_all().unwrap());
        assert!(!d.path().exists());
    }
}
