//! The live record store: the plugin's attachment records (read from `<stateDir>/<network>/`)
//! plus the hostnames the runtime reported, turned into a [`NameTable`] that is rebuilt and
//! swapped whole on every change.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::names::host_label;
use super::table::{HostPodEntry, NameTable, PodEntry};
use crate::state::Attachment;

pub use crate::state::{is_record_file, read_record, scan};

#[derive(Default)]
struct Inner {
    records: BTreeMap<String, Attachment>,
    /// Sandbox (container) id → hostname reported by the runtime.
    hostnames: HashMap<String, String>,
    host_pods: Vec<HostPodEntry>,
}

/// See the module docs. Cheap to read from many tasks: readers take an `Arc` of the table.
pub struct Store {
    domain: String,
    inner: Mutex<Inner>,
    table: RwLock<Arc<NameTable>>,
}

impl Store {
    /// An empty store for `domain`.
    #[must_use]
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_string(),
            inner: Mutex::new(Inner::default()),
            table: RwLock::new(Arc::new(NameTable::build(domain, &[], &[]))),
        }
    }

    /// The current table.
    #[must_use]
    pub fn table(&self) -> Arc<NameTable> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut inner);
        let table = Arc::new(build(&self.domain, &inner));
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = table;
        out
    }

    /// Adds or replaces the record stored as `file`; returns the sandbox id when its hostname
    /// is not known yet (the caller may ask the runtime).
    pub fn upsert(&self, file: &str, a: Attachment) -> Option<String> {
        self.update(|inner| {
            let id = a.container_id.clone();
            inner.records.insert(file.to_string(), a);
            (!inner.hostnames.contains_key(&id)).then_some(id)
        })
    }

    /// Removes the record stored as `file` (and forgets its hostname when no other record of
    /// the sandbox is left); returns it.
    pub fn remove(&self, file: &str) -> Option<Attachment> {
        self.update(|inner| {
            let gone = inner.records.remove(file)?;
            if !inner
                .records
                .values()
                .any(|a| a.container_id == gone.container_id)
            {
                inner.hostnames.remove(&gone.container_id);
            }
            Some(gone)
        })
    }

    /// Replaces every record (start-up, or a rescan after an inotify overflow); returns the
    /// sandbox ids whose hostname is not known yet.
    pub fn replace_all(&self, records: Vec<(String, Attachment)>) -> Vec<String> {
        self.update(|inner| {
            inner.records = records.into_iter().collect();
            let live: Vec<String> = inner
                .records
                .values()
                .map(|a| a.container_id.clone())
                .collect();
            inner.hostnames.retain(|id, _| live.contains(id));
            let mut missing: Vec<String> = live
                .into_iter()
                .filter(|id| !inner.hostnames.contains_key(id))
                .collect();
            missing.dedup();
            missing
        })
    }

    /// Records the runtime's hostname of a sandbox (ignored when the sandbox is gone).
    pub fn set_hostname(&self, sandbox: &str, hostname: &str) {
        self.update(|inner| {
            if inner.records.values().any(|a| a.container_id == sandbox) {
                inner
                    .hostnames
                    .insert(sandbox.to_string(), hostname.to_string());
            }
        });
    }

    /// True while a record of the sandbox exists.
    #[must_use]
    pub fn has_sandbox(&self, sandbox: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .values()
            .any(|a| a.container_id == sandbox)
    }

    /// Replaces the host-networked pods.
    pub fn set_host_pods(&self, pods: Vec<HostPodEntry>) {
        self.update(|inner| inner.host_pods = pods);
    }
}

fn build(domain: &str, inner: &Inner) -> NameTable {
    let pods: Vec<PodEntry> = inner
        .records
        .values()
        .filter_map(|a| {
            let hostname = inner.hostnames.get(&a.container_id).map(String::as_str);
            let host = host_label(hostname, &a.pod_name, &a.container_id)?;
            Some(PodEntry {
                ip: a.ip,
                prefix: a.prefix,
                ip6: a.ip6.map(|ip6| (ip6, ip6_prefix(&a.result, ip6))),
                gateway: gateway_of(&a.result),
                host,
                namespace: a.pod_namespace.clone(),
                aliases: a.aliases.clone(),
            })
        })
        .collect();
    NameTable::build(domain, &pods, &inner.host_pods)
}

/// The prefix length of `ip6` in a stored ADD result (64, `subnet6`'s default, without one).
fn ip6_prefix(result: &serde_json::Value, ip6: std::net::Ipv6Addr) -> u8 {
    result
        .get("ips")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.get("address")?
                .as_str()?
                .parse::<ipnetwork::Ipv6Network>()
                .ok()
        })
        .find(|n| n.ip() == ip6)
        .map_or(64, |n| n.prefix())
}

/// The gateway of the first address of a stored ADD result.
fn gateway_of(result: &serde_json::Value) -> Option<Ipv4Addr> {
    result
        .pointer("/ips/0/gateway")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::dns::table::Lookup;

    pub(crate) fn record(id: &str, last: u8, pod_name: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            host_ifname: "smv0".into(),
            ip: Ipv4Addr::new(172, 39, 0, last),
            prefix: 16,
            ip6: None,
            mac: "02:00:00:00:00:01".into(),
            pod_namespace: "default".into(),
            pod_name: pod_name.into(),
            pod_uid: String::new(),
            port_mappings: vec![],
            aliases: vec![],
            datapath: "ebpf".into(),
            result: serde_json::json!({"ips": [{"address": "172.39.0.2/16", "gateway": "172.39.0.1"}]}),
        }
    }

    const ASKER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn found(s: &Store, name: &str) -> Option<Vec<Ipv4Addr>> {
        match s.table().lookup(name, ASKER) {
            Lookup::Found(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn record_file_names() {
        assert!(is_record_file("abc+eth0.json"));
        assert!(!is_record_file("abc+eth0.json.tmp.123"));
        assert!(!is_record_file("abc.lock"));
        assert!(!is_record_file("lock"));
        assert!(!is_record_file("+eth0.json"));
        assert!(!is_record_file("abc+.json"));
        assert!(!is_record_file("abc.json"));
    }

    #[test]
    fn hostname_replaces_the_pod_name_fallback_and_dies_with_the_sandbox() {
        let s = Store::new("cluster.local");
        assert_eq!(
            s.upsert("a+eth0.json", record("a", 2, "web-0")).as_deref(),
            Some("a")
        );
        assert_eq!(found(&s, "web-0"), Some(vec![Ipv4Addr::new(172, 39, 0, 2)]));
        s.set_hostname("a", "example");
        assert_eq!(found(&s, "web-0"), None);
        assert_eq!(
            found(&s, "example.cluster.local"),
            Some(vec![Ipv4Addr::new(172, 39, 0, 2)])
        );
        // Known hostname: no new CRI lookup on re-upsert.
        assert_eq!(s.upsert("a+eth0.json", record("a", 2, "web-0")), None);
        assert!(s.remove("a+eth0.json").is_some());
        assert_eq!(found(&s, "example"), None);
        assert!(!s.has_sandbox("a"));
        // A hostname for a sandbox that is gone is not kept.
        s.set_hostname("a", "example");
        assert_eq!(
            s.upsert("a+eth0.json", record("a", 2, "web-0")).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn replace_all_and_scan_skip_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, a: &Attachment| {
            std::fs::write(dir.path().join(name), serde_json::to_vec(a).unwrap()).unwrap();
        };
        write("a+eth0.json", &record("a", 2, "one"));
        write("b+eth0.json", &record("b", 3, "two"));
        write("b+eth0.json.tmp.1", &record("c", 4, "temp"));
        std::fs::write(dir.path().join("c+eth0.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("network.lock"), b"").unwrap();
        let recs = scan(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        let s = Store::new("cluster.local");
        let mut missing = s.replace_all(recs);
        missing.sort();
        assert_eq!(missing, ["a", "b"]);
        assert!(found(&s, "one").is_some() && found(&s, "two").is_some());
        assert!(found(&s, "temp").is_none());
        s.set_hostname("a", "h");
        assert_eq!(
            s.replace_all(vec![("a+eth0.json".into(), record("a", 2, "one"))]),
            Vec::<String>::new()
        );
        assert!(found(&s, "h").is_some() && found(&s, "two").is_none());
    }
}
