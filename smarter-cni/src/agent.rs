//! The node agent (`smarter-agent`): the long-lived process that owns the datapath.
//!
//! - [`uplink`]: which interface is the uplink and with which address — a pure decision
//!   ([`uplink::resolve`]) over netlink dumps, followed event-driven ([`uplink::watch`]);
//! - [`run`](mod@run): the main loop — tells a [`DatapathControl`] about every uplink change,
//!   collects conntrack garbage periodically, reports [`Health`], stops on request;
//! - [`pref64`]: the NAT64 prefix of the CLAT with `nat64Prefix: auto`, discovered from the
//!   routers (RFC 8781) or the resolvers (RFC 7050) and recorded for the plugin;
//! - [`conf`]: the plugin's network configuration (`.conf` or `.conflist`) as the agent reads it;
//! - [`signal`]: SIGTERM/SIGINT as a future.
//!
//! - [`control`]: the datapath (opened by [`crate::datapath::open`], as the plugin opens it)
//!   behind the narrow [`DatapathControl`] seam ([`control::open`]);
//!   [`LoggingDatapath`] only logs (dry runs, tests);
//! - [`metrics`]: Prometheus metrics from the pinned maps and the plugin's call statistics;
//! - [`drops`]: drop events drained into the log (`--log-drops`).

pub mod conf;
pub mod control;
pub mod drops;
pub mod metrics;
pub mod pref64;
pub mod run;
pub mod signal;
pub mod uplink;

pub use conf::{ConfError, parse_network_config};
pub use run::{AgentConfig, DatapathControl, Health, run};
pub use signal::TerminationSignals;
pub use uplink::watch::{UplinkWatch, WatchError};
pub use uplink::{External, Uplink, external, resolve};

/// A [`DatapathControl`] that only logs what it is told (`smarter-agent --dry-run`).
#[derive(Debug, Default)]
pub struct LoggingDatapath;

impl DatapathControl for LoggingDatapath {
    fn uplink_changed(&mut self, external: &External) -> anyhow::Result<()> {
        if external.uplinks.is_empty() {
            tracing::info!("datapath: no external interface");
        }
        for u in &external.uplinks {
            tracing::info!("datapath: external interface {u}");
        }
        Ok(())
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        tracing::trace!("datapath: gc (nothing to do)");
        Ok(0)
    }
}
