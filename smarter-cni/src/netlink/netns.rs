//! Network namespace files and entering them on the calling thread.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use super::NetlinkError;

/// An open network namespace (e.g. `/run/netns/x` or `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    path: PathBuf,
}

impl NetnsFile {
    /// Opens the namespace at `path`.
    ///
    /// # Errors
    /// [`NetlinkError::Netns`] when the path cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetlinkError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| NetlinkError::Netns {
            path: path.display().to_string(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc_enoent())),
        })?;
        Ok(Self { file, path })
    }

    /// The namespace of the calling thread.
    ///
    /// # Errors
    /// [`NetlinkError::Netns`] when `/proc/thread-self/ns/net` cannot be opened.
    pub fn current() -> Result<Self, NetlinkError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The raw descriptor, for netlink attributes such as `IFLA_NET_NS_FD`.
    #[must_use]
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The path it was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn enter(&self) -> Result<(), NetlinkError> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetlinkError::Netns {
            path: self.path.display().to_string(),
            source,
        })
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Enters a namespace on the calling thread and returns to the original one on
/// [`restore`](NetnsGuard::restore) or drop.
#[derive(Debug)]
pub struct NetnsGuard {
    original: Option<NetnsFile>,
}

impl NetnsGuard {
    /// Saves the current namespace and enters `ns`.
    ///
    /// # Errors
    /// [`NetlinkError::Netns`] when either namespace cannot be opened or entered.
    pub fn enter(ns: &NetnsFile) -> Result<Self, NetlinkError> {
        let original = NetnsFile::current()?;
        ns.enter()?;
        Ok(Self {
            original: Some(original),
        })
    }

    /// Returns to the original namespace, reporting failure (drop can only log it).
    ///
    /// # Errors
    /// [`NetlinkError::Netns`] when the original namespace cannot be re-entered.
    pub fn restore(mut self) -> Result<(), NetlinkError> {
        match self.original.take() {
            Some(orig) => orig.enter(),
            None => Ok(()),
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(orig) = self.original.take()
            && let Err(e) = orig.enter()
        {
            tracing::error!("cannot return to the original network namespace: {e}");
        }
    }
}
