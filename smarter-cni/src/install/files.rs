//! Atomic file placement: a temporary file in the destination directory, written, synced and
//! given its mode, then renamed over the destination. A reader (a runtime listing
//! `/etc/cni/net.d`, an `exec` of the plugin) sees the old file or the new one, never a part;
//! a running plugin keeps its old inode, so replacing it never fails with `ETXTBSY`.
//!
//! Temporary names start with a dot and end in `.tmp`, so libcni (which reads `*.conf`,
//! `*.conflist`, `*.json`) never picks one up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::InstallError;

/// What [`place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The destination already had these bytes and this mode: untouched.
    Unchanged,
    /// The destination was created or replaced.
    Written,
}

/// Puts `bytes` at `dest` with `mode`, unless it already holds exactly that.
///
/// # Errors
///
/// [`InstallError::Io`] naming the step and path; the temporary file is removed.
pub fn place(dest: &Path, bytes: &[u8], mode: u32) -> Result<Placed, InstallError> {
    if is_identical(dest, bytes, mode) {
        return Ok(Placed::Unchanged);
    }
    let dir = dest
        .parent()
        .ok_or_else(|| InstallError::io("place", dest, io::ErrorKind::InvalidInput.into()))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_new(&tmp, bytes, mode)
        .map_err(|e| InstallError::io("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, dest).map_err(|e| InstallError::io("rename", dest, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename itself must survive a power cut (edge gateways lose power).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Placed::Written)
}

/// Removes `path`; `Ok(false)` when it was already gone.
///
/// # Errors
///
/// [`InstallError::Io`] for any other failure.
pub fn remove(path: &Path) -> Result<bool, InstallError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InstallError::io("remove", path, e)),
    }
}

/// SHA-256 of `bytes`, lowercase hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_identical(dest: &Path, bytes: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(dest) else {
        return false;
    };
    meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == bytes.len() as u64
        && fs::read(dest).is_ok_and(|old| old == bytes)
}

fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let _ = fs::remove_file(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(bytes)?;
    // The umask may have narrowed the mode given at creation.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn place_is_atomic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.conflist");
        assert_eq!(place(&dest, b"one", 0o644).unwrap(), Placed::Written);
        let ino = fs::metadata(&dest).unwrap().ino();
        assert_eq!(place(&dest, b"one", 0o644).unwrap(), Placed::Unchanged);
        assert_eq!(fs::metadata(&dest).unwrap().ino(), ino);
        // A reader holding the old file keeps reading the old bytes: a rename, not a rewrite.
        let old = File::open(&dest).unwrap();
        assert_eq!(place(&dest, b"two", 0o644).unwrap(), Placed::Written);
        assert_ne!(fs::metadata(&dest).unwrap().ino(), ino);
        assert_eq!(io::read_to_string(old).unwrap(), "one");
        // A mode change alone is a change.
        assert_eq!(place(&dest, b"two", 0o600).unwrap(), Placed::Written);
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}
