//! The datapaths: one seam ([`Datapath`], opened by [`open`]/[`open_existing`]) and two
//! sibling implementations.
//!
//! - [`ebpf`]: TC eBPF programs and pinned maps shared by every plugin invocation, the agent
//!   and `smarter-bpfctl` ([`ebpf::EbpfNetwork`], engine [`EbpfDatapath`]);
//! - [`nftables`]: the same semantics as per-network nftables tables with per-pod set
//!   elements ([`nftables::NftablesNetwork`]), for kernels where eBPF cannot run;
//! - `seam`: the [`Datapath`] trait, [`DatapathError`], the [`Settings`] a datapath is
//!   opened with;
//! - `open`: the one place that chooses between them ([`open`], [`select`]);
//! - `availability`: whether eBPF can run ([`probe`], [`EbpfUnavailable`]) and the recorded
//!   choice ([`DatapathChoice`]);
//! - [`uplink`]: which interface is the uplink ([`uplink::resolve`], one tested decision for
//!   the plugin and the agent);
//! - `types`: what both datapaths take: [`EndpointSpec`], [`HostPortSpec`], [`PodLink`],
//!   [`AttachMode`], [`DatapathConfig`].
//!
//! Map names, layouts and capacities come from `smarter_common`; the pin directory carries
//! [`smarter_common::LAYOUT_VERSION`], so an upgraded layout never reuses old maps.

mod availability;
pub mod ebpf;
pub mod nftables;
mod open;
mod seam;
mod types;
pub mod uplink;

pub use availability::{
    ChoiceReason, ChoiceRecord, DatapathChoice, DatapathKind, EbpfUnavailable, PinRootState,
    ensure_pin_root, probe,
};
pub use ebpf::{
    CtEntryView, EbpfDatapath, EbpfError, EndpointRecord, EventReader, EventView, HookView,
    MapFill, remove_network_pins,
};
pub use open::{Datapaths, Opened, System, open, open_existing, select, settings};
pub use seam::{Bridge, Datapath, DatapathError, Settings, UplinkView};
pub use smarter_common::{CtTimeouts, EndpointValue, LAYOUT_VERSION, NetConfig};
pub use types::{AttachMode, DatapathConfig, EndpointSpec, HostPortSpec, PodLink};
pub use uplink::Uplink;
