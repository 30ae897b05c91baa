//! The one seam both datapaths sit behind: [`Datapath`], with the errors they return
//! ([`DatapathError`]) and the network settings they are opened with ([`Settings`]).
//!
//! The plugin's verbs, the node agent, `smarter-bpfctl` and the installer hold a
//! `Box<dyn Datapath>` from [`super::open`] or [`super::open_existing`] and never ask which
//! one it is: what only one driver has (its own flows, settings, drop stream) is a method
//! with a neutral answer (`None`, empty) in the other. The seam imports no driver.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use smarter_common::CtTimeouts;

use super::types::DatapathKind;
use super::types::{
    AttachMode, CtEntryView, DatapathConfig, EndpointSpec, EventView, HostPortSpec, MapFill,
    PodLink, PodTraffic, V6Config,
};
use super::uplink::External;

/// What a datapath needs to know of its network, taken from the configuration once, when it
/// is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// CNI network name.
    pub network: String,
    /// Bridge name.
    pub bridge: String,
    /// Pod gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Pod subnet.
    pub subnet: Ipv4Network,
    /// The IPv6 half of a dual-stack network (`None`: IPv4 only).
    pub v6: Option<V6Config>,
    /// Conntrack capacity (eBPF; applies when the maps are created).
    pub ct_max_entries: u32,
    /// Conntrack idle timeouts (eBPF; the kernel's own conntrack times nftables flows).
    pub ct_timeouts: CtTimeouts,
    /// NAT source ports, inclusive.
    pub nat_ports: (u16, u16),
    /// Destinations pods may not reach.
    pub deny: Vec<Ipv4Network>,
    /// How TC programs are attached (eBPF).
    pub attach: AttachMode,
    /// The pin root (eBPF).
    pub bpffs_dir: PathBuf,
    /// `<stateDir>/<network>`: the network lock, the loader lock and the recorded build.
    pub state: crate::state::StateDir,
}

impl Settings {
    /// The settings written into the eBPF config map when it is created.
    #[must_use]
    pub fn datapath_config(&self) -> DatapathConfig {
        DatapathConfig {
            gateway: self.gateway,
            subnet: self.subnet,
            v6: self.v6,
            ct_max_entries: self.ct_max_entries,
        }
    }
}

/// The bridge as the datapath needs it (the plugin knows it; the agent may run before it
/// exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    /// Ifindex in the node's namespace.
    pub ifindex: u32,
    /// Its fixed MAC ([`crate::naming::bridge_mac`]).
    pub mac: [u8; 6],
}

/// Failure of a datapath, the one error type of the seam: what the verbs treat alike has
/// one variant (a hostPort taken), the rest says which driver failed (the plugin maps it to
/// code 103 for eBPF, 107 for nftables). Each driver converts its own error into it.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// A hostPort another pod holds.
    #[error("hostPort {protocol}/{port} is already mapped to {holder}")]
    HostPortTaken {
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// The host port.
        port: u16,
        /// Who holds it (the pod address, with its port where the driver knows it).
        holder: String,
    },
    /// A driver failed.
    #[error("{error}")]
    Driver {
        /// Which one.
        kind: DatapathKind,
        /// Its error, as it says it.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The network's node-wide lock ([`crate::state::lock::NETWORK_LOCK`]) cannot be taken.
    #[error(transparent)]
    Lock(#[from] crate::state::StateError),
    /// The configuration asks for what this node cannot do (e.g. `tcAttach: tcx` on a
    /// kernel without TCX).
    #[error("{msg}")]
    Config {
        /// The configuration key.
        key: &'static str,
        /// What is wrong and what to use instead.
        msg: String,
    },
}

/// A datapath's stream of dropped packets ([`Datapath::drops`]).
pub trait DropEvents: Send {
    /// The next event, waiting at most `timeout`; `None` when none came.
    ///
    /// # Errors
    ///
    /// When the stream cannot be read.
    fn next(&mut self, timeout: std::time::Duration) -> Result<Option<EventView>, DatapathError>;
}

/// One network's datapath, opened.
///
/// Interface names resolve in the calling thread's network namespace (the node's). Every
/// method is idempotent: attach after attach, detach of what is gone, remove of what is
/// removed all succeed.
pub trait Datapath: fmt::Debug + Send {
    /// Which one this is (as recorded in the attachment records).
    fn kind(&self) -> DatapathKind;

    /// The node-wide part of the network: settings, bridge, the external interfaces with
    /// their programs or rules, the node's addresses. ADD calls it for every pod (cheap when
    /// nothing changed); the agent calls it on start and on every link, address or route
    /// change.
    ///
    /// # Errors
    ///
    /// When a map, program or rule cannot be written.
    fn ensure_network(
        &mut self,
        bridge: Option<Bridge>,
        external: &External,
    ) -> Result<(), DatapathError>;

    /// Makes the pod known with its hostPorts. All or nothing: on failure nothing of the pod
    /// is left.
    ///
    /// # Errors
    ///
    /// When an entry cannot be written, a hostPort is taken, or attaching fails.
    fn attach(&self, ep: &EndpointSpec, ports: &[HostPortSpec]) -> Result<(), DatapathError>;

    /// Forgets the pod: entries, hostPorts, its conntrack state. Success when already gone.
    ///
    /// # Errors
    ///
    /// When an entry exists but cannot be removed.
    fn detach(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), DatapathError>;

    /// What differs from what [`Datapath::attach`] set up for the pod (empty: nothing).
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn check(&self, ep: &EndpointSpec) -> Result<Vec<String>, DatapathError>;

    /// The pods this datapath knows.
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn endpoints(&self) -> Result<Vec<PodLink>, DatapathError>;

    /// Expires idle conntrack entries and collects entries whose owner is gone (eBPF:
    /// hostPorts of an address with no endpoint, what it kept for interfaces that are gone);
    /// how many went (0 where the kernel's conntrack does it).
    ///
    /// # Errors
    ///
    /// When a map cannot be read or written.
    fn gc(&self) -> Result<usize, DatapathError>;

    /// Removes everything of the network: programs off the interfaces and pins, or tables.
    ///
    /// # Errors
    ///
    /// When something exists but cannot be removed.
    fn remove(&self) -> Result<(), DatapathError>;

    /// Packets and bytes per verdict or counter name, as the driver counts them (eBPF: its
    /// verdicts; nftables: its named counters).
    ///
    /// # Errors
    ///
    /// When the counters cannot be read.
    fn counters(&self) -> Result<Vec<(String, u64, u64)>, DatapathError>;

    /// Bytes and packets per pod, per external interface, both directions, sorted by pod,
    /// interface and direction. Counted from a pod's ADD to its DEL.
    ///
    /// # Errors
    ///
    /// When the counters cannot be read.
    fn pod_traffic(&self) -> Result<Vec<PodTraffic>, DatapathError>;

    /// How full the driver's tables are (eBPF: endpoints, conntrack, hostPorts...); empty
    /// where the kernel keeps them (nftables).
    ///
    /// # Errors
    ///
    /// When a table cannot be read.
    fn fill(&self) -> Result<Vec<MapFill>, DatapathError> {
        Ok(Vec::new())
    }

    /// NAT ports: distinct (protocol, port) pairs held by flows and the ports of the range
    /// (per protocol), where the driver allocates them (eBPF); `None` where the kernel does.
    ///
    /// # Errors
    ///
    /// When the conntrack table or the settings cannot be read.
    fn nat_ports(&self) -> Result<Option<(usize, usize)>, DatapathError> {
        Ok(None)
    }

    /// The stream of dropped packets, where the driver has one (eBPF's ring buffer; one
    /// reader at a time); `None` otherwise (nftables: the kernel's log).
    ///
    /// # Errors
    ///
    /// When the stream exists but cannot be opened.
    fn drops(&self) -> Result<Option<Box<dyn DropEvents>>, DatapathError> {
        Ok(None)
    }

    /// `smarter-bpfctl status`: the network's row, with the bridge and veths whose sysctls the
    /// caller checks for drift.
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn status_rows(&self, _network: &str) -> Result<Vec<super::rows::StatusRow>, DatapathError> {
        Ok(Vec::new())
    }

    /// `smarter-bpfctl endpoints`: the pods, sorted by address, named from the attachment
    /// records in `records` where the driver keeps no names itself.
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn endpoint_rows(
        &self,
        _network: &str,
        _records: &std::path::Path,
    ) -> Result<Vec<super::rows::EndpointRow>, DatapathError> {
        Ok(Vec::new())
    }

    /// Every hostPort with the pod address it leads to.
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn host_ports(&self) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, DatapathError> {
        Ok(Vec::new())
    }

    /// Every hostPort on the node's IPv6 addresses with the pod ULA it leads to (dual-stack
    /// pods).
    ///
    /// # Errors
    ///
    /// When the state cannot be read.
    fn host_ports6(&self) -> Result<Vec<(HostPortSpec, std::net::Ipv6Addr)>, DatapathError> {
        Ok(Vec::new())
    }

    /// `smarter-bpfctl config`: the live settings, where the driver keeps them (eBPF's config
    /// map); `None` otherwise.
    ///
    /// # Errors
    ///
    /// When they cannot be read.
    fn config_rows(
        &self,
        _network: &str,
    ) -> Result<Option<Vec<super::rows::ConfigRow>>, DatapathError> {
        Ok(None)
    }

    /// The NATed flows, where the driver tracks them (eBPF); `None` where the kernel's
    /// conntrack does (`conntrack -L`).
    ///
    /// # Errors
    ///
    /// When the table cannot be read.
    fn flows(&self) -> Result<Option<Vec<CtEntryView>>, DatapathError> {
        Ok(None)
    }

    /// The NAT66 flows of dual-stack pods, where the driver tracks them (eBPF); `None` where
    /// the kernel's conntrack does.
    ///
    /// # Errors
    ///
    /// When the table cannot be read.
    fn flows6(&self) -> Result<Option<Vec<CtEntryView<std::net::Ipv6Addr>>>, DatapathError> {
        Ok(None)
    }

    /// Forgets the flows `doomed` picks by (protocol, pod address, pod port, remote address,
    /// remote port); how many went.
    ///
    /// # Errors
    ///
    /// When an entry cannot be removed.
    fn forget_flows(
        &self,
        _doomed: &dyn Fn(u8, Ipv4Addr, u16, Ipv4Addr, u16) -> bool,
    ) -> Result<usize, DatapathError> {
        Ok(0)
    }

    /// Forgets the NAT66 flows `doomed` picks, as [`Self::forget_flows`] the IPv4 ones; how
    /// many went.
    ///
    /// # Errors
    ///
    /// When an entry cannot be removed.
    fn forget_flows6(
        &self,
        _doomed: &dyn Fn(u8, std::net::Ipv6Addr, u16, std::net::Ipv6Addr, u16) -> bool,
    ) -> Result<usize, DatapathError> {
        Ok(0)
    }

    /// Reports every packet to the drop stream while `on` (`smarter-bpfctl monitor
    /// --trace`); `false` when the driver cannot.
    ///
    /// # Errors
    ///
    /// When the switch cannot be written.
    fn set_trace(&self, _on: bool) -> Result<bool, DatapathError> {
        Ok(false)
    }
}
