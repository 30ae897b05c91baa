//! IPv6 forwarding for a dual-stack network: the kernel forwards the pods' IPv6 on this
//! datapath, so the node namespace needs `net.ipv6.conf.all.forwarding=1`. With forwarding on,
//! the kernel ignores router advertisements on an interface whose `accept_ra` is 1 (and a node
//! that learnt its uplink's address or default route from them would lose it), so every
//! external interface with `accept_ra=1` gets `accept_ra=2` (accept even when forwarding)
//! first. Interfaces set to 0 (or already 2) are left as they are. Idempotent: writes only what
//! differs. `/proc/sys/net` is the calling thread's network namespace's view.

use std::fs;

use super::error::NftablesError;
use super::script::check_ifname;
use super::tables::NftablesDatapath;

/// The node-wide IPv6 forwarding switch (writing it also sets every interface's and the
/// default `forwarding`).
const FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

fn accept_ra(ifname: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{ifname}/accept_ra")
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|v| v.trim().to_owned())
}

fn write(path: &str, value: &'static str) -> Result<(), NftablesError> {
    if read(path).as_deref() == Some(value) {
        return Ok(());
    }
    fs::write(path, value).map_err(|source| NftablesError::Sysctl {
        path: path.to_owned(),
        value,
        source,
    })
}

impl NftablesDatapath {
    /// Turns IPv6 forwarding on in the calling thread's network namespace (the node's), after
    /// setting `accept_ra=2` on each of `external` (the external interfaces) whose `accept_ra`
    /// is 1, so they keep taking router advertisements. An interface that does not exist (or a
    /// node without IPv6) is skipped.
    ///
    /// # Errors
    ///
    /// [`NftablesError::Invalid`] for an interface name that cannot be a path component,
    /// [`NftablesError::Sysctl`] when a sysctl cannot be written.
    pub fn enable_ipv6_forwarding<'a>(
        external: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), NftablesError> {
        if read(FORWARDING).is_none() {
            // No IPv6 in this kernel (`ipv6.disable=1`): nothing to forward.
            return Ok(());
        }
        for ifname in external {
            check_ifname(ifname)?;
            let path = accept_ra(ifname);
            if read(&path).as_deref() == Some("1") {
                write(&path, "2")?;
            }
        }
        write(FORWARDING, "1")
    }
}
