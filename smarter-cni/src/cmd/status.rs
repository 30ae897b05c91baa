//! STATUS: can this network serve ADDs right now? Reasons about the datapath as ADD does
//! (without creating anything): a missing pin root whose nearest existing ancestor is bpffs is
//! fine (ADD creates it); with `datapath: auto` and eBPF unavailable the answer depends on
//! nftables, and the reason is logged. STATUS has no stdout on success, so the datapath it
//! expects ADD to use is logged (`info`; a fallback at `warn`).

use super::Ctx;
use super::errors::ToCni as _;
use crate::cni::{CniError, DatapathMode};
use crate::datapath::{ChoiceReason, ChoiceRecord, DatapathChoice, PinRootState, probe};

pub(super) async fn status(ctx: &Ctx) -> Result<(), CniError> {
    let unavailable = |msg: String| CniError::new(CniError::NOT_AVAILABLE, msg, "");
    let ipam = ctx
        .ipam()
        .map_err(|e| unavailable(format!("IPAM: {}", e.msg)))?;
    let used = ipam
        .allocations()
        .map_err(|e| unavailable(e.to_cni().msg))?;
    let usable = usable_addresses(ctx.conf.subnet.prefix());
    if used.len() as u64 >= usable {
        return Err(unavailable(format!(
            "no IP addresses available in subnet {}",
            ctx.conf.subnet
        )));
    }
    if ctx.conf.ipv6 != crate::cni::config::Ipv6Mode::Off {
        let used6 = ctx
            .ipam6()
            .and_then(|ipam6| ipam6.allocations().map_err(|e| e.to_cni()))
            .map_err(|e| unavailable(format!("IPv6 IPAM: {}", e.msg)))?;
        // The first and last addresses and the gateway are never handed out.
        let usable6 = (1u128 << (128 - u32::from(ctx.conf.subnet6.prefix()))) - 3;
        if used6.len() as u128 >= usable6 {
            return Err(unavailable(format!(
                "no IP addresses available in subnet6 {}",
                ctx.conf.subnet6
            )));
        }
    }
    ctx.state()
        .map_err(|e| unavailable(format!("stateDir: {}", e.msg)))?;
    let nft = || {
        crate::datapath::usable(&ctx.conf, crate::datapath::DatapathKind::Nftables)
            .map_err(|e| unavailable(format!("nftables datapath: {e}")))
    };
    let choice = DatapathChoice::select(ctx.conf.datapath, &ctx.conf.bpffs_dir);
    let mut nftables = false;
    match (ctx.conf.datapath, &choice.reason) {
        (DatapathMode::Nftables, _) => {
            nft()?;
            nftables = true;
        }
        (DatapathMode::Ebpf, _) => match probe(&ctx.conf.bpffs_dir) {
            Ok(root) => log_root(&ctx.conf.bpffs_dir, &root),
            Err(u) => return Err(unavailable(format!("eBPF datapath: {u}"))),
        },
        (DatapathMode::Auto, ChoiceReason::Unavailable(u)) => {
            nft().map_err(|n| unavailable(format!("eBPF datapath: {u}; {}", n.msg)))?;
            nftables = true;
            tracing::warn!(
                reason = choice.reason_label(),
                "datapath auto: eBPF unavailable ({u}); ADD will use nftables"
            );
        }
        (DatapathMode::Auto, _) => {
            if let Ok(root) = probe(&ctx.conf.bpffs_dir) {
                log_root(&ctx.conf.bpffs_dir, &root);
            }
            // A refusal found only by loading (the verifier) is known from the last ADD.
            if let Some(last) = ChoiceRecord::load(&ctx.conf.state_dir, &ctx.conf.name)
                && last.datapath != "ebpf"
                && last.reason != "configured"
            {
                nftables = true;
                tracing::warn!(
                    reason = %last.reason,
                    "datapath auto: the last ADD fell back to nftables ({})",
                    last.detail.as_deref().unwrap_or("no detail")
                );
            }
        }
    }
    if nftables {
        no_clat_needed(ctx).await?;
    }
    tracing::info!("STATUS: available, datapath {choice}");
    Ok(())
}

/// On the nftables datapath: code 51 when the node's way off is an IPv6-only uplink. nftables
/// cannot translate between address families, so pods would have no IPv4 internet there (the
/// eBPF datapath's CLAT does it). ADD still works: pods reach each other, the node and the
/// LAN.
async fn no_clat_needed(ctx: &Ctx) -> Result<(), CniError> {
    let conf = &ctx.conf;
    let node = ctx.host.node().map_err(|e| e.to_cni())?;
    let snap = node
        .uplink_snapshot(&conf.uplink.names())
        .await
        .map_err(|e| e.to_cni())?;
    let ext = crate::datapath::uplink::external(&conf.uplink, &snap, &conf.bridge)
        .with_clat(&snap, conf.pref64());
    match ext.clat {
        None => Ok(()),
        Some(c) => Err(CniError::new(
            CniError::LIMITED_CONNECTIVITY,
            format!(
                "nftables datapath: the node's only uplink {} is IPv6-only and nftables cannot \
                 translate IPv4 to IPv6 (no CLAT): pods have no IPv4 way off the node; the eBPF \
                 datapath translates it",
                c.name
            ),
            "datapath",
        )),
    }
}

fn log_root(path: &std::path::Path, root: &PinRootState) {
    if let PinRootState::WillBeCreated { ancestor } = root {
        tracing::info!(
            "the pin root {} does not exist yet: the first ADD creates it on the bpf \
             filesystem at {}",
            path.display(),
            ancestor.display()
        );
    }
}

/// Addresses of a subnet that can go to pods: all but network, broadcast and gateway.
fn usable_addresses(prefix: u8) -> u64 {
    (1u64 << (32 - u32::from(prefix))).saturating_sub(3)
}
