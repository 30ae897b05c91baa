//! ADD's undo list: every step ADD has done, taken back newest first when a later one fails.

use std::net::Ipv4Addr;

use super::Ctx;
use crate::datapath::Datapath;
use crate::ipam::{Ipam, Ipam6};
use crate::netlink::Links;

/// A step done, undone on failure.
pub(super) enum Undo {
    /// The IPv4 allocation.
    Release,
    /// The IPv6 allocation.
    Release6,
    /// The host veth (its peer goes with it).
    DeleteVeth(String),
    /// The datapath's entries of the pod: (IPv4 address, host veth).
    Detach(Ipv4Addr, String),
}

/// What a failed ADD must take back, newest first. [`Rollback::unwind`] runs it; a rollback
/// that is committed or unwound has nothing left, and dropping one that is neither (a bug)
/// says so in the log.
pub(super) struct Rollback<'a> {
    steps: Vec<Undo>,
    ipam: &'a Ipam,
    ipam6: Option<&'a Ipam6>,
    node: &'a dyn Links,
}

impl<'a> Rollback<'a> {
    pub(super) fn new(ipam: &'a Ipam, ipam6: Option<&'a Ipam6>, node: &'a dyn Links) -> Self {
        Self {
            steps: Vec::new(),
            ipam,
            ipam6,
            node,
        }
    }

    pub(super) fn push(&mut self, step: Undo) {
        self.steps.push(step);
    }

    /// Success: nothing is undone.
    pub(super) fn commit(mut self) {
        self.steps.clear();
    }

    /// Undoes every step, newest first; failures are logged and the rest still run.
    pub(super) async fn unwind(mut self, ctx: &Ctx, datapath: Option<&dyn Datapath>) {
        let (id, ifname) = (
            ctx.env.container_id().unwrap_or(""),
            ctx.env.ifname().unwrap_or(""),
        );
        while let Some(step) = self.steps.pop() {
            let r = match &step {
                Undo::Release => self
                    .ipam
                    .release(id, ifname)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::Release6 => self.ipam6.map_or(Ok(()), |ipam6| {
                    ipam6
                        .release(id, ifname)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }),
                Undo::DeleteVeth(name) => self
                    .node
                    .delete_link(name)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::Detach(ip, host) => datapath
                    .map_or(Ok(()), |dp| dp.detach(*ip, host))
                    .map_err(|e| e.to_string()),
            };
            if let Err(err) = r {
                tracing::error!("rollback step failed: {err}");
            }
        }
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.steps.is_empty() {
            tracing::error!(
                "ADD rollback dropped with {} steps not undone",
                self.steps.len()
            );
        }
    }
}
