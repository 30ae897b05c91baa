//! GC: remove allocations, veths, map entries and records of attachments that are not in
//! `cni.dev/valid-attachments`.

use std::collections::HashSet;

use super::Ctx;
use super::datapath;
use super::del::teardown;
use super::errors::IntoCni as _;
use crate::cni::CniError;
use crate::naming::{HOST_VETH_PREFIX, host_veth_name};

pub(super) async fn gc(ctx: &Ctx) -> Result<(), CniError> {
    let Some(valid) = &ctx.conf.valid_attachments else {
        return Err(CniError::new(
            CniError::INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments (refusing to treat a missing list as empty)",
            "cni.dev/valid-attachments",
        ));
    };
    let valid: HashSet<(String, String)> = valid
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let valid_hosts: HashSet<String> = valid.iter().map(|(c, i)| host_veth_name(c, i)).collect();
    let mut failures = Vec::new();

    // Records and allocations name their owner: tear those down completely.
    let mut owners: HashSet<(String, String)> = HashSet::new();
    for r in ctx.state()?.list().into_cni()? {
        owners.insert((r.container_id, r.ifname));
    }
    for a in ctx.ipam()?.allocations().into_cni()? {
        owners.insert((a.container_id.clone(), a.ifname.clone().unwrap_or_default()));
    }
    for a in ctx.ipam6()?.allocations().into_cni()? {
        owners.insert((a.container_id.clone(), a.ifname.clone().unwrap_or_default()));
    }
    for (id, ifname) in owners.difference(&valid) {
        tracing::info!("GC: removing stale attachment {id}/{ifname}");
        if ifname.is_empty() {
            // A legacy host-local file without an interface name.
            let ipam = ctx.ipam()?;
            for a in ipam.allocations().into_cni()? {
                if a.container_id == *id && a.ifname.is_none() {
                    ipam.release_allocation(&a).into_cni()?;
                }
            }
            let ipam6 = ctx.ipam6()?;
            for a in ipam6.allocations().into_cni()? {
                if a.container_id == *id && a.ifname.is_none() {
                    ipam6.release_allocation(&a).into_cni()?;
                }
            }
            continue;
        }
        if let Err(e) = teardown(ctx, id, ifname).await {
            failures.push(e.msg);
        }
    }

    // Veths and map entries of attachments nobody recorded (e.g. ADD killed midway).
    let node = ctx.host.node().into_cni()?;
    for link in node.links().await.into_cni()? {
        if link.name.starts_with(HOST_VETH_PREFIX) && !valid_hosts.contains(&link.name) {
            tracing::info!("GC: removing orphan veth {}", link.name);
            if let Err(e) = node.delete_link(&link.name).await {
                failures.push(e.to_string());
            }
        }
    }
    for dp in ctx.datapaths.open_all(&ctx.conf).into_cni()? {
        for ep in dp.endpoints().into_cni()? {
            if !valid_hosts.contains(&ep.host_ifname) {
                tracing::info!(
                    "GC: removing orphan {} endpoint {}",
                    dp.kind().name(),
                    ep.ip
                );
                if let Err(e) = dp.detach(ep.ip, &ep.host_ifname) {
                    failures.push(e.to_string());
                }
            }
        }
    }

    datapath::retire_unused_now(ctx);

    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            CniError::IO,
            format!("GC incomplete: {}", failures.join("; ")),
            "",
        ))
    }
}
