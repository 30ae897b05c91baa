//! [`NftablesDatapath`]: one network's two tables and the element batches that attach and
//! detach pods.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::config::NftablesConfig;
use super::error::NftablesError;
use super::l2::{SET_ENDPOINTS, SET_ENDPOINTS6, SET_LINK_LOCALS, SET_MACS, SET_PORTS};
use super::script::Doomed;
use super::{exec, hostports, l2, parse, probe, script, traffic};

use crate::datapath::types::{HostPortSpec, PodLink};

/// One network's nftables datapath (its two tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftablesDatapath {
    network: String,
    table: String,
}

static PROBES: AtomicU32 = AtomicU32::new(0);

impl NftablesDatapath {
    /// Checks that `nft` runs and the kernel accepts the families, hooks and expressions the
    /// datapath needs, in a throwaway table created and deleted in one batch.
    ///
    /// # Errors
    ///
    /// [`NftablesError::Spawn`] without `nft`, [`NftablesError::Command`] when the kernel refuses.
    pub fn available() -> Result<(), NftablesError> {
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let name = format!("smarter_probe_{}_{n}", std::process::id());
        exec::apply(&script::probe_script(&name), "probing nftables support")
    }

    /// Creates or updates the network's tables, sets, counters and rules in one atomic batch,
    /// keeping existing set elements and counter values. Safe to call concurrently and again
    /// with a changed configuration (e.g. a new uplink).
    ///
    /// # Errors
    ///
    /// [`NftablesError::Invalid`] for unusable names or port range, otherwise as `nft` fails.
    pub fn ensure(cfg: &NftablesConfig) -> Result<Self, NftablesError> {
        let script = script::ensure_script(cfg)?;
        exec::apply(&script, &format!("setting up network {}", cfg.network))?;
        Ok(Self::named(&cfg.network))
    }

    /// Opens the network's datapath when its tables exist.
    ///
    /// # Errors
    ///
    /// As `nft` fails to list tables.
    pub fn open(network: &str) -> Result<Option<Self>, NftablesError> {
        let dp = Self::named(network);
        Ok((!dp.present_families()?.is_empty()).then_some(dp))
    }

    /// Deletes the network's tables; success when they are already gone.
    ///
    /// # Errors
    ///
    /// As `nft` fails.
    pub fn remove(network: &str) -> Result<(), NftablesError> {
        let dp = Self::named(network);
        let mut attempt = 0;
        loop {
            let script: String = dp
                .present_families()?
                .iter()
                .map(|family| format!("delete table {family} {}\n", dp.table))
                .collect();
            if script.is_empty() {
                return Ok(());
            }
            match exec::apply(&script, &format!("removing network {network}")) {
                Err(e) if exec::is_enoent(&e) && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// The network name.
    #[must_use]
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The name of both tables (`inet` and `bridge` families).
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Lets `ep` send from its address and MAC and maps its hostPorts (each on every node
    /// address, or only on its `hostIP`), in one batch; with an IPv6 address (a dual-stack
    /// network) also from that address, its hostPorts without `hostIP` on every node IPv6
    /// address too. Replaces stale elements of the same address (either family) or interface, hostPorts of the address that are no longer wanted and, unless
    /// `ep` itself was attached already, traffic counters left by an earlier holder of the
    /// address. Idempotent.
    ///
    /// # Errors
    ///
    /// [`NftablesError::HostPortTaken`] when a mapping overlaps one of another pod (the same
    /// protocol and port, on every address on either side or on the same `hostIP`; checked
    /// first, and by the kernel inside the batch for the same key),
    /// [`NftablesError::NotEnsured`] without tables, [`NftablesError::Invalid`] for a bad name,
    /// protocol, two overlapping mappings or an IPv6 address in IPv4-only tables, otherwise as `nft` fails (nothing is then changed).
    pub fn attach_endpoint(
        &self,
        ep: &PodLink,
        ports: &[HostPortSpec],
    ) -> Result<(), NftablesError> {
        script::check_ifname(&ep.host_ifname)?;
        let ports: Vec<HostPortSpec> = ports.iter().map(hostports::normalized).collect();
        hostports::check(ep.ip, &ports, &[])?;
        let context = format!("attaching {} ({})", ep.ip, ep.host_ifname);
        let mut attempt = 0;
        loop {
            let doc = self.bridge_required()?;
            if let Some(ip6) = ep.ip6
                && !parse::has(&doc, "set", SET_ENDPOINTS6)
            {
                return Err(NftablesError::Invalid {
                    what: "pod IPv6 address",
                    value: ip6.to_string(),
                    reason: "the network's tables are IPv4-only (not ensured with an IPv6 subnet)",
                });
            }
            let existing = parse::endpoints(&doc, SET_ENDPOINTS, SET_ENDPOINTS6)?;
            let links = parse::link_macs(&doc, SET_MACS)?;
            let inet = self.inet_required()?;
            let mapped = host_ports_of(&inet)?;
            let mapped6 = host_ports6_of(&inet)?;
            hostports::check(ep.ip, &ports, &mapped)?;
            // A new holder of the address counts from zero; attaching again keeps counting.
            let counted: Vec<traffic::Counted> = if existing.contains(ep) {
                Vec::new()
            } else {
                traffic::counted(&inet)?
                    .into_iter()
                    .filter(|c| c.pod == ep.ip || ep.ip6.is_some_and(|a| c.pod == a))
                    .collect()
            };
            let (stale_eps, kept): (Vec<PodLink>, Vec<PodLink>) =
                existing.into_iter().partition(|o| {
                    let same6 = o.ip6.is_some() && o.ip6 == ep.ip6;
                    (o.ip == ep.ip || same6 || o.host_ifname == ep.host_ifname) && o != ep
                });
            // Endpoints attached before the link sets existed get their elements now.
            let lacking: Vec<PodLink> = kept
                .into_iter()
                .filter(|o| o != ep && !links.contains(&l2::mac_key(o)))
                .collect();
            let stale_ports: Vec<(HostPortSpec, Ipv4Addr)> = mapped
                .into_iter()
                .filter(|(m, ip)| *ip == ep.ip && !ports.contains(m))
                .collect();
            // The IPv6 twins: of this address or a replaced endpoint's and not wanted, or of a
            // port this pod now takes (left by an earlier holder; the IPv4 maps said it is
            // free).
            let stale_ports6: Vec<(HostPortSpec, Ipv6Addr)> = mapped6
                .into_iter()
                .filter(|(m, ip6)| {
                    let ours = Some(*ip6) == ep.ip6;
                    let replaced = stale_eps.iter().any(|o| o.ip6 == Some(*ip6));
                    let wanted = ports.contains(m);
                    let taken = ports.iter().any(|p| hostports::overlap(p, m));
                    ((ours || replaced) && !wanted) || (!ours && taken)
                })
                .collect();
            let stale = Doomed {
                endpoints: &stale_eps,
                ports: &stale_ports,
                ports6: &stale_ports6,
                traffic: &counted,
            };
            let script = script::attach_script(&self.table, ep, &ports, stale, &links, &lacking)?;
            match exec::apply(&script, &context) {
                Err(e) if exec::is_enoent(&e) && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Removes the endpoint on `host_ifname` (and endpoints of `ip` whose interface is gone),
    /// and, unless another endpoint still holds `ip`, its hostPorts, its traffic counters and
    /// its conntrack entries (when the `conntrack` tool is installed); the same for the IPv6
    /// address of a removed endpoint no other endpoint holds. Success when already gone.
    ///
    /// # Errors
    ///
    /// As `nft` fails.
    pub fn detach_endpoint(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), NftablesError> {
        let context = format!("detaching {ip} ({host_ifname})");
        let mut attempt = 0;
        loop {
            let doc = exec::list_table("bridge", &self.table)?;
            let (existing, links) = match &doc {
                Some(doc) => (
                    parse::endpoints(doc, SET_ENDPOINTS, SET_ENDPOINTS6)?,
                    parse::link_macs(doc, SET_MACS)?,
                ),
                None => (Vec::new(), Vec::new()),
            };
            let (gone, kept): (Vec<_>, Vec<_>) = existing.into_iter().partition(|o| {
                o.host_ifname == host_ifname
                    || (o.ip == ip
                        && nix::net::if_::if_nametoindex(o.host_ifname.as_str()).is_err())
            });
            let still_used = kept.iter().any(|o| o.ip == ip);
            let mut gone6: Vec<Ipv6Addr> = gone
                .iter()
                .filter_map(|o| o.ip6)
                .filter(|a| !kept.iter().any(|o| o.ip6 == Some(*a)))
                .collect();
            gone6.sort_unstable();
            gone6.dedup();
            let (mut ports, mut ports6, mut counted) = (Vec::new(), Vec::new(), Vec::new());
            if (!still_used || !gone6.is_empty())
                && let Some(inet) = exec::list_table("inet", &self.table)?
            {
                if !still_used {
                    ports = host_ports_of(&inet)?;
                    ports.retain(|(_, owner)| *owner == ip);
                }
                counted = traffic::counted(&inet)?;
                counted.retain(|c| match c.pod {
                    IpAddr::V4(a) => !still_used && a == ip,
                    IpAddr::V6(a) => gone6.contains(&a),
                });
                ports6 = host_ports6_of(&inet)?;
                ports6.retain(|(_, owner)| gone6.contains(owner));
            }
            let doomed = Doomed {
                endpoints: &gone,
                ports: &ports,
                ports6: &ports6,
                traffic: &counted,
            };
            let script = script::detach_script(&self.table, doomed, &links)?;
            let result = if script.is_empty() {
                Ok(())
            } else {
                exec::apply(&script, &context)
            };
            match result {
                Err(e) if exec::is_enoent(&e) && attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => {
                    if !still_used {
                        exec::flush_conntrack(IpAddr::V4(ip));
                    }
                    for ip6 in gone6 {
                        exec::flush_conntrack(IpAddr::V6(ip6));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// What differs between the tables and `ep`: missing tables or elements, and elements
    /// of its address or interface that belong to something else. Empty when consistent.
    ///
    /// # Errors
    ///
    /// As `nft` fails.
    pub fn check_endpoint(&self, ep: &PodLink) -> Result<Vec<String>, NftablesError> {
        let Some(doc) = exec::list_table("bridge", &self.table)? else {
            return Ok(vec![format!("table bridge {} is missing", self.table)]);
        };
        let mut diffs = Vec::new();
        if exec::list_table("inet", &self.table)?.is_none() {
            diffs.push(format!("table inet {} is missing", self.table));
        }
        let elements = parse::endpoints(&doc, SET_ENDPOINTS, SET_ENDPOINTS6)?;
        let mac = script::format_mac(&ep.mac);
        let v4 = |o: &PodLink| (o.ip, o.mac, o.host_ifname.clone());
        if !elements.iter().any(|o| v4(o) == v4(ep)) {
            diffs.push(format!(
                "set {SET_ENDPOINTS} lacks \"{}\" . {} . {mac}",
                ep.host_ifname, ep.ip
            ));
        }
        let own6 = |o: &PodLink| o.host_ifname == ep.host_ifname && o.ip6 == ep.ip6;
        if let Some(ip6) = ep.ip6
            && !elements.iter().any(own6)
        {
            diffs.push(format!(
                "set {SET_ENDPOINTS6} lacks \"{}\" . {ip6}",
                ep.host_ifname
            ));
        }
        if let Some(o) = elements
            .iter()
            .find(|o| o.host_ifname == ep.host_ifname && o.ip6.is_some() && o.ip6 != ep.ip6)
        {
            diffs.push(format!(
                "set {SET_ENDPOINTS6} has conflicting \"{}\" . {}",
                o.host_ifname,
                o.ip6.map_or_else(String::new, |a| a.to_string())
            ));
        }
        for o in elements.iter().filter(|o| v4(o) != v4(ep)) {
            let same6 = o.ip6.is_some() && o.ip6 == ep.ip6;
            if o.ip == ep.ip || same6 || o.host_ifname == ep.host_ifname {
                diffs.push(format!(
                    "set {SET_ENDPOINTS} has conflicting \"{}\" . {} . {}",
                    o.host_ifname,
                    o.ip,
                    script::format_mac(&o.mac)
                ));
            }
        }
        if !parse::names(&doc, SET_PORTS).contains(&ep.host_ifname) {
            diffs.push(format!("set {SET_PORTS} lacks \"{}\"", ep.host_ifname));
        }
        if !parse::link_macs(&doc, SET_MACS)?.contains(&l2::mac_key(ep)) {
            diffs.push(format!(
                "set {SET_MACS} lacks \"{}\" . {mac}",
                ep.host_ifname
            ));
        }
        if !parse::link_local_ifnames(&doc, SET_LINK_LOCALS).contains(&ep.host_ifname) {
            diffs.push(format!(
                "set {SET_LINK_LOCALS} lacks \"{}\"",
                ep.host_ifname
            ));
        }
        Ok(diffs)
    }

    /// Every endpoint in the network's set; empty when the table does not exist.
    ///
    /// # Errors
    ///
    /// As `nft` fails, [`NftablesError::Parse`] for unexpected elements.
    pub fn endpoints(&self) -> Result<Vec<PodLink>, NftablesError> {
        exec::list_table("bridge", &self.table)?.map_or(Ok(Vec::new()), |doc| {
            parse::endpoints(&doc, SET_ENDPOINTS, SET_ENDPOINTS6)
        })
    }

    /// Every hostPort with the pod address it maps to, sorted by protocol, port and `hostIP`;
    /// empty when the table does not exist.
    ///
    /// # Errors
    ///
    /// As `nft` fails, [`NftablesError::Parse`] for unexpected elements.
    pub fn host_ports(&self) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, NftablesError> {
        exec::list_table("inet", &self.table)?.map_or(Ok(Vec::new()), |doc| host_ports_of(&doc))
    }

    /// Every IPv6 hostPort (dual-stack: the twin of a mapping without `hostIP` of a pod with
    /// an IPv6 address) with the pod address it maps to, sorted by protocol and port; empty
    /// when the table or the maps do not exist.
    ///
    /// # Errors
    ///
    /// As `nft` fails, [`NftablesError::Parse`] for unexpected elements.
    pub fn host_ports6(&self) -> Result<Vec<(HostPortSpec, Ipv6Addr)>, NftablesError> {
        exec::list_table("inet", &self.table)?.map_or(Ok(Vec::new()), |doc| host_ports6_of(&doc))
    }

    /// The named counters of both tables: name, packets, bytes (`drop_deny`,
    /// `drop_nodelocal`, `nat_masquerade` — new masqueraded connections —, `drop_leak`,
    /// `drop_ipv6`, and the bridge table's `drop_spoof_ip`, `drop_spoof_arp`, `drop_spoof_l2`,
    /// `drop_spoof_ip6`, `drop_ra_guard`, `drop_ethertype`).
    ///
    /// # Errors
    ///
    /// As `nft` fails.
    pub fn counters(&self) -> Result<Vec<(String, u64, u64)>, NftablesError> {
        let mut all = Vec::new();
        for family in ["inet", "bridge"] {
            if let Some(doc) = exec::list_table(family, &self.table)? {
                all.extend(parse::counters(&doc));
            }
        }
        Ok(all)
    }

    pub(super) fn named(network: &str) -> Self {
        Self {
            network: network.to_owned(),
            table: script::table_name(network),
        }
    }

    fn present_families(&self) -> Result<Vec<String>, NftablesError> {
        // Netlink first (no `nft` process); `nft` when netlink cannot tell.
        match probe::table_families(&self.table) {
            Ok(families) => {
                return Ok(families
                    .into_iter()
                    .filter(|f| f == "inet" || f == "bridge")
                    .collect());
            }
            Err(e) => tracing::debug!("nf_tables netlink dump: {e}; asking nft"),
        }
        let doc = exec::list_tables()?;
        Ok(parse::tables(&doc)
            .into_iter()
            .filter(|(family, name)| {
                *name == self.table && (family == "inet" || family == "bridge")
            })
            .map(|(family, _)| family)
            .collect())
    }

    fn bridge_required(&self) -> Result<Value, NftablesError> {
        exec::list_table("bridge", &self.table)?.ok_or_else(|| NftablesError::NotEnsured {
            table: format!("bridge {}", self.table),
        })
    }

    fn inet_required(&self) -> Result<Value, NftablesError> {
        exec::list_table("inet", &self.table)?.ok_or_else(|| NftablesError::NotEnsured {
            table: format!("inet {}", self.table),
        })
    }
}

/// The hostPorts of every map of an inet table listing, sorted by protocol, port and `hostIP`.
fn host_ports_of(doc: &Value) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, NftablesError> {
    let mut all = Vec::new();
    for (map, protocol, _) in hostports::MAPS {
        all.extend(parse::host_ports(doc, map, protocol)?);
    }
    all.sort_by_key(|(hp, _)| (hp.protocol, hp.host_port, hp.host_ip));
    Ok(all)
}

/// The hostPorts of the IPv6 maps of an inet table listing, sorted by protocol and port.
fn host_ports6_of(doc: &Value) -> Result<Vec<(HostPortSpec, Ipv6Addr)>, NftablesError> {
    let mut all = Vec::new();
    for (map, protocol) in hostports::MAPS6 {
        all.extend(parse::host_ports6(doc, map, protocol)?);
    }
    all.sort_by_key(|(hp, _)| (hp.protocol, hp.host_port));
    Ok(all)
}
