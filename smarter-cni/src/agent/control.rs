//! The agent's side of the datapath seam: the datapath is opened by
//! [`crate::datapath::open`], exactly as the plugin opens it, and driven through
//! [`Datapath::ensure_network`] on every uplink decision and [`Datapath::gc`] on its timer.
//!
//! Ownership between agent and plugin: both open the same pins under the same loader lock, so
//! whoever comes first loads and pins and the other reuses (a restarted agent drops no flow).
//! The plugin writes what it learns on ADD (bridge, NAT range, deny list, the uplink as the
//! kernel shows it then); the agent writes the uplink whenever the kernel's view changes, and
//! alone expires conntrack entries. Both make the same uplink decision
//! ([`crate::datapath::uplink::resolve`]), so their writes agree.

use anyhow::Context as _;

use super::DatapathControl;
use crate::cni::NetConf;
use crate::datapath::{self, Datapath, DatapathChoice, External};

/// Opens the datapath `conf` selects as [`open_choosing`] does, without the choice.
///
/// # Errors
///
/// As [`open_choosing`].
pub fn open(conf: &NetConf) -> anyhow::Result<Box<dyn DatapathControl + Send>> {
    open_choosing(conf).map(|(dp, _)| dp)
}

/// Opens the datapath `conf` selects (loading and pinning programs and maps if nobody has
/// yet) and returns it with the choice and its reason (for health and metrics), which is
/// also recorded in `<stateDir>/<network>/datapath.choice`.
///
/// # Errors
///
/// When the selected datapath cannot be opened (`datapath: ebpf` and no bpffs, a changed
/// map layout...).
pub fn open_choosing(
    conf: &NetConf,
) -> anyhow::Result<(Box<dyn DatapathControl + Send>, DatapathChoice)> {
    let opened = datapath::open(conf).context("opening the datapath")?;
    tracing::info!("datapath {}", opened.choice);
    Ok((Box::new(Control(opened.datapath)), opened.choice))
}

/// A datapath driven by the agent's decisions.
#[derive(Debug)]
struct Control(Box<dyn Datapath>);

impl DatapathControl for Control {
    fn uplink_changed(&mut self, external: &External) -> anyhow::Result<()> {
        Ok(self.0.ensure_network(None, external)?)
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        Ok(self.0.gc()?)
    }
}

impl<T: DatapathControl + ?Sized> DatapathControl for Box<T> {
    fn uplink_changed(&mut self, external: &External) -> anyhow::Result<()> {
        (**self).uplink_changed(external)
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        (**self).gc()
    }
}
