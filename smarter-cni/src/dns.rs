//! Node-local DNS for pod hostnames (`smarter-dns`), event-driven.
//!
//! Answers on a node-local address (default `169.254.0.2:53`, UDP and TCP) for pods and for
//! processes on the node:
//!
//! - for every pod of the network on this node, `<hostname>`, `<hostname>.<ns>.svc.<domain>`,
//!   `<hostname>.svc.<domain>`, `<hostname>.<domain>` and the CNI `aliases`: A records, and
//!   a PTR record (`<hostname>.<ns>.svc.<domain>`) for the pod address;
//! - host-networked pods under the same names, at an address the asker reaches: the pod's
//!   gateway (the bridge address) for pods, `127.0.0.1` for processes on the node;
//! - unknown names inside the cluster domain, and unused addresses of the pod subnet in
//!   `in-addr.arpa`: NXDOMAIN; everything else is forwarded to the node's resolvers (from
//!   resolv.conf, re-read when it changes) with a timeout and a small cache; SERVFAIL when no
//!   upstream answers. Local answers carry a short TTL (default 5 s).
//!
//! The hostname is the one the container runtime reports for the pod sandbox (CRI
//! `PodSandboxStatus`, verbose), falling back to the pod name (`K8S_POD_NAME`), then to the
//! container id (cut to 63 characters). The names come from the plugin's attachment records
//! in `<stateDir>/<network>/`, followed with inotify: a pod's name resolves as soon as ADD
//! has written its record and is gone as soon as DEL has removed it (no polling). The
//! records survive restarts, so a restarted server rebuilds the same table.
//!
//! The listen address is put on the bridge (`smartnet0`, created if no pod did so yet; the
//! minimal kernels of some gateways have no dummy devices) and removed on a clean shutdown
//! if this server added it.
//!
//! # Kubernetes and k3s
//!
//! The plugin's ADD result carries a `dns` block (see [`result_dns`]): nameserver
//! `169.254.0.2`, search `<ns>.svc.<domain> svc.<domain> <domain>`, which runtimes that honour
//! CNI DNS results apply. Kubelet writes the pods' resolv.conf itself, so point it here:
//!
//! ```text
//! # k3s agent (CoreDNS and kube-proxy are not run on the gateways)
//! k3s agent --kubelet-arg=cluster-dns=169.254.0.2 --kubelet-arg=cluster-domain=cluster.local
//! # or in /etc/rancher/k3s/config.yaml
//! kubelet-arg:
//!   - "cluster-dns=169.254.0.2"
//! # plain kubelet: KubeletConfiguration
//! clusterDNS: ["169.254.0.2"]
//! clusterDomain: cluster.local
//! ```
//!
//! On k3s the CRI socket is `/run/k3s/containerd/containerd.sock` (`--cri-socket`).
//! Host processes can use the server too (`nameserver 169.254.0.2` in the node's
//! resolv.conf): it never forwards to its own address.

mod address;
pub mod cri;
pub mod fuzzing;
mod hostnames;
mod limit;
pub mod names;
pub mod query;
pub mod resolv;
mod server;
pub mod stats;
pub mod store;
pub mod table;
pub mod upstream;
mod watch;

pub use address::ListenAddress;
pub use server::Limits;
pub use stats::DnsStats;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::state::StateStore;

pub use crate::cni::config::defaults::{
    CLUSTER_DOMAIN as DEFAULT_DOMAIN, CONTAINERD_SOCKET, K3S_CONTAINERD_SOCKET,
    NODE_DNS as DEFAULT_LISTEN_IP,
};
pub use crate::cni::result::result_dns;

/// Everything the DNS server needs; [`DnsConfig::default`] has the documented defaults.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// CNI network name (the record directory is `<state_dir>/<network>/`).
    pub network: String,
    /// The plugin's `stateDir`.
    pub state_dir: PathBuf,
    /// Address and port to answer on.
    pub listen: SocketAddr,
    /// Cluster domain.
    pub domain: String,
    /// TTL of local answers, seconds.
    pub ttl: u32,
    /// Bridge that holds the listen address.
    pub bridge: String,
    /// MTU for the bridge when this server has to create it.
    pub bridge_mtu: u32,
    /// Put the listen address on the bridge (off when something else provides it).
    pub manage_address: bool,
    /// The runtime's CRI socket; `None` disables hostname lookups (pod names are used).
    pub cri_socket: Option<PathBuf>,
    /// The node's resolv.conf (upstream resolvers).
    pub resolv_conf: PathBuf,
    /// Where systemd-resolved lists the servers behind its stub (see [`resolv::load`]).
    pub systemd_resolv_conf: PathBuf,
    /// How long a forwarded question may take before SERVFAIL.
    pub upstream_timeout: Duration,
    /// Per-source rate limits and other bounds.
    pub limits: Limits,
    /// Query counters (shared with whoever reports them, e.g. the agent's metrics).
    pub stats: Arc<DnsStats>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            network: crate::cni::config::defaults::NETWORK.into(),
            state_dir: PathBuf::from(crate::cni::config::defaults::STATE_DIR),
            listen: SocketAddr::new(IpAddr::V4(DEFAULT_LISTEN_IP), 53),
            domain: DEFAULT_DOMAIN.into(),
            ttl: 5,
            bridge: crate::cni::config::defaults::BRIDGE.into(),
            bridge_mtu: 1500,
            manage_address: true,
            cri_socket: Some(PathBuf::from(CONTAINERD_SOCKET)),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            systemd_resolv_conf: PathBuf::from(resolv::SYSTEMD_RESOLV_CONF),
            upstream_timeout: Duration::from_secs(2),
            limits: Limits::default(),
            stats: Arc::default(),
        }
    }
}

/// Why the DNS server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listen address could not be put on (or taken off) the bridge.
    #[error("listen address {ip} on {bridge}: {source}")]
    Address {
        /// The address.
        ip: Ipv4Addr,
        /// The bridge.
        bridge: String,
        /// What failed.
        #[source]
        source: crate::netlink::NetlinkError,
    },
    /// The record directory could not be opened.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The sockets could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// inotify failed.
    #[error("watching {path}: {source}")]
    Watch {
        /// What was watched.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The CRI client could not be set up.
    #[error(transparent)]
    Cri(#[from] cri::CriError),
}

/// Runs the DNS server until `shutdown` completes (then removes the listen address if it
/// added it). Call it from a tokio runtime (any flavour) in the node's network namespace.
///
/// # Errors
/// [`DnsError`] when it cannot start (address, directory, sockets, inotify) or when
/// watching fails later.
pub async fn run(cfg: &DnsConfig, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
    let address = match (cfg.manage_address, cfg.listen.ip()) {
        (true, IpAddr::V4(ip)) => Some(
            ListenAddress::ensure(&cfg.bridge, cfg.bridge_mtu, ip)
                .await
                .map_err(|source| DnsError::Address {
                    ip,
                    bridge: cfg.bridge.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let served = serve(cfg, shutdown).await;
    if let Some(a) = address {
        let (ip, bridge) = (a.ip(), cfg.bridge.clone());
        a.release()
            .await
            .map_err(|source| DnsError::Address { ip, bridge, source })?;
    }
    served
}

async fn serve(cfg: &DnsConfig, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
    let state = StateStore::open(&cfg.state_dir, &cfg.network)?;
    let dir = state.dir().to_path_buf();
    let store = Arc::new(store::Store::new(&cfg.domain));
    let cri = cfg
        .cri_socket
        .as_deref()
        .map(cri::CriClient::new)
        .transpose()?;
    let hostnames = hostnames::Hostnames::new(cri, store.clone());

    // Watch first, then read: a record written in between shows up as an event.
    let resolv_files = [cfg.resolv_conf.clone(), cfg.systemd_resolv_conf.clone()];
    let watcher = watch::Watcher::new(&dir, &resolv_files).map_err(|source| DnsError::Watch {
        path: dir.clone(),
        source,
    })?;
    rescan(&dir, &store, &hostnames);

    let own = cfg.listen.ip();
    let load_upstreams = || resolv::load(&cfg.resolv_conf, &cfg.systemd_resolv_conf, own);
    let forwarder = Arc::new(upstream::Forwarder::new(
        load_upstreams(),
        cfg.upstream_timeout,
    ));
    tracing::info!("upstream resolvers {:?}", forwarder.servers());

    let sockets = server::Sockets::bind(cfg.listen)
        .await
        .map_err(|source| DnsError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let handler = Arc::new(server::Handler::new(
        store.clone(),
        forwarder.clone(),
        cfg.ttl,
        cfg.limits.clone(),
        cfg.stats.clone(),
    ));
    tracing::info!(
        "smarter-dns on {} (udp, tcp) for {} in {}, {} names",
        cfg.listen,
        cfg.domain,
        dir.display(),
        store.table().len()
    );

    let follow = watcher.run(|change| match change {
        watch::Change::Record(name) if store::is_record_file(&name) => {
            match store::read_record(&dir.join(&name)) {
                Some(a) => {
                    tracing::debug!("record {name}: {} {}", a.ip, a.pod_name);
                    if let Some(id) = store.upsert(&name, a) {
                        hostnames.lookup(id);
                    }
                }
                // Written and removed again before we looked: same as gone.
                None => {
                    store.remove(&name);
                }
            }
            hostnames.records_changed();
        }
        watch::Change::RecordGone(name) if store::is_record_file(&name) => {
            if let Some(a) = store.remove(&name) {
                tracing::debug!("record {name} gone: {}", a.ip);
            }
            hostnames.records_changed();
        }
        watch::Change::Record(_) | watch::Change::RecordGone(_) => {}
        watch::Change::Rescan => rescan(&dir, &store, &hostnames),
        watch::Change::ResolvConf => forwarder.set_servers(load_upstreams()),
    });

    tokio::select! {
        () = shutdown => Ok(()),
        () = sockets.serve(handler) => Ok(()),
        () = hostnames.clone().follow_host_pods() => Ok(()),
        r = follow => r.map_err(|source| DnsError::Watch { path: dir.clone(), source }),
    }
}

fn rescan(dir: &Path, store: &store::Store, hostnames: &Arc<hostnames::Hostnames>) {
    match store::scan(dir) {
        Ok(records) => {
            for id in store.replace_all(records) {
                hostnames.lookup(id);
            }
            hostnames.records_changed();
        }
        Err(e) => tracing::error!("cannot read {}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_dns_block() {
        let d = result_dns("cluster.local.", DEFAULT_LISTEN_IP, Some("Prod"));
        assert_eq!(d.nameservers, [IpAddr::V4(DEFAULT_LISTEN_IP)]);
        assert_eq!(
            d.search,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(
            d.to_json(),
            serde_json::json!({
                "nameservers": ["169.254.0.2"],
                "search": ["prod.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            })
        );
        let d = result_dns("cluster.local", DEFAULT_LISTEN_IP, None);
        assert_eq!(d.search, ["svc.cluster.local", "cluster.local"]);
    }
}
