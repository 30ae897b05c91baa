//! The node agent (`smarter-agent`): the long-lived process that owns the datapath.
//!
//! - [`uplink`]: which interface is the uplink and with which address — a pure decision
//!   ([`uplink::resolve`]) over netlink dumps, followed event-driven ([`uplink::watch`]);
//! - [`run`](mod@run): the main loop — tells a [`DatapathControl`] about every uplink change,
//!   collects conntrack garbage periodically, reports [`Health`], stops on request;
//! - [`conf`]: the plugin's network configuration (`.conf` or `.conflist`) as the agent reads it;
//! - [`signal`]: SIGTERM/SIGINT as a future.
//!
//! The datapath sits behind the narrow [`DatapathControl`] seam; [`LoggingDatapath`] is the
//! stand-in that only logs.

pub mod conf;
pub mod run;
pub mod signal;
pub mod uplink;

pub use conf::{ConfError, parse_network_config};
pub use run::{AgentConfig, DatapathControl, Health, run};
pub use signal::TerminationSignals;
pub use uplink::watch::{UplinkWatch, WatchError};
pub use uplink::{UplinkInfo, resolve};

/// A [`DatapathControl`] that only logs what it is told (until the eBPF datapath is wired).
#[derive(Debug, Default)]
pub struct LoggingDatapath;

impl DatapathControl for LoggingDatapath {
    fn uplink_changed(&mut self, uplink: Option<&UplinkInfo>) -> anyhow::Result<()> {
        match uplink {
            Some(u) => tracing::info!("datapath: uplink set to {u}"),
            None => tracing::info!("datapath: uplink cleared"),
        }
        Ok(())
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        tracing::trace!("datapath: gc (nothing to do)");
        Ok(0)
    }
}
