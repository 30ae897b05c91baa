//! The datapaths: one seam ([`Datapath`], opened by [`open`]/[`open_existing`]) and two
//! sibling implementations.
//!
//! - [`ebpf`]: TC eBPF programs and pinned maps shared by every plugin invocation, the agent
//!   and `smarter-bpfctl` ([`ebpf::EbpfNetwork`], over the engine in [`ebpf`]);
//! - [`nftables`]: the same semantics as per-network nftables tables with per-pod set
//!   elements ([`nftables::NftablesNetwork`]), for kernels where eBPF cannot run;
//! - `seam`: the [`Datapath`] trait, [`DatapathError`], the [`Settings`] a datapath is
//!   opened with;
//! - `open`: the one place that chooses between them ([`open`], [`select`]);
//! - `choice`: which datapath serves a network and why ([`DatapathKind`], parsed once;
//!   [`DatapathChoice`], recorded as [`ChoiceRecord`]); whether eBPF can run is the eBPF
//!   driver's to say ([`probe`], [`EbpfUnavailable`]);
//! - [`uplink`]: which interfaces pods leave by ([`uplink::external`], one tested decision for
//!   the plugin and the agent); [`clat`]: whether pods' IPv4 is translated out of an
//!   IPv6-only uplink ([`clat::plan`]);
//! - `types`: what both datapaths take: [`EndpointSpec`], [`HostPortSpec`], [`PodLink`],
//!   [`AttachMode`], [`DatapathConfig`].
//!
//! Map names, layouts and capacities come from `smarter_common`; the pin directory carries
//! [`smarter_common::LAYOUT_VERSION`], so an upgraded layout never reuses old maps.

mod choice;
pub mod clat;
pub mod ebpf;
pub mod nftables;
mod open;
pub mod rows;
mod seam;
mod types;
pub mod uplink;

pub use choice::{ChoiceReason, ChoiceRecord, DatapathChoice};
pub use ebpf::{
    EbpfError, EbpfUnavailable, EndpointRecord, EventReader, HookView, PinRootState,
    ensure_pin_root, probe, remove_network_pins,
};
pub use open::{
    Datapaths, Opened, System, on_bpffs, open, open_existing, select, settings, usable,
};
pub use seam::{Bridge, Datapath, DatapathError, DropEvents, Settings};
pub use smarter_common::{CtTimeouts, EndpointValue, LAYOUT_VERSION, NetConfig};
pub use types::{
    AttachMode, CtEntryView, DatapathConfig, DatapathKind, EndpointSpec, EventView, HostPortSpec,
    MapFill, PodLink, PodTraffic, TrafficDir, V6Config,
};
pub use uplink::{External, Uplink};
