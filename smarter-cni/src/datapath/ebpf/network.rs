//! [`EbpfNetwork`]: the eBPF datapath of one network behind the [`Datapath`] seam.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use super::pins;
use crate::datapath::seam::{Bridge, Datapath, DatapathError, Settings};
use crate::datapath::types::{DatapathKind, EndpointSpec, HostPortSpec, PodLink};
use crate::datapath::uplink::External;
use crate::state::DirLock;

/// One network's pinned programs and maps with the settings they were opened with.
#[derive(Debug)]
pub struct EbpfNetwork {
    dp: EbpfDatapath,
    s: Settings,
}

impl EbpfNetwork {
    /// Opens (loading and pinning programs and maps if nobody has yet; a missing pin root
    /// whose parent is bpffs is created) and writes the NAT settings and deny list.
    ///
    /// # Errors
    ///
    /// As [`EbpfDatapath::open_or_load`], or when a settings write fails.
    pub fn open(s: Settings) -> Result<Self, EbpfError> {
        s.state
            .create()
            .map_err(|e| EbpfError::io("create the state directory", &e.path, e.source))?;
        let dp = EbpfDatapath::open_or_load(
            &s.bpffs_dir,
            &s.network,
            s.state.path(),
            &s.datapath_config(),
        )?;
        let net = Self { dp, s };
        net.write_settings()?;
        Ok(net)
    }

    /// Opens the pins without loading or creating anything; `None` when there are none.
    ///
    /// # Errors
    ///
    /// As [`EbpfDatapath::open_existing`].
    pub fn open_existing(s: Settings) -> Result<Option<Self>, EbpfError> {
        Ok(EbpfDatapath::open_existing(&s.bpffs_dir, &s.network)?.map(|dp| Self { dp, s }))
    }

    /// The network's node-wide lock: held by every writer of what pods share or own, so
    /// concurrent plugins and the agent never interleave a read-check-write.
    fn lock(&self) -> Result<DirLock, DatapathError> {
        Ok(self.s.state.lock_network()?)
    }

    fn write_settings(&self) -> Result<(), EbpfError> {
        self.dp.set_nat(self.s.nat_ports, &self.s.ct_timeouts)?;
        self.dp.set_deny(&self.s.deny)
    }
}

impl Datapath for EbpfNetwork {
    fn kind(&self) -> DatapathKind {
        DatapathKind::Ebpf
    }

    fn ensure_network(
        &mut self,
        bridge: Option<Bridge>,
        external: &External,
    ) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        if let Some(b) = bridge {
            self.dp.set_bridge(b.ifindex, b.mac)?;
        }
        self.dp.set_external(external, self.s.attach)?;
        self.dp.attach_local(self.s.attach)?;
        Ok(())
    }

    fn attach(&self, ep: &EndpointSpec, ports: &[HostPortSpec]) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        // The port's pointer first: once the program is attached, every frame is checked.
        let before = self.dp.set_iface(ep.host_ifindex, ep.ip)?;
        if let Err(e) = self.dp.attach_endpoint(ep, self.s.attach) {
            self.dp.restore_iface(ep.host_ifindex, before);
            return Err(e.into());
        }
        let mapped = self
            .dp
            .set_host_ports(ep.ip, ports)
            .and_then(|()| match ep.ip6 {
                Some(ip6) => self.dp.set_host_ports6(ep.ip, ip6, ports),
                None => Ok(()),
            });
        if let Err(e) = mapped {
            if let Err(undo) = self.dp.detach_endpoint(ep.ip, &ep.host_ifname) {
                tracing::error!("rollback of {}: {undo}", ep.ip);
            }
            self.dp.restore_iface(ep.host_ifindex, before);
            return Err(e.into());
        }
        Ok(())
    }

    fn detach(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), DatapathError> {
        let _lock = self.lock()?;
        // Both run (DEL keeps going); the first error wins. Each touches only what the
        // attachment owns (a pod holding the address now keeps its entries).
        let detached = self.dp.detach_endpoint(ip, host_ifname);
        let unpointed = self.dp.remove_ifaces_of(ip);
        Ok(detached.and(unpointed)?)
    }

    fn check(&self, ep: &EndpointSpec) -> Result<Vec<String>, DatapathError> {
        let mut diffs = self.dp.check_endpoint(ep)?;
        diffs.extend(self.dp.check_iface(ep.host_ifindex, ep.ip)?);
        Ok(diffs)
    }

    fn endpoints(&self) -> Result<Vec<PodLink>, DatapathError> {
        Ok(self
            .dp
            .endpoints()?
            .into_iter()
            .map(|e| PodLink {
                ip: e.ip,
                ip6: None,
                mac: e.mac,
                host_ifname: e.host_ifname,
            })
            .collect())
    }

    fn gc(&self) -> Result<usize, DatapathError> {
        let expired = self.dp.ct_gc(&self.s.ct_timeouts)?;
        // Under the lock: an ADD writes its endpoint before its hostPorts.
        let _lock = self.lock()?;
        self.dp.prune_ifaces()?;
        let live: std::collections::HashSet<Ipv4Addr> =
            self.dp.endpoints()?.into_iter().map(|e| e.ip).collect();
        let uncounted = self.dp.forget_pod_traffic(|pod| !live.contains(&pod))?;
        let orphans6 = self.dp.remove_ownerless_endpoints6()?;
        Ok(expired + uncounted + orphans6 + self.dp.remove_ownerless_host_ports()?)
    }

    fn pod_traffic(&self) -> Result<Vec<crate::datapath::types::PodTraffic>, DatapathError> {
        Ok(self.dp.pod_traffic()?)
    }

    fn counters(&self) -> Result<Vec<(String, u64, u64)>, DatapathError> {
        Ok(self
            .dp
            .verdict_stats()?
            .into_iter()
            .map(|(v, p, b)| (v.to_owned(), p, b))
            .collect())
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
        _records: &std::path::Path,
    ) -> Result<Vec<crate::datapath::rows::EndpointRow>, DatapathError> {
        Ok(super::rows::endpoints(network, &self.dp)?)
    }

    fn host_ports(&self) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, DatapathError> {
        Ok(self.dp.host_ports()?)
    }

    fn host_ports6(&self) -> Result<Vec<(HostPortSpec, std::net::Ipv6Addr)>, DatapathError> {
        Ok(self.dp.host_ports6()?)
    }

    fn config_rows(
        &self,
        network: &str,
    ) -> Result<Option<Vec<crate::datapath::rows::ConfigRow>>, DatapathError> {
        Ok(Some(super::rows::config(network, &self.dp)?))
    }

    fn flows(&self) -> Result<Option<Vec<crate::datapath::types::CtEntryView>>, DatapathError> {
        Ok(Some(self.dp.ct_entries()?))
    }

    fn flows6(
        &self,
    ) -> Result<Option<Vec<crate::datapath::types::CtEntryView<Ipv6Addr>>>, DatapathError> {
        Ok(Some(self.dp.ct6_entries()?))
    }

    fn forget_flows(
        &self,
        doomed: &dyn Fn(u8, Ipv4Addr, u16, Ipv4Addr, u16) -> bool,
    ) -> Result<usize, DatapathError> {
        Ok(self.dp.ct_remove(doomed)?)
    }

    fn forget_flows6(
        &self,
        doomed: &dyn Fn(u8, Ipv6Addr, u16, Ipv6Addr, u16) -> bool,
    ) -> Result<usize, DatapathError> {
        Ok(self.dp.ct6_remove(doomed)?)
    }

    fn set_trace(&self, on: bool) -> Result<bool, DatapathError> {
        self.dp.set_trace(on)?;
        Ok(true)
    }

    fn fill(&self) -> Result<Vec<crate::datapath::types::MapFill>, DatapathError> {
        Ok(self.dp.map_fill()?)
    }

    fn nat_ports(&self) -> Result<Option<(usize, usize)>, DatapathError> {
        let (lo, hi) = self.dp.config()?.nat_ports();
        let in_use: std::collections::HashSet<(u8, u16)> = self
            .dp
            .ct_entries()?
            .iter()
            .filter(|e| e.proto != smarter_common::ct::proto::ICMP)
            .map(|e| (e.proto, e.nat_port))
            .collect();
        Ok(Some((in_use.len(), usize::from(hi - lo) + 1)))
    }

    fn drops(&self) -> Result<Option<Box<dyn crate::datapath::seam::DropEvents>>, DatapathError> {
        Ok(Some(Box::new(self.dp.events()?)))
    }

    fn remove(&self) -> Result<(), DatapathError> {
        // Netlink filters outlive pins: take the node-wide programs off explicitly.
        self.dp.detach_external()?;
        self.dp.detach_local()?;
        Ok(pins::remove_network_pins(
            &self.s.bpffs_dir,
            &self.s.network,
        )?)
    }
}
