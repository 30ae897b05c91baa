//! Per-attachment records in `<stateDir>/<network>/`, one JSON file per
//! (container id, interface), written atomically (temp file + rename) with mode 0600.
//!
//! The record is what CHECK compares against and what GC and DEL use to find everything
//! an attachment owns (address, host veth, datapath entries, port mappings, DNS names).

use std::fs;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod boot;
pub mod dir;
pub mod lock;
pub mod pref64;

pub use dir::StateDir;
pub use lock::DirLock;

/// A failure of the state store, with the path involved.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {source}")]
pub struct StateError {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError {
        path: path.to_path_buf(),
        source,
    }
}

/// A port mapping as stored (from the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPortMapping {
    /// Port on the node.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Node address the mapping is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// Everything one attachment owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` at ADD time.
    pub netns: String,
    /// Host-side veth name.
    pub host_ifname: String,
    /// Pod address.
    pub ip: Ipv4Addr,
    /// Subnet prefix length.
    pub prefix: u8,
    /// The pod's IPv6 address (its prefix is `subnet6`'s), when it got one; absent in records
    /// of IPv4-only pods and of releases before dual stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// Pod interface MAC.
    pub mac: String,
    /// `K8S_POD_NAMESPACE`.
    #[serde(default)]
    pub pod_namespace: String,
    /// `K8S_POD_NAME`.
    #[serde(default)]
    pub pod_name: String,
    /// `K8S_POD_UID`.
    #[serde(default)]
    pub pod_uid: String,
    /// Port mappings from the runtime.
    #[serde(default)]
    pub port_mappings: Vec<StoredPortMapping>,
    /// DNS aliases from the runtime.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Datapath in use for this attachment (`ebpf` or `nftables`; `iptables` in records of
    /// earlier releases; empty in records older than the field, which were eBPF's).
    #[serde(default)]
    pub datapath: String,
    /// The result returned by ADD (as sent), for CHECK and for re-answering.
    pub result: serde_json::Value,
}

/// The record directory of one network.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: StateDir,
}

impl StateStore {
    /// Opens (creating with mode 0700) `<state_dir>/<network>/`.
    ///
    /// # Errors
    /// [`StateError`] when the directory cannot be created.
    pub fn open(state_dir: &Path, network: &str) -> Result<Self, StateError> {
        let dir = StateDir::new(state_dir, network);
        dir.create()?;
        Ok(Self { dir })
    }

    /// The directory holding the records.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.record(container_id, ifname)
    }

    /// Reads the record of (container id, ifname), `Ok(None)` when absent, empty or torn.
    ///
    /// # Errors
    /// [`StateError`] when the file exists but cannot be read.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<Attachment>, StateError> {
        let path = self.path(container_id, ifname);
        match fs::read(&path) {
            // A record written at power loss can be empty or torn (an SD card keeps what it
            // had flushed): it says nothing reliable, so it reads as absent; the caller's
            // remove takes the file away.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .inspect_err(|e| {
                    tracing::warn!("treating torn record {} as absent: {e}", path.display());
                })
                .ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&path)(e)),
        }
    }

    /// Writes a record atomically: a crash leaves either the old file or the new one.
    ///
    /// # Errors
    /// [`StateError`] on any I/O failure (the temporary file is removed).
    pub fn save(&self, a: &Attachment) -> Result<(), StateError> {
        let path = self.path(&a.container_id, &a.ifname);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(a)
            .map_err(|e| err(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let write = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(&path)(e)
        })
    }

    /// Removes a record; `Ok(false)` when it was already gone.
    ///
    /// # Errors
    /// [`StateError`] on I/O failure other than "not found".
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<bool, StateError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(err(&path)(e)),
        }
    }

    /// Removes the record files that are empty or torn (a power cut while they were being
    /// written or flushed) and returns their names. Only the after-boot reconciliation
    /// calls it: no writer of the previous boot can still be at work then.
    ///
    /// # Errors
    /// [`StateError`] when the directory cannot be listed or a file removed.
    pub fn remove_torn(&self) -> Result<Vec<String>, StateError> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(self.dir()).map_err(err(self.dir()))? {
            let entry = entry.map_err(err(self.dir()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_record_file(&name) {
                continue;
            }
            let parses = fs::read(entry.path())
                .ok()
                .is_some_and(|b| serde_json::from_slice::<Attachment>(&b).is_ok());
            if !parses {
                fs::remove_file(entry.path()).map_err(err(&entry.path()))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// All records (unreadable ones are skipped with a warning; leftover temp files of
    /// crashed writers are removed).
    ///
    /// # Errors
    /// [`StateError`] when the directory cannot be listed.
    pub fn list(&self) -> Result<Vec<Attachment>, StateError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir()).map_err(err(self.dir()))? {
            let entry = entry.map_err(err(self.dir()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some((_, pid)) = name.rsplit_once(".tmp.") {
                // Another invocation's record being written: leave it alone unless its writer
                // died before renaming it.
                if !writer_alive(pid) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Attachment>(&b).ok())
            {
                Some(a) => out.push(a),
                None => tracing::warn!(
                    "skipping unreadable state record {}",
                    entry.path().display()
                ),
            }
        }
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok(out)
    }
}

/// Whether the process `pid` (the suffix of a temporary record) still exists.
fn writer_alive(pid: &str) -> bool {
    match pid.parse::<i32>() {
        Ok(pid) if pid > 0 => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        _ => false,
    }
}

/// True for the file names of attachment records: `<containerid>+<ifname>.json` (not the
/// writers' temporary files, lock files or anything else in the directory).
#[must_use]
pub fn is_record_file(name: &str) -> bool {
    name.strip_suffix(".json")
        .and_then(|stem| stem.split_once('+'))
        .is_some_and(|(id, ifname)| !id.is_empty() && !ifname.is_empty() && !ifname.contains('.'))
}

/// Reads one record; `None` when it is gone or unreadable (a warning is logged for the latter).
#[must_use]
pub fn read_record(path: &Path) -> Option<Attachment> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(|e| tracing::warn!("ignoring unreadable record {}: {e}", path.display()))
        .ok()
}

/// All records in `dir`, keyed by file name, for readers (the node-local DNS,
/// `smarter-bpfctl`): nothing is swept, unlike [`StateStore::list`].
///
/// # Errors
/// When the directory cannot be listed.
pub fn scan(dir: &Path) -> std::io::Result<Vec<(String, Attachment)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_record_file(&name)
            && let Some(a) = read_record(&entry.path())
        {
            out.push((name, a));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn sample(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            host_ifname: "smv0".into(),
            ip: Ipv4Addr::new(172, 39, 0, 2),
            prefix: 16,
            ip6: None,
            mac: "02:00:00:00:00:01".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            pod_uid: String::new(),
            port_mappings: vec![],
            aliases: vec![],
            datapath: "ebpf".into(),
            result: serde_json::json!({"cniVersion": "1.1.0"}),
        }
    }

    #[test]
    fn save_load_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateStore::open(tmp.path(), "net").unwrap();
        assert_eq!(s.load("a", "eth0").unwrap(), None);
        s.save(&sample("a")).unwrap();
        s.save(&sample("b")).unwrap();
        assert_eq!(s.load("a", "eth0").unwrap(), Some(sample("a")));
        let ids: Vec<_> = s
            .list()
            .unwrap()
            .into_iter()
            .map(|a| a.container_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(s.remove("a", "eth0").unwrap());
        assert!(!s.remove("a", "eth0").unwrap());
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn ip6_round_trips_and_old_records_without_it_still_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateStore::open(tmp.path(), "net").unwrap();
        let mut dual = sample("a");
        dual.ip6 = Some("fd00:ac27::2".parse().unwrap());
        s.save(&dual).unwrap();
        assert_eq!(s.load("a", "eth0").unwrap(), Some(dual));
        let text = fs::read_to_string(s.dir().join("a+eth0.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["ip6"], "fd00:ac27::2", "{text}");
        // An IPv4-only record does not write the key; one of an earlier release lacks it.
        s.save(&sample("b")).unwrap();
        let text = fs::read_to_string(s.dir().join("b+eth0.json")).unwrap();
        assert!(!text.contains("ip6"), "{text}");
        let mut old = serde_json::to_value(sample("c")).unwrap();
        old.as_object_mut().unwrap().remove("ip6");
        fs::write(s.dir().join("c+eth0.json"), old.to_string()).unwrap();
        assert_eq!(s.load("c", "eth0").unwrap(), Some(sample("c")));
    }

    #[test]
    fn torn_records_read_as_absent_and_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateStore::open(tmp.path(), "net").unwrap();
        s.save(&sample("a")).unwrap();
        fs::write(s.dir().join("b+eth0.json"), b"").unwrap();
        fs::write(
            s.dir().join("c+eth0.json"),
            b"{\"containerId\": \"c\", \"ifn",
        )
        .unwrap();
        assert_eq!(s.load("b", "eth0").unwrap(), None);
        assert_eq!(s.load("c", "eth0").unwrap(), None);
        let mut torn = s.remove_torn().unwrap();
        torn.sort();
        assert_eq!(torn, ["b+eth0.json", "c+eth0.json"]);
        assert_eq!(s.list().unwrap(), vec![sample("a")]);
        assert!(s.remove_torn().unwrap().is_empty());
    }

    #[test]
    fn modes_are_private_and_temp_files_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateStore::open(tmp.path(), "net").unwrap();
        s.save(&sample("a")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(s.dir()), 0o700);
        assert_eq!(mode(&s.dir().join("a+eth0.json")), 0o600);
        // A writer that died before renaming, and one still writing (this process).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = s.dir().join(format!("b+eth0.json.tmp.{dead}"));
        let live = s
            .dir()
            .join(format!("d+eth0.json.tmp.{}", std::process::id()));
        fs::write(&stale, b"{").unwrap();
        fs::write(&live, b"{").unwrap();
        fs::write(s.dir().join("c+eth0.json"), b"not json").unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        assert!(!stale.exists(), "a dead writer's temp file is swept");
        assert!(live.exists(), "a live writer's temp file is left alone");
    }
}
