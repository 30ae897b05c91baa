//! What the verbs add to the datapath seam: CNI error codes for its errors, and retiring the
//! datapath nobody uses any more.
//!
//! ADD records the datapath's name in the attachment record; DEL, CHECK and GC use the
//! recorded one, so switching `datapath` in the conflist never strands a pod. When the last
//! pod of the other datapath is gone, its rules or pins are removed ([`retire_unused`]):
//! checked on every ADD, and on every DEL and GC once their records are gone
//! ([`retire_unused_now`]), so a node that served pods on both keeps no stale tables or pins
//! while pods of the configured datapath run on.

use super::Ctx;
use super::errors::{IntoCni as _, ToCni};
use crate::cni::CniError;
use crate::datapath::{self, DatapathError, DatapathKind};

impl ToCni for DatapathError {
    fn to_cni(&self) -> CniError {
        match self {
            DatapathError::HostPortTaken { .. } => CniError::new(
                CniError::HOSTPORT_TAKEN,
                self.to_string(),
                "runtimeConfig.portMappings",
            ),
            DatapathError::Driver { kind, .. } => CniError::new(
                match kind {
                    DatapathKind::Ebpf => CniError::EBPF,
                    DatapathKind::Nftables => CniError::NFTABLES,
                },
                self.to_string(),
                "datapath",
            ),
            DatapathError::Lock(e) => e.to_cni(),
            DatapathError::Config { key, msg } => {
                CniError::new(CniError::INVALID_CONFIG, msg.clone(), *key)
            }
        }
    }
}

/// The datapath an attachment record names ([`DatapathKind::parse`]; records older than the
/// field name none and were eBPF's).
///
/// # Errors
///
/// Code 103 ([`CniError::EBPF`] is the datapath family's) naming the unknown name: a record
/// of a datapath this build does not know is never taken for eBPF's.
pub(super) fn recorded_kind(name: &str) -> Result<DatapathKind, CniError> {
    if name.is_empty() {
        return Ok(DatapathKind::Ebpf);
    }
    DatapathKind::parse(name).map_err(|why| {
        CniError::new(
            CniError::EBPF,
            format!("attachment record: {why}"),
            "datapath",
        )
    })
}

/// Switching datapaths: once no attachment of this network uses the datapath other than
/// `now`, remove its rules or pins so nothing stale is left. Best effort (logged).
pub(super) fn retire_unused(ctx: &Ctx, now: DatapathKind) {
    let others_in_use = ctx
        .state()
        .and_then(|s| s.list().into_cni())
        .map(|records| {
            records
                .iter()
                .any(|r| recorded_kind(&r.datapath).ok() != Some(now))
        })
        .unwrap_or(true);
    if others_in_use {
        return;
    }
    let other = match now {
        DatapathKind::Ebpf => DatapathKind::Nftables,
        DatapathKind::Nftables => DatapathKind::Ebpf,
    };
    let res = ctx
        .datapaths
        .open_existing(&ctx.conf, other)
        .and_then(|dp| match dp {
            Some(dp) => {
                tracing::info!(
                    "retiring the unused {} datapath of {}",
                    other.name(),
                    ctx.conf.name
                );
                dp.remove()
            }
            None => Ok(()),
        });
    if let Err(e) = res {
        tracing::warn!("cannot retire the unused datapath: {e}");
    }
}

/// [`retire_unused`] for the datapath this configuration serves new pods with (DEL, GC):
/// the other one goes as soon as its last attachment is gone, not only at the next ADD.
pub(super) fn retire_unused_now(ctx: &Ctx) {
    retire_unused(ctx, datapath::select(&ctx.conf).datapath);
}
