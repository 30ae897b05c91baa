//! The install manifest: what the installer put on the host, so uninstall removes exactly
//! that. Kept at `<stateDir>/install-manifest.json` (mode 0600), written atomically.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::InstallError;
use super::files;

/// File name of the manifest inside `stateDir`.
pub const MANIFEST_NAME: &str = "install-manifest.json";

/// What an installed file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A binary in the CNI bin directory (the runtime execs it for pods still attached).
    Binary,
    /// The conflist in the CNI config directory.
    Conflist,
}

/// One file the installer placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFile {
    /// What it is.
    pub kind: FileKind,
    /// Where it is (as the installer saw the path).
    pub path: PathBuf,
    /// SHA-256 of what was written: uninstall leaves a file someone else replaced since.
    pub sha256: String,
}

/// Everything one install left on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The manifest format (1).
    pub format: u32,
    /// The binaries and the conflist.
    pub files: Vec<InstalledFile>,
    /// The network the conflist configures (its pins, rules, bridge and records).
    pub network: String,
    /// Its bridge.
    pub bridge: String,
    /// Its pin root.
    pub bpffs_dir: PathBuf,
    /// Its state directory (attachment records live in `<stateDir>/<network>/`).
    pub state_dir: PathBuf,
}

impl Manifest {
    /// The manifest's path in `state_dir`.
    #[must_use]
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(MANIFEST_NAME)
    }

    /// Reads the manifest of `state_dir`; `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`InstallError::Io`] when it cannot be read, [`InstallError::Manifest`] when it is not
    /// a manifest.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, InstallError> {
        let path = Self::path_in(state_dir);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| InstallError::Manifest {
                        path,
                        why: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InstallError::io("read", &path, e)),
        }
    }

    /// Writes the manifest into `self.state_dir` (created 0700 if missing); untouched when
    /// identical.
    ///
    /// # Errors
    ///
    /// [`InstallError::Io`].
    pub fn store(&self) -> Result<files::Placed, InstallError> {
        create_private_dir(&self.state_dir)?;
        let mut bytes = serde_json::to_vec_pretty(self).expect("the manifest serializes");
        bytes.push(b'\n');
        files::place(&Self::path_in(&self.state_dir), &bytes, 0o600)
    }
}

/// Creates `dir` and its parents with mode 0700 (as the plugin does for `stateDir`).
///
/// # Errors
///
/// [`InstallError::Io`].
pub fn create_private_dir(dir: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| InstallError::io("create directory", dir, e))
}
