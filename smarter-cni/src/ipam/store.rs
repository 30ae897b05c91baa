//! The on-disk store, byte-compatible with host-local's `backend/disk`.
//!
//! `<dataDir>/<network>/` holds:
//! - one file per allocated address, named by it (`172.39.0.5`), holding
//!   `<containerID>\r\n<ifname>` with no trailing newline (older host-local versions wrote
//!   only `<containerID>`; those legacy files match any interface name of that container);
//! - `last_reserved_ip.0`: the last reserved IPv4 address as text, no newline (range set
//!   index 0); `last_reserved_ip.1` the same for IPv6 (host-local's second range set, as a
//!   dual-stack host-local config with the IPv4 range first writes it);
//! - `lock`: the flock(2) target; host-local locks the very same file, so a gateway in the
//!   middle of an upgrade is safe too.
//!
//! # Crash safety
//! host-local creates the address file with `O_EXCL` and then writes it, so a crash in
//! between leaves an empty file: harmless to correctness (the address is merely leaked and
//! matches nobody) but wasteful. We instead write the record to a temporary file, fsync it,
//! and `link(2)` it to the address name: `link` fails with `EEXIST` exactly like `O_EXCL`
//! (so "taken" is still decided atomically by the file system), and the address file
//! appears with its full content or not at all. `rename(2)` would also be atomic but
//! silently replaces an existing file, so it is only a fallback, under the lock, on file
//! systems without hard links. The temporary name starts with a dot and is not an address,
//! so host-local ignores it (it parses file names as IPs); a leftover from a crash is
//! removed by the next writer, which holds the lock and so cannot race another writer.

use std::fmt::{Debug, Display};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::io_err;
use super::{Allocation, IpamError};

/// Separator between container id and interface name, as host-local writes it.
pub(super) const LINE_BREAK: &str = "\r\n";
/// An address family the store keeps files for: IPv4 or IPv6 addresses, named by their text.
pub(super) trait Family: Copy + Ord + Display + FromStr + Debug {
    /// host-local's round-robin cursor of this family's range set: `.0` for IPv4 (the first
    /// range set), `.1` for IPv6 (the second).
    const LAST_RESERVED_FILE: &'static str;
}

impl Family for Ipv4Addr {
    const LAST_RESERVED_FILE: &'static str = "last_reserved_ip.0";
}

impl Family for Ipv6Addr {
    const LAST_RESERVED_FILE: &'static str = "last_reserved_ip.1";
}

/// host-local's round-robin cursor for range set 0, the IPv4 one.
#[cfg(test)]
pub(super) const LAST_RESERVED_FILE: &str = <Ipv4Addr as Family>::LAST_RESERVED_FILE;
/// The lock file, shared with host-local.
pub(super) const LOCK_FILE: &str = "lock";
/// Scratch file for atomic writes; only the lock holder uses it.
pub(super) const TEMP_FILE: &str = ".smarter-cni.tmp";
/// Mode of address files and of `last_reserved_ip.0`.
pub(super) const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// The exact bytes host-local stores for (container id, ifname).
pub(super) fn encode_record(container_id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", container_id.trim())
}

/// Reads an address file's content: `<id>\r\n<ifname>`, or a legacy bare `<id>`.
/// Surrounding whitespace is ignored, as host-local does.
pub(super) fn parse_record<A: Family>(ip: A, content: &[u8]) -> Allocation<A> {
    let text = String::from_utf8_lossy(content);
    let text = text.trim();
    let (id, ifname) = match text.split_once(LINE_BREAK) {
        Some((id, ifname)) => (id, Some(ifname.to_owned())),
        None => (text, None),
    };
    Allocation {
        ip,
        container_id: id.to_owned(),
        ifname,
    }
}

/// The directory of one network.
#[derive(Debug, Clone)]
pub(super) struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates `<data_dir>/<network>/` (mode 0755, parents included) and its lock file.
    pub(super) fn open(data_dir: &Path, network: &str) -> Result<Self, IpamError> {
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let store = Self { dir };
        store.open_lock_file()?;
        Ok(store)
    }

    /// The network's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_lock_file(&self) -> Result<File, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_err("open", path))
    }

    /// Takes the exclusive flock, blocking until it is free. Each call opens the lock file
    /// afresh, so two holders never share an open file description: threads of one
    /// process serialize just like separate processes.
    pub(super) fn lock(&self) -> Result<Locked<'_>, IpamError> {
        let mut file = self.open_lock_file()?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(guard) => {
                    return Ok(Locked {
                        store: self,
                        _guard: guard,
                    });
                }
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(io_err("lock", self.dir.join(LOCK_FILE))(errno.into()));
                }
            }
        }
    }
}

/// The store while its lock is held; unlocked on drop.
pub(super) struct Locked<'a> {
    store: &'a Store,
    _guard: Flock<File>,
}

impl Locked<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// Every address file of family `A` (its name parses as an `A`), sorted by address.
    pub(super) fn records<A: Family>(&self) -> Result<Vec<Allocation<A>>, IpamError> {
        let dir = &self.store.dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<A>().ok()) else {
                continue;
            };
            if let Some(record) = self.record(ip)? {
                out.push(record);
            }
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// The allocation of `ip`, `None` when the address is free.
    pub(super) fn record<A: Family>(&self, ip: A) -> Result<Option<Allocation<A>>, IpamError> {
        let path = self.path(&ip.to_string());
        match fs::read(&path) {
            Ok(content) => Ok(Some(parse_record(ip, &content))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    /// Writes `content` to the scratch file (mode 0644 whatever the umask) and fsyncs it.
    fn write_temp(&self, content: &[u8]) -> Result<PathBuf, IpamError> {
        let tmp = self.path(TEMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::debug!("removed leftover {}", tmp.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", tmp)(e)),
        }
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            f.write_all(content)?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("write", &tmp)(e)
        })?;
        Ok(tmp)
    }

    /// Creates the file of `ip` holding `record`; `Ok(false)` when the address is taken.
    pub(super) fn reserve<A: Family>(&self, ip: A, record: &str) -> Result<bool, IpamError> {
        let tmp = self.write_temp(record.as_bytes())?;
        let target = self.path(&ip.to_string());
        let outcome = match fs::hard_link(&tmp, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                // No hard links here: under the lock, check-then-rename is just as exclusive.
                match target.try_exists() {
                    Ok(true) => Ok(false),
                    Ok(false) => fs::rename(&tmp, &target)
                        .map(|()| true)
                        .map_err(io_err("rename", &target)),
                    Err(e) => Err(io_err("stat", &target)(e)),
                }
            }
            Err(e) => Err(io_err("link", &target)(e)),
        };
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", tmp.display()),
        }
        outcome
    }

    /// Removes the file of `ip`; `Ok(false)` when it was already gone.
    pub(super) fn remove<A: Family>(&self, ip: A) -> Result<bool, IpamError> {
        let path = self.path(&ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// The round-robin cursor; `None` when absent or unparsable (the round robin restarts).
    pub(super) fn last_reserved<A: Family>(&self) -> Option<A> {
        let path = self.path(A::LAST_RESERVED_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let parsed = text.trim().parse().ok();
                if parsed.is_none() {
                    tracing::warn!("ignoring unparsable {}: {text:?}", path.display());
                }
                parsed
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                None
            }
        }
    }

    /// Replaces the round-robin cursor atomically (temporary file + rename).
    pub(super) fn set_last_reserved<A: Family>(&self, ip: A) -> Result<(), IpamError> {
        let tmp = self.write_temp(ip.to_string().as_bytes())?;
        let path = self.path(A::LAST_RESERVED_FILE);
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("rename", path)(e)
        })
    }

    /// Makes the directory's entries (created or removed files) durable.
    pub(super) fn sync_dir(&self) -> Result<(), IpamError> {
        let dir = &self.store.dir;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", dir))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 5);

    #[test]
    fn record_bytes_match_host_local() {
        assert_eq!(encode_record(" abc123 ", "eth0"), "abc123\r\neth0");
        let a = parse_record(IP, b"abc123\r\neth0");
        let six = parse_record(Ipv6Addr::LOCALHOST, b"abc123\r\neth0");
        assert_eq!(six.ifname.as_deref(), Some("eth0"));
        assert_eq!(
            (a.container_id.as_str(), a.ifname.as_deref()),
            ("abc123", Some("eth0"))
        );
    }

    #[test]
    fn parses_legacy_and_sloppy_records() {
        let legacy = parse_record(IP, b"abc123");
        assert_eq!(
            (legacy.container_id.as_str(), legacy.ifname),
            ("abc123", None)
        );
        let legacy_nl = parse_record(IP, b"abc123\n");
        assert_eq!(
            (legacy_nl.container_id.as_str(), legacy_nl.ifname),
            ("abc123", None)
        );
        let trailing = parse_record(IP, b"abc123\r\neth0\r\n");
        assert_eq!(trailing.ifname.as_deref(), Some("eth0"));
        let empty = parse_record(IP, b"");
        assert_eq!((empty.container_id.as_str(), empty.ifname), ("", None));
    }

    #[test]
    fn creates_missing_data_dir_and_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("not/yet");
        let store = Store::open(&data_dir, "net").unwrap();
        let meta = fs::metadata(store.dir()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, DIR_MODE);
        assert!(store.dir().join(LOCK_FILE).is_file());
    }

    #[test]
    fn reserve_is_exclusive_and_writes_exact_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let locked = store.lock().unwrap();
        assert!(locked.reserve(IP, "a\r\neth0").unwrap());
        assert!(!locked.reserve(IP, "b\r\neth0").unwrap());
        let path = store.dir().join("172.39.0.5");
        assert_eq!(fs::read(&path).unwrap(), b"a\r\neth0");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, FILE_MODE);
        assert!(!store.dir().join(TEMP_FILE).exists());
        assert!(locked.remove(IP).unwrap());
        assert!(!locked.remove(IP).unwrap());
    }

    #[test]
    fn leftover_temp_file_is_ignored_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        fs::write(store.dir().join(TEMP_FILE), b"half").unwrap();
        let locked = store.lock().unwrap();
        assert!(locked.records::<Ipv4Addr>().unwrap().is_empty());
        assert!(locked.reserve(IP, "a\r\neth0").unwrap());
        assert_eq!(
            fs::read(store.dir().join("172.39.0.5")).unwrap(),
            b"a\r\neth0"
        );
        assert!(!store.dir().join(TEMP_FILE).exists());
    }

    #[test]
    fn last_reserved_round_trips_without_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        let locked = store.lock().unwrap();
        assert_eq!(locked.last_reserved::<Ipv4Addr>(), None);
        locked.set_last_reserved(IP).unwrap();
        let path = store.dir().join(LAST_RESERVED_FILE);
        assert_eq!(fs::read(&path).unwrap(), b"172.39.0.5");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, FILE_MODE);
        assert_eq!(locked.last_reserved(), Some(IP));
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(locked.last_reserved::<Ipv4Addr>(), None);
        let six: Ipv6Addr = "fd00:ac27::5".parse().unwrap();
        assert_eq!(locked.last_reserved::<Ipv6Addr>(), None);
        locked.set_last_reserved(six).unwrap();
        let path6 = store.dir().join("last_reserved_ip.1");
        assert_eq!(fs::read(&path6).unwrap(), b"fd00:ac27::5");
        assert_eq!(locked.last_reserved::<Ipv6Addr>(), Some(six));
    }
}
