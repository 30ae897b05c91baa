//! Asking the runtime for hostnames: one lookup task per new sandbox, retried with backoff
//! until the runtime knows the sandbox (it registers it only after CNI ADD returns), never
//! blocking the answers (the pod name serves meanwhile). Also the host-networked pods, which
//! have no CNI record: re-listed on every record change and every [`HOST_POD_REFRESH`],
//! since containerd 1.6 has no event stream for them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::cri::{CriClient, SandboxInfo};
use super::names::host_label;
use super::store::Store;
use super::table::HostPodEntry;

/// First retry delay of a hostname lookup; doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Lookups per sandbox before giving up (about three minutes).
const ATTEMPTS: u32 = 45;
/// How often the host-networked pods are listed again without any record change.
pub const HOST_POD_REFRESH: Duration = Duration::from_secs(10);

/// See the module docs.
pub struct Hostnames {
    cri: Option<CriClient>,
    store: Arc<Store>,
    pending: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Hostnames {
    /// Lookups through `cri` (none: the fallback names only) into `store`.
    #[must_use]
    pub fn new(cri: Option<CriClient>, store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self {
            cri,
            store,
            pending: Mutex::new(HashSet::new()),
            changed: Notify::new(),
        })
    }

    /// Starts a lookup for `sandbox` unless one is running.
    pub fn lookup(self: &Arc<Self>, sandbox: String) {
        self.changed.notify_one();
        let Some(cri) = self.cri.clone() else {
            return;
        };
        if !self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sandbox.clone())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.resolve(&cri, &sandbox).await;
            this.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&sandbox);
        });
    }

    /// Tells the host-pod refresher that records changed.
    pub fn records_changed(&self) {
        self.changed.notify_one();
    }

    async fn resolve(&self, cri: &CriClient, sandbox: &str) {
        let mut delay = FIRST_DELAY;
        for attempt in 1..=ATTEMPTS {
            if !self.store.has_sandbox(sandbox) {
                return;
            }
            match cri.sandbox(sandbox).await {
                Ok(Some(info)) => {
                    let h = info.hostname.unwrap_or_default();
                    tracing::debug!("sandbox {sandbox}: hostname {h:?} (attempt {attempt})");
                    // An empty hostname records "asked, none": the fallbacks apply.
                    self.store.set_hostname(sandbox, &h);
                    return;
                }
                Ok(None) => tracing::trace!("sandbox {sandbox} not known to the runtime yet"),
                Err(e) if attempt == 1 || attempt == ATTEMPTS => {
                    tracing::warn!("hostname of {sandbox}: {e}");
                }
                Err(e) => tracing::debug!("hostname of {sandbox}: {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
        tracing::warn!("sandbox {sandbox}: no hostname from the runtime, using the fallback name");
    }

    /// Keeps the host-networked pods current until dropped (nothing without a CRI client).
    pub async fn follow_host_pods(self: Arc<Self>) {
        let Some(cri) = self.cri.clone() else {
            return std::future::pending().await;
        };
        // Sandbox id → what it is (None: not host-networked); only new ids are asked.
        let mut known: HashMap<String, Option<HostPodEntry>> = HashMap::new();
        let mut failing = false;
        loop {
            match cri.ready_sandboxes().await {
                Ok(ids) => {
                    failing = false;
                    known.retain(|id, _| ids.contains(id));
                    for id in ids {
                        if known.contains_key(&id) || self.store.has_sandbox(&id) {
                            continue;
                        }
                        match cri.sandbox(&id).await {
                            Ok(Some(info)) => {
                                known.insert(id.clone(), host_pod(&id, info));
                            }
                            Ok(None) => {}
                            Err(e) => tracing::debug!("sandbox {id}: {e}"),
                        }
                    }
                    let mut pods: Vec<HostPodEntry> = known.values().flatten().cloned().collect();
                    pods.sort_by(|a, b| (&a.namespace, &a.host).cmp(&(&b.namespace, &b.host)));
                    self.store.set_host_pods(pods);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("listing sandboxes for host-networked pods: {e}");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep(HOST_POD_REFRESH) => {}
            }
        }
    }
}

fn host_pod(id: &str, info: SandboxInfo) -> Option<HostPodEntry> {
    if !info.host_network {
        return None;
    }
    let host = host_label(info.hostname.as_deref(), &info.name, id)?;
    Some(HostPodEntry {
        host,
        namespace: info.namespace,
    })
}
