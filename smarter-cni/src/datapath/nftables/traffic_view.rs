//! Reading and forgetting the per-pod traffic counted by the rules of [`super::traffic`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::NftablesError;
use super::exec;
use super::tables::NftablesDatapath;
use super::traffic::{Counted, counted, delete_script};
use crate::datapath::types::PodTraffic;

impl NftablesDatapath {
    /// What each pod sent and received through each interface but the bridge and `lo`, from
    /// its attach to its detach, sorted by pod, interface and direction; empty when the tables
    /// do not exist. Interfaces are resolved in the calling thread's namespace: one that is
    /// gone has ifindex 0 (its name is what the kernel counted it under). A dual-stack pod's
    /// IPv6 is added to its row (by the endpoint holding the ULA; the IPv6 of an address no
    /// endpoint holds is left out).
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
        let all = counted(&doc)?;
        let owners = self.owners6(&all)?;
        let mut out: Vec<PodTraffic> = Vec::new();
        for c in all {
            let Some(pod) = owner(&owners, c.pod) else {
                continue;
            };
            let ifname = Some(c.ifname);
            if let Some(row) = out
                .iter_mut()
                .find(|r| r.pod == pod && r.ifname == ifname && r.dir == c.dir)
            {
                row.packets += c.packets;
                row.bytes += c.bytes;
                continue;
            }
            out.push(PodTraffic {
                pod,
                ifindex: ifname
                    .as_deref()
                    .and_then(|n| nix::net::if_::if_nametoindex(n).ok())
                    .unwrap_or(0),
                ifname,
                dir: c.dir,
                packets: c.packets,
                bytes: c.bytes,
            });
        }
        out.sort_by(|a, b| {
            (a.pod, a.ifindex, &a.ifname, a.dir).cmp(&(b.pod, b.ifindex, &b.ifname, b.dir))
        });
        Ok(out)
    }

    /// Deletes the traffic elements of the pods `doomed` picks (a ULA's by the endpoint
    /// holding it; those of a ULA no endpoint holds always); how many went. Success (0)
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
            let all = counted(&doc)?;
            let owners = self.owners6(&all)?;
            let gone: Vec<Counted> = all
                .into_iter()
                .filter(|c| owner(&owners, c.pod).is_none_or(&doomed))
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

    /// Which pod (IPv4 address) holds each ULA, when `counted` has IPv6 elements at all.
    fn owners6(&self, counted: &[Counted]) -> Result<Vec<(Ipv6Addr, Ipv4Addr)>, NftablesError> {
        if !counted.iter().any(|c| c.pod.is_ipv6()) {
            return Ok(Vec::new());
        }
        Ok(self
            .endpoints()?
            .into_iter()
            .filter_map(|e| Some((e.ip6?, e.ip)))
            .collect())
    }
}

/// The pod an element counts for: its IPv4 address, or the holder of its ULA.
fn owner(owners: &[(Ipv6Addr, Ipv4Addr)], pod: IpAddr) -> Option<Ipv4Addr> {
    match pod {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => owners.iter().find(|(ula, _)| *ula == a).map(|o| o.1),
    }
}
