//! After a boot: the node's namespaces, veths and bpffs pins are gone, so is the IPAM
//! directory when it is on tmpfs, while the records in `stateDir` survived. The kubelet
//! starts new sandboxes, and the runtime's DELs for the old ones come late, if at all.
//! [`reconcile`] retires, on the first call of any verb after a boot (the kernel's boot id
//! differs from the one recorded) and when the agent starts, every record whose veth is gone
//! and whose namespace is gone: its datapath entries (only those it still owns), its IPAM
//! allocation (by container id, as host-local releases) and the record itself, which the
//! node-local DNS follows. Empty or torn records (written at the power cut) are removed. A
//! late DEL for a retired attachment finds nothing and succeeds.

use std::path::Path;

use super::Ctx;
use super::del::teardown;
use super::errors::IntoCni as _;
use crate::cni::CniError;
use crate::state::StateDir;
use crate::state::boot;

/// What one reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// `container id/ifname` of the records retired.
    pub retired: Vec<String>,
    /// Torn or empty record files removed.
    pub torn: Vec<String>,
    /// Whether this call reconciled (false: the recorded boot is this one).
    pub ran: bool,
}

/// Reconciles the network after a boot, once per boot: cheap (one file read) when the
/// recorded boot id is this boot's. Concurrent callers serialise on `boot.lock`; the first
/// does the work, the others find this boot recorded. The boot id is recorded only when
/// every retirement succeeded, so a failure is retried by the next call.
///
/// # Errors
///
/// When the state directory cannot be read or written, or a retirement failed (each
/// failure named).
pub(super) async fn reconcile(ctx: &Ctx) -> Result<Reconciled, CniError> {
    let Some(now) = boot::current() else {
        return Ok(Reconciled::default());
    };
    let dir = StateDir::new(&ctx.conf.state_dir, &ctx.conf.name);
    if boot::recorded(&dir).as_deref() == Some(now.as_str()) {
        return Ok(Reconciled::default());
    }
    let _lock = dir.lock_boot().into_cni()?;
    if boot::recorded(&dir).as_deref() == Some(now.as_str()) {
        return Ok(Reconciled::default());
    }
    let store = ctx.state()?;
    let mut done = Reconciled {
        torn: store.remove_torn().into_cni()?,
        ran: true,
        ..Reconciled::default()
    };
    for name in &done.torn {
        tracing::warn!("after a boot: removed the torn record {name}");
    }
    let node = ctx.host.node().into_cni()?;
    let mut failures = Vec::new();
    for r in store.list().into_cni()? {
        let veth = node.link_by_name(&r.host_ifname).await.into_cni()?;
        if veth.is_some() || netns_alive(&r.netns) {
            continue;
        }
        let who = format!("{}/{}", r.container_id, r.ifname);
        tracing::info!(
            "after a boot: retiring {who} ({} {}, {}): its namespace and veth are gone",
            r.pod_namespace,
            r.pod_name,
            r.ip
        );
        match teardown(ctx, &r.container_id, &r.ifname).await {
            Ok(()) => done.retired.push(who),
            Err(e) => failures.push(e.msg),
        }
    }
    if !failures.is_empty() {
        return Err(CniError::new(
            CniError::IO,
            format!(
                "reconciling after a boot left work undone: {}",
                failures.join("; ")
            ),
            "",
        ));
    }
    boot::record(&dir, &now).map_err(|e| {
        CniError::new(
            CniError::IO,
            format!("cannot record the boot id in {}: {e}", dir.path().display()),
            "stateDir",
        )
    })?;
    Ok(done)
}

/// Whether the namespace an attachment was made in can still be its own: a bind mount that
/// exists (`/run/netns/…`, `/var/run/netns/…`). A `/proc/<pid>/ns/net` path proves nothing
/// after a boot (the pid may be another process's): only the veth counts then.
fn netns_alive(netns: &str) -> bool {
    !netns.is_empty() && !netns.starts_with("/proc/") && Path::new(netns).exists()
}

#[cfg(test)]
mod tests {
    use super::netns_alive;

    #[test]
    fn proc_paths_and_missing_mounts_are_not_alive() {
        assert!(!netns_alive(""));
        assert!(!netns_alive("/proc/1/ns/net"));
        assert!(!netns_alive("/run/netns/surely-not-here-7d1c"));
        assert!(netns_alive("/"));
    }
}
