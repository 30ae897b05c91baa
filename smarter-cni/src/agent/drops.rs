//! `--log-drops`: the agent drains the datapath's event ring buffer into its log (one line per
//! dropped packet, with the reason). The ring buffer has one reader: while the agent drains it,
//! `smarter-bpfctl monitor` sees nothing, so this is off by default.

use std::time::Duration;

use crate::cni::NetConf;
use crate::datapath::{self, DatapathKind};

/// Starts a thread logging every event of `conf`'s network at `warn` level.
///
/// # Errors
///
/// When the pins or the ring buffer cannot be opened.
pub fn spawn(conf: &NetConf) -> anyhow::Result<()> {
    let dp = datapath::open_existing(conf, DatapathKind::Ebpf)?
        .ok_or_else(|| anyhow::anyhow!("network {} has no pinned datapath", conf.name))?;
    let mut reader = dp
        .drops()?
        .ok_or_else(|| anyhow::anyhow!("the datapath of {} reports no drops", conf.name))?;
    std::thread::Builder::new()
        .name("drops".into())
        .spawn(move || {
            loop {
                match reader.next(Duration::from_secs(1)) {
                    Ok(Some(ev)) => tracing::warn!(
                        verdict = ev.verdict,
                        ifindex = ev.ifindex,
                        proto = ev.proto,
                        "{}:{} -> {}:{} ({} bytes)",
                        ev.src,
                        ev.sport,
                        ev.dst,
                        ev.dport,
                        ev.len
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!("reading datapath events: {e}; stopped");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
