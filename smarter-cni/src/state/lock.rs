//! The network's node-wide lock: one `flock` on `<stateDir>/<network>/network.lock`, held by
//! every process that changes what the pods of the network share or what one pod owns (the
//! plugin's node-wide setup, attach and detach; the agent's uplink writes), so that any number
//! of concurrent plugin processes and the agent never interleave their read-check-write
//! sequences. The kernel drops the lock with the process, SIGKILL included.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::StateError;

/// The lock file's name in the network's state directory.
pub const NETWORK_LOCK: &str = "network.lock";

/// The lock file's name that serialises the after-boot reconciliation (not
/// [`NETWORK_LOCK`]: reconciling detaches, which takes that one).
pub const BOOT_LOCK: &str = "boot.lock";

/// An exclusive `flock`, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Blocks until `<dir>/<name>` is locked exclusively (creating `dir`, mode 0700 as the
    /// state store makes it, and the file).
    ///
    /// # Errors
    ///
    /// [`StateError`] when the directory or file cannot be created or the lock taken.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, StateError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError { path, source }
        };
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(err(dir))?;
        let path = dir.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err(&path))?;
        file.lock().map_err(err(&path))?;
        Ok(Self { _file: file, path })
    }

    /// The locked file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), NETWORK_LOCK).unwrap();
        let d = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _second = DirLock::acquire(&d, NETWORK_LOCK).unwrap();
            tx.send(()).unwrap();
        });
        // While the first is held the second cannot have been granted.
        assert!(rx.try_recv().is_err());
        drop(first);
        rx.recv().unwrap();
        t.join().unwrap();
    }
}
