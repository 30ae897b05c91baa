//! STATUS: can this network serve ADDs right now?

use super::Ctx;
use super::errors::ToCni as _;
use crate::cni::{CniError, DatapathMode};
use crate::datapath::EbpfDatapath;
use crate::datapath::iptables::NftDatapath;

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
    ctx.state()
        .map_err(|e| unavailable(format!("stateDir: {}", e.msg)))?;
    let ebpf = || {
        EbpfDatapath::check_bpffs(&ctx.conf.bpffs_dir)
            .map_err(|e| unavailable(format!("eBPF datapath: {e}")))
    };
    let nft =
        || NftDatapath::available().map_err(|e| unavailable(format!("nftables datapath: {e}")));
    match ctx.conf.datapath {
        DatapathMode::Ebpf => ebpf(),
        DatapathMode::Iptables => nft(),
        DatapathMode::Auto => {
            ebpf().or_else(|e| nft().map_err(|n| unavailable(format!("{}; {}", e.msg, n.msg))))
        }
    }
}

/// Addresses of a subnet that can go to pods: all but network, broadcast and gateway.
fn usable_addresses(prefix: u8) -> u64 {
    (1u64 << (32 - u32::from(prefix))).saturating_sub(3)
}
