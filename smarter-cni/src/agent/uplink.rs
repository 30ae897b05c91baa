//! The external interfaces as the agent follows them: the decision is
//! [`crate::datapath::uplink::external`] (the plugin makes the same one); [`watch`] re-makes
//! it on every relevant netlink event.

pub mod watch;

pub use crate::datapath::uplink::{External, Uplink, external, resolve};
pub use crate::netlink::snapshot::Snapshot;
