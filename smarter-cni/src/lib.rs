//! smarter-cni: a Kubernetes CNI plugin for IoT edge gateways with a TC eBPF datapath.
//!
//! Layout (one concern per module):
//! - [`cni`]: the CNI protocol — configuration, environment, versions, results, errors.
//! - [`ipam`]: built-in IPAM, on-disk compatible with the reference `host-local` plugin.
//! - [`netlink`]: typed rtnetlink operations (bridge, veth, addresses, routes, namespaces).
//! - [`datapath`]: the datapath seam and its two implementations (eBPF, iptables).
//! - [`naming`]: deterministic names and the DNS name syntax (below every other module).
//! - [`state`]: per-attachment records kept in `stateDir` for CHECK and GC.
//! - [`agent`]: the long-lived node agent that owns the datapath, and its metrics.
//! - [`bpfctl`]: `smarter-bpfctl`, operators' view of (and careful hand on) the pinned datapath.
//! - [`opstats`]: CNI call counts and latencies the plugin leaves for the agent's metrics.
//! - [`dns`]: `smarter-dns`, node-local DNS for pod hostnames (records followed with inotify).
//! - [`cmd`]: the verbs (ADD, DEL, CHECK, VERSION, STATUS, GC) built from the above.
//! - [`install`]: the node installer (binaries, conflist), its uninstall, the agent's probe.

pub mod agent;
pub mod bpfctl;
pub mod cmd;
pub mod cni;
pub mod datapath;
pub mod dns;
pub mod install;
pub mod ipam;
pub mod naming;
pub mod netlink;
pub mod opstats;
pub mod state;
