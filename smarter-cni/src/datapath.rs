//! The eBPF datapath: TC programs and pinned maps shared by every plugin invocation.
//!
//! - [`EbpfDatapath`] (`ebpf`): load once per network under a lock, pin, reopen from pins;
//! - `endpoints`: ADD/DEL/CHECK/GC operations on one pod ([`EndpointSpec`], [`EndpointRecord`]);
//! - `attach`: TCX or netlink attachment that outlives the plugin process;
//! - `pins`: pin layout, bpffs and layout checks, creating a missing pin root, the loader
//!   lock ([`remove_network_pins`]);
//! - `availability`: whether eBPF can run ([`probe`], [`EbpfUnavailable`]) and the datapath a
//!   network ends up on ([`DatapathChoice`]);
//! - `tc_filters`: the netlink query aya lacks (which BPF filters sit on clsact ingress);
//! - `sys`: the bpf(2) command aya lacks (`BPF_LINK_DETACH`);
//! - `uplink`: the uplink program's attachment, the uplink/bridge/NAT settings, deny ranges,
//!   verdict counters;
//! - `ct`: conntrack listing, GC and per-pod flush ([`CtTimeouts`], [`CtEntryView`]);
//! - `hostports`: hostPort DNAT entries ([`HostPortSpec`]);
//! - `events`: the drop/trace event ring buffer ([`EventReader`]);
//! - `upgrade`: a build with other programs but the same map layout swaps the pinned programs
//!   and re-attaches everything, keeping the maps' state.
//!
//! Map names, layouts and capacities come from `smarter_common`; the pin directory carries
//! [`smarter_common::LAYOUT_VERSION`], so an upgraded layout never reuses old maps.

mod attach;
mod availability;
mod ct;
mod ebpf;
mod egress;
mod endpoints;
mod error;
mod events;
mod hostports;
mod inspect;
pub mod iptables;
mod pins;
mod sys;
mod tc_filters;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_nat;
#[cfg(test)]
mod tests_parity;
#[cfg(test)]
mod tests_verdicts;
mod upgrade;
mod uplink;

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

pub use availability::{
    ChoiceReason, ChoiceRecord, DatapathChoice, DatapathKind, EbpfUnavailable, PinRootState,
    ensure_pin_root, probe,
};
pub use ct::{CtEntryView, CtTimeouts};
pub use ebpf::EbpfDatapath;
pub use endpoints::{EndpointRecord, EndpointSpec};
pub use error::EbpfError;
pub use events::{EventReader, EventView};
pub use hostports::HostPortSpec;
pub use inspect::{AttachmentView, MapFill};
pub use pins::remove_network_pins;
pub use smarter_common::{EndpointValue, LAYOUT_VERSION, NetConfig};
pub use uplink::Uplink;

/// How the pod program is attached to a host veth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links where the kernel has them (Linux 6.6+), netlink clsact filters otherwise.
    #[default]
    Auto,
    /// TCX links, pinned under the network's `links/` directory.
    Tcx,
    /// Netlink filters on a clsact qdisc (Linux 4.5+).
    Netlink,
}

/// The network settings the datapath needs from the CNI configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathConfig {
    /// The pod gateway (bridge) address.
    pub gateway: Ipv4Addr,
    /// The pod subnet.
    pub subnet: Ipv4Network,
    /// Capacity of each conntrack map (`ctMaxEntries`). Applies when the maps are created;
    /// pinned maps keep their size until the network's pins are removed.
    pub ct_max_entries: u32,
}
