//! [`NftablesNetwork`]: the iptables (nftables) datapath of one network behind the
//! [`Datapath`] seam. Its masquerade follows the uplink's name (the kernel's masquerade
//! already follows address changes); conntrack is the kernel's own.

use std::net::Ipv4Addr;

use super::config::NftablesConfig;
use super::error::NftablesError;
use super::tables::NftablesDatapath;
use crate::datapath::seam::{Bridge, Datapath, DatapathError, Settings};
use crate::datapath::types::{DatapathKind, EndpointSpec, HostPortSpec, PodLink, PodTraffic};
use crate::datapath::uplink::External;
use crate::state::{DirLock, StateDir};

/// One network's tables with the configuration they are written from.
#[derive(Debug)]
pub struct NftablesNetwork {
    cfg: NftablesConfig,
    dp: NftablesDatapath,
    /// `<stateDir>/<network>`, where the network's node-wide lock lives.
    state: StateDir,
}

impl NftablesNetwork {
    /// The datapath of `s`'s network; its tables are written by
    /// [`Datapath::ensure_network`].
    ///
    /// Nothing is run yet: a missing `nft` shows at the first write.
    #[must_use]
    pub fn open(s: &Settings) -> Self {
        Self {
            cfg: config(s),
            dp: NftablesDatapath::named(&s.network),
            state: s.state.clone(),
        }
    }

    /// The network's tables; `None` when there are none (or no `nft` to have made them).
    ///
    /// # Errors
    ///
    /// When the tables cannot be listed.
    pub fn open_existing(s: &Settings) -> Result<Option<Self>, NftablesError> {
        match NftablesDatapath::open(&s.network) {
            Ok(dp) => Ok(dp.map(|dp| Self {
                cfg: config(s),
                dp,
                state: s.state.clone(),
            })),
            // No nft binary: there cannot be tables of ours.
            Err(NftablesError::Spawn { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl NftablesNetwork {
    /// The network's node-wide lock (as the eBPF datapath takes it): one writer at a time of
    /// the tables and of a pod's elements.
    fn lock(&self) -> Result<DirLock, DatapathError> {
        Ok(self.state.lock_network()?)
    }
}

fn config(s: &Settings) -> NftablesConfig {
    NftablesConfig {
        network: s.network.clone(),
        bridge: s.bridge.clone(),
        subnet: s.subnet,
        gateway: s.gateway,
        v6: s.v6,
        uplinks: Vec::new(),
        deny: s.deny.clone(),
        nat_ports: s.nat_ports,
    }
}

impl Datapath for NftablesNetwork {
    fn kind(&self) -> DatapathKind {
        DatapathKind::Nftables
    }

    fn ensure_network(
        &mut self,
        bridge: Option<Bridge>,
        external: &External,
    ) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        // `auto`: every interface but the bridge, by rule, so an interface that comes up later
        // is covered before anyone tells us. A list: those names (present or not yet).
        let uplinks = if external.all {
            Vec::new()
        } else {
            let mut names: Vec<String> = external
                .uplinks
                .iter()
                .filter(|u| u.selected)
                .map(|u| u.name.clone())
                .collect();
            names.sort();
            names
        };
        if bridge.is_some()
            || uplinks != self.cfg.uplinks
            || NftablesDatapath::open(&self.cfg.network)?.is_none()
        {
            self.cfg.uplinks = uplinks;
            self.dp = NftablesDatapath::ensure(&self.cfg)?;
            tracing::debug!(
                "nftables datapath: masquerade via {}",
                if self.cfg.uplinks.is_empty() {
                    "every interface but the bridge".to_owned()
                } else {
                    self.cfg.uplinks.join(", ")
                }
            );
        }
        // Dual-stack: the kernel forwards the pods' IPv6 (after the rules are in place, so
        // nothing is forwarded without the backstop) once an external interface has a global
        // IPv6 address to masquerade to (before that, pods' IPv6 stays on the node and needs
        // no forwarding); on every call, so an interface that appeared since keeps taking
        // router advertisements.
        if self.cfg.v6.is_some() && !external.uplinks6.is_empty() {
            NftablesDatapath::enable_ipv6_forwarding(
                external.uplinks.iter().map(|u| u.name.as_str()),
            )?;
        }
        Ok(())
    }

    fn attach(&self, ep: &EndpointSpec, ports: &[HostPortSpec]) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        Ok(self.dp.attach_endpoint(&ep.link(), ports)?)
    }

    fn detach(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        Ok(self.dp.detach_endpoint(ip, host_ifname)?)
    }

    fn check(&self, ep: &EndpointSpec) -> Result<Vec<String>, DatapathError> {
        Ok(self.dp.check_endpoint(&ep.link())?)
    }

    fn endpoints(&self) -> Result<Vec<PodLink>, DatapathError> {
        Ok(self.dp.endpoints()?)
    }

    fn pod_traffic(&self) -> Result<Vec<PodTraffic>, DatapathError> {
        Ok(self.dp.pod_traffic()?)
    }

    /// Conntrack is the kernel's; what goes here are traffic counters of addresses no
    /// endpoint holds (a late packet of a detached pod re-created them).
    fn gc(&self) -> Result<usize, DatapathError> {
        let _lock = self.lock()?;
        let live: Vec<Ipv4Addr> = self.dp.endpoints()?.iter().map(|e| e.ip).collect();
        Ok(self.dp.forget_traffic(|pod| !live.contains(&pod))?)
    }

    fn status_rows(
        &self,
        network: &str,
    ) -> Result<Vec<crate::datapath::rows::StatusRow>, DatapathError> {
        Ok(super::rows::status(network, &self.dp)?)
    }

    fn endpoint_rows(
        &self,
        network: &str,
        records: &std::path::Path,
    ) -> Result<Vec<crate::datapath::rows::EndpointRow>, DatapathError> {
        Ok(super::rows::endpoints(network, &self.dp, records)?)
    }

    fn host_ports(&self) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, DatapathError> {
        Ok(self.dp.host_ports()?)
    }

    fn host_ports6(&self) -> Result<Vec<(HostPortSpec, std::net::Ipv6Addr)>, DatapathError> {
        Ok(self.dp.host_ports6()?)
    }

    fn counters(&self) -> Result<Vec<(String, u64, u64)>, DatapathError> {
        Ok(self.dp.counters()?)
    }

    fn remove(&self) -> Result<(), DatapathError> {
        Ok(NftablesDatapath::remove(&self.cfg.network)?)
    }
}
