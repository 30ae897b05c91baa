//! The eBPF datapath: TC programs and pinned maps shared by every plugin invocation.
//!
//! - `handle`: [`EbpfDatapath`], one network's pins opened, and the config record;
//! - `load`: load once per network under a lock, pin, reopen from pins; `object`: the
//!   embedded object ([`EBPF_OBJECT`], also run by the `BPF_PROG_TEST_RUN` tests of the
//!   `smarter-ebpf-tests` crate) and the id of the pinned build;
//! - `endpoints`: ADD/DEL/CHECK/GC operations on one pod ([`EndpointRecord`]); `ifaces`: which
//!   endpoint sits behind a pod port (the source-MAC check of frames without an IPv4 source);
//! - `attach`: TCX or netlink attachment that outlives the plugin process;
//! - `external`: the external interfaces (ingress program and egress backstop on each, the
//!   `uplinks` entries pods are NATed by, the node's addresses) ([`UplinkEntry`]);
//! - `pins`: pin layout, bpffs and layout checks, creating a missing pin root, the loader
//!   lock ([`remove_network_pins`]);
//! - `tc_filters`: the netlink query aya lacks (which BPF filters sit on clsact ingress);
//! - `sys`: the bpf(2) command aya lacks (`BPF_LINK_DETACH`);
//! - `uplink`: the loopback program's attachment, the bridge/NAT settings, deny ranges,
//!   verdict counters;
//! - `ct`: conntrack listing, GC and per-pod flush ([`CtEntryView`]);
//! - `hostports`: hostPort DNAT entries;
//! - `events`: the drop/trace event ring buffer ([`EventReader`]);
//! - `inspect`: attachments and map fill for `smarter-bpfctl status`;
//! - `upgrade`: a build with other programs but the same map layout swaps the pinned programs
//!   and re-attaches everything, keeping the maps' state.
//!
//! Map names, layouts and capacities come from `smarter_common`; the pin directory carries
//! [`smarter_common::LAYOUT_VERSION`], so an upgraded layout never reuses old maps.

pub(super) mod attach;
mod availability;
mod clat;
mod ct;
mod dual;
mod endpoints;
mod error;
mod events;
mod external;
mod handle;
mod hostports;
mod ifaces;
mod inspect;
mod load;
mod network;
mod object;
pub(super) mod pins;
mod rows;
mod sys;
mod tc_filters;
mod upgrade;
mod uplink;

pub use availability::{EbpfUnavailable, PinRootState, ensure_pin_root, probe};
pub use endpoints::EndpointRecord;
pub use error::EbpfError;
pub use events::EventReader;
pub use external::UplinkEntry;
pub use handle::EbpfDatapath;
pub use inspect::HookView;
pub use network::EbpfNetwork;
pub use object::EBPF_OBJECT;
pub use pins::remove_network_pins;
