//! Reading and forgetting the per-pod traffic counted by the rules of [`super::traffic`].

use std::net::Ipv4Addr;

use super::error::NftablesError;
use super::exec;
use super::tables::NftablesDatapath;
use super::traffic::{Counted, counted, delete_script};
use crate::datapath::types::PodTraffic;

impl NftablesDatapath {
    /// What each pod sent and received through each interface but the bridge and `lo`, from
    /// its attach to its detach, sorted by pod, interface and direction; empty when the tables
    /// do not exist. Interfaces are resolved in the calling thread's namespace: one that is
    /// gone has ifindex 0 (its name is what the kernel counted it under).
    ///
    /// Bytes are IP packet lengths as netfilter sees them (no link-layer header; the eBPF
    /// datapath counts `skb->len` at TC, which includes the Ethernet header on Ethernet
    /// devices). A GRO/GSO aggregate counts as one packet.
    ///
    /// # Errors
    ///
    /// As `nft` fails, [`NftablesError::Parse`] for unexpected elements.
    pub fn pod_traffic(&self) -> Result<Vec<PodTraffic>, NftablesError> {
        let Some(doc) = exec::list_table("inet", self.table())? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PodTraffic> = counted(&doc)?
            .into_iter()
            .map(|c| PodTraffic {
                pod: c.pod,
                ifindex: nix::net::if_::if_nametoindex(c.ifname.as_str()).unwrap_or(0),
                ifname: Some(c.ifname),
                dir: c.dir,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        out.sort_by(|a, b| {
            (a.pod, a.ifindex, &a.ifname, a.dir).cmp(&(b.pod, b.ifindex, &b.ifname, b.dir))
        });
        Ok(out)
    }

    /// Deletes the traffic elements of the pods `doomed` picks; how many went. Success (0)
    /// without tables.
    ///
    /// # Errors
    ///
    /// As `nft` fails.
    pub fn forget_traffic(
        &self,
        doomed: impl Fn(Ipv4Addr) -> bool,
    ) -> Result<usize, NftablesError> {
        let mut attempt = 0;
        loop {
            let Some(doc) = exec::list_table("inet", self.table())? else {
                return Ok(0);
            };
            let gone: Vec<Counted> = counted(&doc)?
                .into_iter()
                .filter(|c| doomed(c.pod))
                .collect();
            if gone.is_empty() {
                return Ok(0);
            }
            match exec::apply(
                &delete_script(self.table(), &gone),
                "forgetting pod traffic",
            ) {
                // An element that went meanwhile fails the batch: list again.
                Err(e) if exec::is_enoent(&e) && attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(gone.len()),
            }
        }
    }
}
