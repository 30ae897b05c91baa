//! The ADD success result, rendered in the version the runtime asked for, and parsed back from
//! `prevResult` on CHECK and DEL.
//!
//! Version differences handled here:
//!
//! | field | 0.4.0 | 1.0.0 | 1.1.0 |
//! |-------|:-----:|:-----:|:-----:|
//! | `ips[].version` (`"4"` or `"6"`) | yes | — | — |
//! | `interfaces[].mtu`, `socketPath`, `pciID` | — | — | yes |
//! | `routes[].mtu`, `advmss`, `priority`, `table`, `scope` | — | — | yes |
//!
//! Empty lists, absent options and an empty `dns` are omitted. STATUS and GC print nothing on
//! success, so there is no result type for them.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde_json::{Map, Value, json};

use super::json::Fields;
use super::{CniError, MacAddr, Version};

/// The success result of ADD (also what CHECK and DEL receive as `prevResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created by the attachment, host side included.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes created.
    pub routes: Vec<Route>,
    /// DNS information for the container.
    pub dns: Dns,
}

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address.
    pub mac: Option<MacAddr>,
    /// Network namespace path for interfaces inside the container; `None` on the host.
    pub sandbox: Option<String>,
    /// MTU (1.1.0 only).
    pub mtu: Option<u32>,
    /// Path of a socket backing the interface (1.1.0 only).
    pub socket_path: Option<String>,
    /// PCI id of the device (1.1.0 only).
    pub pci_id: Option<String>,
}

/// One assigned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with the subnet's prefix length, e.g. `172.39.0.5/16` or `fd00:ac27::5/64`.
    pub address: IpNetwork,
    /// Default gateway of the subnet (of the address's family).
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// One route; the attributes after `gw` are 1.1.0 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop; when `None` the IP's gateway may be used.
    pub gw: Option<IpAddr>,
    /// Path MTU.
    pub mtu: Option<u32>,
    /// MSS to advertise.
    pub advmss: Option<u32>,
    /// Route priority (metric); lower wins.
    pub priority: Option<u32>,
    /// Routing table.
    pub table: Option<u32>,
    /// Route scope: 0 global, 253 link, 254 host.
    pub scope: Option<u8>,
}

impl Route {
    /// A route to `dst` via `gw` with no 1.1.0 attributes.
    #[must_use]
    pub const fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// The spec's DNS object, used both in results and in the network config's `dns` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name servers in priority order.
    pub nameservers: Vec<IpAddr>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search domains in priority order.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }

    /// Renders the DNS object, omitting empty fields.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        if !self.nameservers.is_empty() {
            out.insert(
                "nameservers".into(),
                json!(
                    self.nameservers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            );
        }
        if let Some(domain) = &self.domain {
            out.insert("domain".into(), json!(domain));
        }
        if !self.search.is_empty() {
            out.insert("search".into(), json!(self.search));
        }
        if !self.options.is_empty() {
            out.insert("options".into(), json!(self.options));
        }
        Value::Object(out)
    }

    /// Reads a DNS object from `fields` (errors carry its code and path).
    pub(super) fn from_fields(fields: &Fields<'_>) -> Result<Self, CniError> {
        Ok(Self {
            nameservers: fields.parsed_list("nameservers", "an IP address")?,
            domain: fields.string("domain")?.map(str::to_owned),
            search: fields.string_list("search")?,
            options: fields.string_list("options")?,
        })
    }
}

/// Inserts `key: value` when `value` is `Some`.
fn put<T: Into<Value>>(out: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        out.insert(key.to_owned(), value.into());
    }
}

impl CniResult {
    /// Renders the result in `version` (see the module table for what differs).
    #[must_use]
    pub fn to_json(&self, version: Version) -> Value {
        let v110 = version >= Version::V110;
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        if !self.interfaces.is_empty() {
            let list = self.interfaces.iter().map(|iface| {
                let mut o = Map::new();
                o.insert("name".into(), json!(iface.name));
                put(&mut o, "mac", iface.mac.map(|m| m.to_string()));
                put(&mut o, "sandbox", iface.sandbox.clone());
                if v110 {
                    put(&mut o, "mtu", iface.mtu);
                    put(&mut o, "socketPath", iface.socket_path.clone());
                    put(&mut o, "pciID", iface.pci_id.clone());
                }
                Value::Object(o)
            });
            out.insert("interfaces".into(), Value::Array(list.collect()));
        }
        if !self.ips.is_empty() {
            let list = self.ips.iter().map(|ip| {
                let mut o = Map::new();
                if version == Version::V040 {
                    let family = if ip.address.is_ipv6() { "6" } else { "4" };
                    o.insert("version".into(), json!(family));
                }
                o.insert("address".into(), json!(ip.address.to_string()));
                put(&mut o, "gateway", ip.gateway.map(|g| g.to_string()));
                put(&mut o, "interface", ip.interface);
                Value::Object(o)
            });
            out.insert("ips".into(), Value::Array(list.collect()));
        }
        if !self.routes.is_empty() {
            let list = self.routes.iter().map(|route| {
                let mut o = Map::new();
                o.insert("dst".into(), json!(route.dst.to_string()));
                put(&mut o, "gw", route.gw.map(|g| g.to_string()));
                if v110 {
                    put(&mut o, "mtu", route.mtu);
                    put(&mut o, "advmss", route.advmss);
                    put(&mut o, "priority", route.priority);
                    put(&mut o, "table", route.table);
                    put(&mut o, "scope", route.scope);
                }
                Value::Object(o)
            });
            out.insert("routes".into(), Value::Array(list.collect()));
        }
        if !self.dns.is_empty() {
            out.insert("dns".into(), self.dns.to_json());
        }
        Value::Object(out)
    }

    /// Parses a `prevResult` written in `version`. IPs may carry `"version"` or not (it must be
    /// the address's family, `"4"` or `"6"`, if present); fields that `version` does not define are ignored; unknown keys are
    /// ignored.
    ///
    /// # Errors
    ///
    /// Code 6 naming the path and value of the first malformed field, e.g.
    /// `prevResult.ips[0].address "fd00::2/644" is not an IP CIDR`, or an `interface` index
    /// that does not point into `interfaces`.
    pub fn from_prev_result(value: &Value, version: Version) -> Result<Self, CniError> {
        let top = Fields::object_at(value, "prevResult", CniError::DECODE)?;
        let v110 = version >= Version::V110;
        let mut result = Self::default();
        for f in top.objects("interfaces")? {
            let name = f.string("name")?.ok_or_else(|| f.missing("name"))?;
            result.interfaces.push(Interface {
                name: name.to_owned(),
                mac: f.parsed("mac", "a MAC address")?,
                sandbox: f.string("sandbox")?.map(str::to_owned),
                mtu: if v110 {
                    f.uint("mtu", 0..=u32::MAX)?
                } else {
                    None
                },
                socket_path: if v110 {
                    f.string("socketPath")?.map(str::to_owned)
                } else {
                    None
                },
                pci_id: if v110 {
                    f.string("pciID")?.map(str::to_owned)
                } else {
                    None
                },
            });
        }
        for f in top.objects("ips")? {
            let address: IpNetwork = f
                .parsed("address", "an IP CIDR")?
                .ok_or_else(|| f.missing("address"))?;
            let family = if address.is_ipv6() { "6" } else { "4" };
            if let Some(ip_version) = f.string("version")?
                && ip_version != family
            {
                return Err(f.invalid(
                    "version",
                    &json!(ip_version),
                    format!("is not the family of address {address} (\"{family}\")"),
                ));
            }
            let interface = f.uint("interface", 0..=usize::MAX)?;
            if let Some(index) = interface
                && index >= result.interfaces.len()
            {
                return Err(f.invalid(
                    "interface",
                    &json!(index),
                    format!("is out of range ({} interfaces)", result.interfaces.len()),
                ));
            }
            result.ips.push(IpConfig {
                address,
                gateway: f.parsed("gateway", "an IP address")?,
                interface,
            });
        }
        for f in top.objects("routes")? {
            let dst = f
                .parsed("dst", "an IP CIDR")?
                .ok_or_else(|| f.missing("dst"))?;
            let mut route = Route::new(dst, f.parsed("gw", "an IP address")?);
            if v110 {
                route.mtu = f.uint("mtu", 0..=u32::MAX)?;
                route.advmss = f.uint("advmss", 0..=u32::MAX)?;
                route.priority = f.uint("priority", 0..=u32::MAX)?;
                route.table = f.uint("table", 0..=u32::MAX)?;
                route.scope = f.uint("scope", 0..=u8::MAX)?;
            }
            result.routes.push(route);
        }
        if let Some(dns) = top.get("dns") {
            result.dns = Dns::from_fields(&Fields::object_at(dns, &top.name("dns"), top.code())?)?;
        }
        Ok(result)
    }
}

/// The `dns` block of an ADD result: `nameserver` and the search list
/// `<ns>.svc.<domain> svc.<domain> <domain>` (without the first entry when the pod
/// namespace is unknown).
#[must_use]
pub fn result_dns(domain: &str, nameserver: Ipv4Addr, pod_namespace: Option<&str>) -> Dns {
    let domain = crate::naming::normalize(domain);
    let mut search = Vec::with_capacity(3);
    if let Some(ns) = pod_namespace.filter(|ns| crate::naming::is_label(ns)) {
        search.push(format!("{}.svc.{domain}", ns.to_ascii_lowercase()));
    }
    search.push(format!("svc.{domain}"));
    search.push(domain);
    Dns {
        nameservers: vec![IpAddr::V4(nameserver)],
        domain: None,
        search,
        options: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
