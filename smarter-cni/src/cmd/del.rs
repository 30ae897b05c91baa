//! DEL: remove everything the attachment owns. Idempotent: success when the namespace,
//! the veth, the allocation, the map entries or the pins are already gone. Teardown keeps
//! going after a failed step and reports every failure.

use super::Ctx;
use super::datapath;
use super::errors::{IntoCni as _, ToCni as _};
use crate::cni::CniError;
use crate::datapath::DatapathKind;
use crate::naming::host_veth_name;

pub(super) async fn del(ctx: &Ctx) -> Result<(), CniError> {
    let id = ctx.env.container_id()?;
    let ifname = ctx.env.ifname()?;
    let res = teardown(ctx, id, ifname).await;
    // The last pod of the datapath this config no longer selects takes its rules or pins
    // with it (best effort; a failed teardown keeps its record, so nothing goes then).
    datapath::retire_unused_now(ctx);
    res
}

/// Removes one attachment; shared by DEL and GC.
pub(super) async fn teardown(ctx: &Ctx, id: &str, ifname: &str) -> Result<(), CniError> {
    let mut failures: Vec<String> = Vec::new();
    let store = ctx.state()?;
    let record = match store.load(id, ifname) {
        Ok(r) => r,
        Err(e) => {
            failures.push(e.to_string());
            None
        }
    };
    let ipam = ctx.ipam()?;
    let ip = match &record {
        Some(r) => Some(r.ip),
        None => ipam.lookup(id, ifname).unwrap_or_else(|e| {
            failures.push(e.to_string());
            None
        }),
    };
    let host = host_veth_name(id, ifname);

    // The veth goes first: deleting it takes its TCX link and filters off in the same RCU
    // grace period as the unregistration, so the datapath's detach below finds the link
    // defunct and only unpins it (an explicit BPF_LINK_DETACH waits a grace period of its
    // own: about a quarter of a DEL).
    match ctx.host.node() {
        Ok(node) => {
            if let Err(e) = node.delete_link(&host).await {
                failures.push(e.to_string());
            }
        }
        Err(e) => failures.push(e.to_cni().msg),
    }

    // The recorded datapath; without a record (ADD killed before saving it), both.
    let kinds = match &record {
        Some(r) => match datapath::recorded_kind(&r.datapath) {
            Ok(kind) => vec![kind],
            Err(e) => {
                failures.push(e.msg);
                Vec::new()
            }
        },
        None => vec![DatapathKind::Ebpf, DatapathKind::Nftables],
    };
    for kind in kinds {
        match ctx.datapaths.open_existing(&ctx.conf, kind) {
            Ok(Some(dp)) => {
                if let Some(ip) = ip
                    && let Err(e) = dp.detach(ip, &host)
                {
                    failures.push(e.to_string());
                }
            }
            Ok(None) => tracing::debug!(
                "no {} datapath for {}: nothing to detach",
                kind.name(),
                ctx.conf.name
            ),
            Err(e) => failures.push(e.to_string()),
        }
    }

    if let Err(e) = ipam.release(id, ifname) {
        failures.push(e.to_string());
    }
    // Whatever `ipv6` says now: a pod added while it was on still holds its address.
    if let Err(e) = ctx
        .ipam6()
        .and_then(|ipam6| ipam6.release(id, ifname).into_cni())
    {
        failures.push(e.msg);
    }
    if failures.is_empty() {
        // Only forget the record when everything it points at is gone, so a failed DEL
        // can be retried (or GC'd) with full knowledge.
        store.remove(id, ifname).into_cni()?;
        Ok(())
    } else {
        Err(CniError::new(
            CniError::IO,
            format!(
                "DEL of {id}/{ifname} left work undone: {}",
                failures.join("; ")
            ),
            "",
        ))
    }
}
