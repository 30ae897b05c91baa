//! The boot a network's records were written in: `<stateDir>/<network>/boot_id` holds the
//! kernel's boot id (`/proc/sys/kernel/random/boot_id`) of the last reconciliation. A
//! different id means the node went down since: its namespaces, veths, pins and (on tmpfs)
//! its IPAM files are gone, while the records in `stateDir` survived.

use super::StateDir;

const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id; `None` when the kernel does not tell (then nothing is reconciled).
#[must_use]
pub fn current() -> Option<String> {
    std::fs::read_to_string(KERNEL_BOOT_ID)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The boot id recorded in `dir`; `None` when there is none, or it is empty or torn (a file
/// written at power loss is treated as "another boot").
#[must_use]
pub fn recorded(dir: &StateDir) -> Option<String> {
    let text = std::fs::read_to_string(dir.boot_id()).ok()?;
    let id = text.trim();
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| id.to_owned())
}

/// Records `id` atomically (temp file, fsync, rename).
///
/// # Errors
///
/// When the file cannot be written.
pub fn record(dir: &StateDir, id: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.boot_id();
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_or_empty_ids_read_as_none_and_records_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::at(tmp.path());
        assert_eq!(recorded(&dir), None);
        std::fs::write(dir.boot_id(), "").unwrap();
        assert_eq!(recorded(&dir), None);
        std::fs::write(dir.boot_id(), "3f2a\0\0").unwrap();
        assert_eq!(recorded(&dir), None);
        let id = "0b7c6a9e-8a51-4d53-9f8e-3c1b2a4d5e6f";
        record(&dir, id).unwrap();
        assert_eq!(recorded(&dir).as_deref(), Some(id));
        assert!(current().is_some_and(|c| c.len() == 36));
    }
}
