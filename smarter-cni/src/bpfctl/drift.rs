//! `status`'s `sysctl_drift`: how the sysctls ADD set on the bridge and on every host veth
//! ([`crate::cmd::GUARD_SYSCTLS`]: no router advertisements or redirects taken, none
//! sent) differ now, read in this process's network namespace (the node's).

use crate::cmd::guard_drift;
use crate::netlink::Netlink;

/// The drift of `bridge` (when known) and of `veths`; when `bridge` is `None`, the bridge
/// the first host veth is attached to (asked over netlink). Empty: everything as set.
pub(super) fn of(bridge: Option<String>, veths: &[String]) -> Vec<String> {
    let bridge = bridge.or_else(|| veths.first().and_then(|v| controller_of(v)));
    bridge
        .iter()
        .chain(veths)
        .flat_map(|ifname| guard_drift(ifname))
        .collect()
}

/// The name of the bridge `ifname` is attached to; `None` when it is not, or on any failure
/// (the drift of the host veths is still reported).
fn controller_of(ifname: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let nl = Netlink::connect().ok()?;
        let index = nl.link_by_name(ifname).await.ok()??.controller?;
        Some(nl.link_by_index(index).await.ok()??.name)
    })
}
