//! The uplink as the agent follows it: the decision is [`crate::datapath::uplink::resolve`]
//! (the plugin makes the same one); [`watch`] re-makes it on every relevant netlink event.

pub mod watch;

pub use crate::datapath::uplink::{Uplink, resolve};
pub use crate::netlink::snapshot::Snapshot;
