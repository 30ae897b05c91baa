//! Where the plugin may write: `dataDir`, `stateDir` and `bpffsDir` must be absolute, plain
//! (no `.` or `..`), outside the system's own trees, and — checked on use, by
//! [`check_no_unsafe_symlinks`] — not reached through a symlink that someone other than root
//! could have planted (a config pointing into a pod-writable directory must not let a symlink
//! redirect the plugin's writes elsewhere).

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

/// Trees the plugin never writes into (the path itself or anything under it).
const FORBIDDEN_TREES: [&str; 10] = [
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev", "/proc",
];
/// Directories that may hold ours but are never ours themselves.
const FORBIDDEN_EXACT: [&str; 7] = ["/", "/var", "/tmp", "/run", "/home", "/root", "/sys/fs/bpf"];

/// Why `path` is refused for `key`, or `None` when it is acceptable.
#[must_use]
pub fn refuse_reason(key: &str, path: &Path) -> Option<&'static str> {
    if !path.is_absolute() {
        return Some("is not an absolute path");
    }
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Some("contains `.` or `..` components");
    }
    if FORBIDDEN_EXACT.iter().any(|f| path == Path::new(f)) {
        return Some("is a system directory, not a directory of its own");
    }
    if FORBIDDEN_TREES.iter().any(|f| path.starts_with(f)) {
        return Some("is inside a system tree (/etc, /usr, /boot, /dev, /proc...)");
    }
    let under_sys = path.starts_with("/sys");
    if key == "bpffsDir" {
        if under_sys && !path.starts_with("/sys/fs/bpf") {
            return Some("is under /sys but not under /sys/fs/bpf");
        }
    } else if under_sys {
        return Some("is under /sys");
    }
    None
}

/// Checks every existing component of `path`: a symlink is followed only when root owns it
/// and its directory is writable by root alone (e.g. Debian's `/var/run` → `/run`).
///
/// # Errors
///
/// A description naming the offending symlink.
pub fn check_no_unsafe_symlinks(path: &Path) -> Result<(), String> {
    let mut at = PathBuf::from("/");
    for c in path.components().skip(1) {
        let parent = at.clone();
        at.push(c);
        let meta = match fs::symlink_metadata(&at) {
            Ok(m) => m,
            // The rest does not exist yet: the plugin creates it, as real directories.
            Err(_) => return Ok(()),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let dir = fs::metadata(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        if meta.uid() != 0 {
            return Err(format!(
                "{} is a symlink owned by uid {}, not root",
                at.display(),
                meta.uid()
            ));
        }
        if dir.uid() != 0 || dir.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is a symlink in {}, which is writable by others than root",
                at.display(),
                parent.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    #[test]
    fn system_trees_and_relative_paths_are_refused() {
        for (key, path, refused) in [
            ("dataDir", "/var/run/cni/networks", false),
            ("stateDir", "/var/lib/smarter-cni", false),
            ("bpffsDir", "/sys/fs/bpf/smarter-cni", false),
            ("stateDir", "/tmp/smt-1/state", false),
            ("dataDir", "var/run", true),
            ("dataDir", "/var/lib/../../etc/cni", true),
            ("dataDir", "/etc/cni/net.d", true),
            ("stateDir", "/", true),
            ("stateDir", "/var", true),
            ("stateDir", "/proc/self", true),
            ("stateDir", "/sys/fs/bpf/x", true),
            ("bpffsDir", "/sys/fs/bpf", true),
            ("bpffsDir", "/sys/kernel/x", true),
            ("dataDir", "/usr/lib/cni", true),
        ] {
            assert_eq!(
                refuse_reason(key, Path::new(path)).is_some(),
                refused,
                "{key} {path}: {:?}",
                refuse_reason(key, Path::new(path))
            );
        }
    }

    #[test]
    fn symlinks_planted_by_others_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        symlink(&target, shared.join("link")).unwrap();
        let via_link = shared.join("link/data");
        let euid = nix::unistd::geteuid().as_raw();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        let private = check_no_unsafe_symlinks(&via_link);
        // A world-writable directory (like /tmp, or a hostPath a pod can write).
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_no_unsafe_symlinks(&via_link).unwrap_err();
        assert!(err.contains("writable by others"), "{err}");
        if euid == 0 {
            assert_eq!(
                private,
                Ok(()),
                "root's own symlink in a root-only directory"
            );
        } else {
            assert!(private.unwrap_err().contains("not root"));
        }
        // Paths without symlinks, existing or not, are fine.
        assert_eq!(check_no_unsafe_symlinks(&target.join("a/b")), Ok(()));
    }
}
