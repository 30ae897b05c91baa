//! Endpoints: a pod's map entries plus the attachment of the pod program to its host veth.

use std::net::Ipv4Addr;

use aya::maps::MapError;
use smarter_common::{
    EndpointKey, EndpointMeta, EndpointValue,
    endpoint::{decode_field, encode_field},
    maps, progs,
};

use super::attach::Hook;
use super::error::{EbpfError, is_absent};
use super::handle::EbpfDatapath;
use super::{
    attach,
    handle::{Maps, addr},
    pins,
};
use crate::datapath::types::AttachMode;
use crate::datapath::types::EndpointSpec;

/// The attachment other than `host_ifname`'s that holds an endpoint, by its host veth name
/// (from the metadata; without it, the live interface the endpoint points at). `None` when the
/// endpoint is `host_ifname`'s or has no live owner.
fn other_owner(
    value: Option<&EndpointValue>,
    meta: Option<&EndpointMeta>,
    host_ifname: &str,
) -> Option<String> {
    let holder = match (meta, value) {
        (Some(m), _) => decode_field(&m.host_ifname).to_owned(),
        (None, Some(v)) => nix::net::if_::if_indextoname(v.ifindex)
            .ok()?
            .into_string()
            .ok()?,
        (None, None) => return None,
    };
    (!holder.is_empty() && holder != host_ifname).then_some(holder)
}

/// The `endpoints` map value of `ep`.
fn value(ep: &EndpointSpec) -> EndpointValue {
    EndpointValue {
        ifindex: ep.host_ifindex,
        mac: ep.mac,
        ..EndpointValue::default()
    }
}

/// The `endpoint_meta` map value of `ep` (fields truncated as stored).
fn meta_of(ep: &EndpointSpec) -> EndpointMeta {
    EndpointMeta {
        container_id: encode_field(&ep.container_id),
        pod_namespace: encode_field(&ep.pod_namespace),
        pod_name: encode_field(&ep.pod_name),
        host_ifname: encode_field(&ep.host_ifname),
        pod_ifname: encode_field(&ep.pod_ifname),
    }
}

/// One endpoint found in the maps (GC, census). Text fields are empty when the metadata entry is
/// missing, and truncated as stored ([`smarter_common::EndpointMeta`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// Whether the endpoint entry (the one the kernel reads) exists; `false` when only the
    /// metadata entry is left.
    pub in_datapath: bool,
    /// Host veth ifindex from the endpoint entry (0 when `!in_datapath`).
    pub host_ifindex: u32,
    /// Pod MAC from the endpoint entry (all zero when `!in_datapath`).
    pub mac: [u8; 6],
    /// Host-side veth name.
    pub host_ifname: String,
    /// Interface name inside the pod.
    pub pod_ifname: String,
    /// CNI container id.
    pub container_id: String,
    /// Kubernetes namespace of the pod.
    pub pod_namespace: String,
    /// Kubernetes pod name.
    pub pod_name: String,
}

impl EbpfDatapath {
    /// Inserts the endpoint and its metadata, then attaches the pod program to the host veth's
    /// ingress: TCX (link pinned at `links/<host_ifname>`) or a netlink clsact filter, as `mode`
    /// says ([`AttachMode::Auto`]: TCX from Linux 6.6). Idempotent; a failed attach restores the
    /// map entries as they were.
    ///
    /// # Errors
    ///
    /// [`EbpfError::InvalidName`] for an unusable interface name, [`EbpfError::Interface`] /
    /// [`EbpfError::IfindexMismatch`] when `host_ifname` does not resolve to `host_ifindex`,
    /// [`EbpfError::Map`], [`EbpfError::Program`], [`EbpfError::Tc`] or [`EbpfError::Pin`] when
    /// a step fails.
    pub fn attach_endpoint(&self, ep: &EndpointSpec, mode: AttachMode) -> Result<(), EbpfError> {
        pins::validate_ifname(&ep.host_ifname)?;
        let found = attach::ifindex(&ep.host_ifname)?;
        if found != ep.host_ifindex {
            return Err(EbpfError::IfindexMismatch {
                name: ep.host_ifname.clone(),
                expected: ep.host_ifindex,
                found,
            });
        }
        let key = key(ep.ip);
        let before = {
            let mut maps = self.lock_maps();
            let before = (
                lookup(maps.endpoints.get(&key, 0), maps::ENDPOINTS, ep.ip)?,
                lookup(maps.meta.get(&key, 0), maps::EP_META, ep.ip)?,
            );
            if before.0.map(|v| v.ifindex) != Some(ep.host_ifindex) {
                // Counters left under this ifindex belong to an earlier interface, and those of
                // the endpoint's previous interface (re-created veth) are stale.
                remove_stats(&mut maps, ep.host_ifindex)?;
                if let Some(previous) = before.0 {
                    remove_stats(&mut maps, previous.ifindex)?;
                }
            }
            write(&mut maps, key, Some(value(ep)), Some(&meta_of(ep)), ep.ip)?;
            before
        };
        // A dual-stack pod: its IPv6 endpoint beside, and forwarding on its host veth for the
        // NAT66 route lookup.
        let before6 = match ep.ip6 {
            Some(ip6) => Some((ip6, self.endpoint6(ip6)?)),
            None => None,
        };
        let attached = before6
            .map_or(Ok(()), |(ip6, _)| {
                super::dual::enable_forwarding6(&ep.host_ifname)?;
                // An entry a former veth of this ifindex left behind would redirect its
                // address's traffic into this pod.
                self.remove_endpoints6_of(ep.host_ifindex, Some(ip6))?;
                self.write_endpoint6(ip6, Some(value(ep)))
            })
            .and_then(|()| self.attach_program(ep, mode));
        if attached.is_err() {
            if let Some((ip6, previous)) = before6
                && let Err(e) = self.write_endpoint6(ip6, previous)
            {
                tracing::error!("restoring the IPv6 endpoint {ip6} after a failed attach: {e}");
            }
            let mut maps = self.lock_maps();
            if let Err(e) = write(&mut maps, key, before.0, before.1.as_ref(), ep.ip) {
                tracing::error!(
                    "restoring map entries of {} after a failed attach: {e}",
                    ep.ip
                );
            }
        }
        attached
    }

    fn attach_program(&self, ep: &EndpointSpec, mode: AttachMode) -> Result<(), EbpfError> {
        let mut prog = self.pod_program()?;
        let pin = self.pins.link(&ep.host_ifname);
        let hook = Hook::ingress(&ep.host_ifname, progs::POD);
        match attach::resolve_mode(mode) {
            AttachMode::Netlink => attach::attach_netlink(&mut prog, hook, &pin),
            AttachMode::Tcx | AttachMode::Auto => {
                let prog_id = self.prog_id.ok_or_else(|| self.program_missing())?;
                attach::attach_tcx(&mut prog, prog_id, hook, &pin)
            }
        }
    }

    /// Forgets the attachment whose host veth is `host_ifname` and whose address was `ip`:
    /// detaches the pod program from `host_ifname` (link pin and netlink filter), then removes
    /// what the attachment owns at `ip`: the endpoint, its metadata, the counters of its veth,
    /// its conntrack entries ([`Self::ct_flush_pod`]) and its hostPorts
    /// ([`Self::remove_host_ports`]), and the pod's IPv6 endpoints with their NAT66 flows (those
    /// leading to its veth). Success when already gone, including when the interface no
    /// longer exists.
    ///
    /// **Ownership.** The host veth name is derived from (container id, ifname)
    /// ([`crate::naming::host_veth_name`]), so it names the attachment. When the endpoint at
    /// `ip` belongs to another attachment (an address reused after a reboot or a release, and
    /// the late DEL of the old sandbox arrives), nothing keyed by `ip` is touched. Entries of
    /// `ip` with no endpoint at all have no owner and are collected.
    ///
    /// # Errors
    ///
    /// [`EbpfError::InvalidName`], or [`EbpfError::Map`] / [`EbpfError::Io`] /
    /// [`EbpfError::Tc`] when a removal fails for another reason than absence.
    pub fn detach_endpoint(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), EbpfError> {
        pins::validate_ifname(host_ifname)?;
        // Program first, so no packet in flight re-creates the counters removed below; the
        // entries are removed even when detaching failed (DEL keeps going), first error wins.
        let detached = attach::detach(
            Hook::ingress(host_ifname, progs::POD),
            &self.pins.link(host_ifname),
        );
        let mut maps = self.lock_maps();
        let key = key(ip);
        let value = lookup(maps.endpoints.get(&key, 0), maps::ENDPOINTS, ip)?;
        let meta = lookup(maps.meta.get(&key, 0), maps::EP_META, ip)?;
        if let Some(holder) = other_owner(value.as_ref(), meta.as_ref(), host_ifname) {
            tracing::info!(
                "{ip} is held by {holder}, not {host_ifname}: its entries stay with their owner"
            );
            return detached;
        }
        let removed = value
            .map_or(Ok(()), |v| remove_stats(&mut maps, v.ifindex))
            .and_then(|()| write(&mut maps, key, None, None, ip));
        drop(maps);
        // The pod's IPv6 endpoints lead to the same host veth (as the IPv4 entry says, or the
        // interface by its name while it exists); those of another veth are another pod's.
        let mut veths: Vec<u32> = value.map(|v| v.ifindex).into_iter().collect();
        veths.extend(attach::ifindex(host_ifname).ok());
        veths.dedup();
        let removed6 = veths
            .into_iter()
            .try_for_each(|i| self.remove_endpoints6_of(i, None).map(|_| ()));
        // The pod's NATed flows go with it (a later pod reusing the address must not inherit
        // them).
        let flushed = self.ct_flush_pod(ip).map(|_| ());
        let unmapped = self.remove_host_ports(ip).map(|_| ());
        let uncounted = self.forget_pod_traffic(|pod| pod == ip).map(|_| ());
        detached
            .and(removed)
            .and(removed6)
            .and(flushed)
            .and(unmapped)
            .and(uncounted)
    }

    /// Compares the datapath with `ep` for CHECK: the endpoint entry (ifindex, MAC), the IPv6
    /// one of a dual-stack pod, its metadata, the host veth's ifindex and the program's attachment. Returns one sentence per
    /// difference; empty means consistent.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`], [`EbpfError::Program`] or [`EbpfError::Tc`] when the state cannot be
    /// read (differences are not errors).
    pub fn check_endpoint(&self, ep: &EndpointSpec) -> Result<Vec<String>, EbpfError> {
        let mut diffs = Vec::new();
        let key = key(ep.ip);
        let (value, meta) = {
            let maps = self.lock_maps();
            (
                lookup(maps.endpoints.get(&key, 0), maps::ENDPOINTS, ep.ip)?,
                lookup(maps.meta.get(&key, 0), maps::EP_META, ep.ip)?,
            )
        };
        match value {
            None => diffs.push(format!(
                "endpoint {} is missing from map {}",
                ep.ip,
                maps::ENDPOINTS
            )),
            Some(v) => {
                if v.ifindex != ep.host_ifindex {
                    diffs.push(format!(
                        "endpoint {} has ifindex {}, expected {}",
                        ep.ip, v.ifindex, ep.host_ifindex
                    ));
                }
                if v.mac != ep.mac {
                    diffs.push(format!(
                        "endpoint {} has MAC {}, expected {}",
                        ep.ip,
                        mac_string(v.mac),
                        mac_string(ep.mac)
                    ));
                }
            }
        }
        if let Some(ip6) = ep.ip6 {
            diffs.extend(self.check_endpoint6(ip6, ep.host_ifindex, ep.mac)?);
        }
        match meta {
            None => diffs.push(format!(
                "endpoint {} is missing from map {}",
                ep.ip,
                maps::EP_META
            )),
            Some(m) if m != meta_of(ep) => diffs.push(format!(
                "metadata of {} is {}, expected {}",
                ep.ip,
                describe(&m),
                describe(&meta_of(ep))
            )),
            Some(_) => {}
        }
        match attach::ifindex(&ep.host_ifname) {
            Err(e) => diffs.push(e.to_string()),
            Ok(found) if found != ep.host_ifindex => diffs.push(format!(
                "interface {} has ifindex {found}, expected {}",
                ep.host_ifname, ep.host_ifindex
            )),
            Ok(_) => match self.prog_id {
                None => diffs.push(self.program_missing().to_string()),
                Some(id)
                    if !attach::is_attached(Hook::ingress(&ep.host_ifname, progs::POD), id)? =>
                {
                    diffs.push(format!(
                        "program {} is not attached to {} ingress",
                        smarter_common::progs::POD,
                        ep.host_ifname
                    ))
                }
                Some(_) => {}
            },
        }
        Ok(diffs)
    }

    /// Every endpoint in the maps (the union of the endpoint and metadata maps), for GC and
    /// census.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when a map cannot be read (entries deleted meanwhile are skipped).
    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>, EbpfError> {
        let maps = self.lock_maps();
        let mut keys = Vec::new();
        for key in maps.endpoints.keys().chain(maps.meta.keys()) {
            let key = key.map_err(|e| EbpfError::map(maps::ENDPOINTS, "list", e))?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            let ip = Ipv4Addr::from(key.octets());
            let location = lookup(maps.endpoints.get(&key, 0), maps::ENDPOINTS, ip)?;
            let meta = lookup(maps.meta.get(&key, 0), maps::EP_META, ip)?;
            if location.is_none() && meta.is_none() {
                continue;
            }
            let meta = meta.unwrap_or_default();
            records.push(EndpointRecord {
                ip,
                in_datapath: location.is_some(),
                host_ifindex: location.map_or(0, |v| v.ifindex),
                mac: location.map_or([0; 6], |v| v.mac),
                host_ifname: decode_field(&meta.host_ifname).into(),
                pod_ifname: decode_field(&meta.pod_ifname).into(),
                container_id: decode_field(&meta.container_id).into(),
                pod_namespace: decode_field(&meta.pod_namespace).into(),
                pod_name: decode_field(&meta.pod_name).into(),
            });
        }
        Ok(records)
    }

    /// The packets and bytes sent through host veth `host_ifindex`, summed over CPUs; `None`
    /// when it has no counters (nothing sent since attach, or not an endpoint).
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the counters map cannot be read.
    pub fn endpoint_counters(&self, host_ifindex: u32) -> Result<Option<(u64, u64)>, EbpfError> {
        let maps = self.lock_maps();
        match maps.stats.get(&host_ifindex, 0) {
            Ok(per_cpu) => Ok(Some(
                per_cpu
                    .iter()
                    .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes)),
            )),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(EbpfError::map(
                maps::EP_STATS,
                format!("read {host_ifindex}"),
                e,
            )),
        }
    }

    fn program_missing(&self) -> EbpfError {
        EbpfError::IncompletePins {
            dir: self.pins.dir().into(),
            missing: format!("progs/{}", smarter_common::progs::POD),
        }
    }
}

fn key(ip: Ipv4Addr) -> EndpointKey {
    EndpointKey { addr: addr(ip) }
}

/// `Ok(None)` for an absent key.
fn lookup<V>(
    got: Result<V, MapError>,
    map: &'static str,
    ip: Ipv4Addr,
) -> Result<Option<V>, EbpfError> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(EbpfError::map(map, format!("read {ip}"), e)),
    }
}

/// Sets (`Some`) or deletes (`None`, absent is fine) both entries of `key`.
fn write(
    maps: &mut Maps,
    key: EndpointKey,
    value: Option<EndpointValue>,
    meta: Option<&EndpointMeta>,
    ip: Ipv4Addr,
) -> Result<(), EbpfError> {
    let removed = |r: Result<(), MapError>| match r {
        Err(e) if !is_absent(&e) => Err(e),
        _ => Ok(()),
    };
    match value {
        Some(v) => maps.endpoints.insert(key, v, 0),
        None => removed(maps.endpoints.remove(&key)),
    }
    .map_err(|e| EbpfError::map(maps::ENDPOINTS, format!("write {ip}"), e))?;
    match meta {
        Some(m) => maps.meta.insert(key, m, 0),
        None => removed(maps.meta.remove(&key)),
    }
    .map_err(|e| EbpfError::map(maps::EP_META, format!("write {ip}"), e))
}

fn remove_stats(maps: &mut Maps, ifindex: u32) -> Result<(), EbpfError> {
    match maps.stats.remove(&ifindex) {
        Err(e) if !is_absent(&e) => Err(EbpfError::map(
            maps::EP_STATS,
            format!("remove {ifindex}"),
            e,
        )),
        _ => Ok(()),
    }
}

fn mac_string(mac: [u8; 6]) -> String {
    crate::netlink::format_mac(&mac)
}

fn describe(m: &EndpointMeta) -> String {
    format!(
        "container {:?} pod {}/{} host {} pod if {}",
        decode_field(&m.container_id),
        decode_field(&m.pod_namespace),
        decode_field(&m.pod_name),
        decode_field(&m.host_ifname),
        decode_field(&m.pod_ifname)
    )
}
