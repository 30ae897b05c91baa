//! `runtimeConfig`: the capability arguments the runtime fills in per invocation
//! (CONVENTIONS.md "Well-known Capabilities").
//!
//! We understand `portMappings`, `ips`, `mac`, `aliases` and `dns`; other keys are ignored, as
//! the conventions allow. Malformed values of the known keys are code 7, named by path.
//!
//! Keys are decoded as the reference Go plugins decode them (Go's `encoding/json`, see
//! [`super::json`]): case-insensitively, the last of several keys naming one field winning,
//! unknown keys ignored — at the top of `runtimeConfig` and inside every capability object.
//! This is not a nicety: containerd's CNI library (go-cni) has no JSON tags on its
//! capability types, so containerd sends `{"HostPort":8080,"ContainerPort":80,
//! "Protocol":"tcp","HostIP":""}` and `{"Servers":[..],"Searches":[..],"Options":[..]}`.
//! The network names inside an `aliases` object are map keys and match exactly, as in Go.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::json::Fields;
use super::{CniError, MacAddr};

/// The understood contents of `runtimeConfig`; default when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `portMappings`: host ports to forward into the pod.
    pub port_mappings: Vec<PortMapping>,
    /// `ips`: the IPv4 addresses listed, in order (prefixes dropped; IPv6 ones are in `ips6`);
    /// the first is the one to use.
    pub ips: Vec<Ipv4Addr>,
    /// `ips`: the IPv6 addresses listed, in order (prefixes dropped); the first is the one
    /// to use.
    pub ips6: Vec<std::net::Ipv6Addr>,
    /// `mac`: the requested container-side MAC; always unicast and non-zero.
    pub mac: Option<MacAddr>,
    /// `aliases`: names for this pod on our network.
    pub aliases: Vec<String>,
    /// `dns`: resolver settings for the pod.
    pub dns: Option<RuntimeDns>,
}

/// One `portMappings` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// `hostPort`, 1..=65535.
    pub host_port: u16,
    /// `containerPort`, 1..=65535.
    pub container_port: u16,
    /// `protocol`, default TCP.
    pub protocol: Protocol,
    /// `hostIP`: the host address to bind; `None` (absent or empty) means all addresses.
    pub host_ip: Option<IpAddr>,
}

/// Transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// `"tcp"` (the default).
    #[default]
    Tcp,
    /// `"udp"`.
    Udp,
}

impl Protocol {
    /// The lowercase name, `"tcp"` or `"udp"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// IANA protocol number (6 or 17).
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `dns` capability: `{servers, searches, options}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeDns {
    /// Name servers.
    pub servers: Vec<IpAddr>,
    /// Search domains.
    pub searches: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

impl RuntimeConfig {
    /// Reads the `runtimeConfig` value found in the network config; `network` selects our
    /// entry in `aliases`.
    pub(super) fn from_value(value: &Value, network: &str) -> Result<Self, CniError> {
        match value {
            Value::Object(map) => Self::from_fields(
                &Fields::go_style(map, "runtimeConfig.", CniError::INVALID_CONFIG),
                network,
            ),
            other => Err(CniError::invalid_config(format!(
                "runtimeConfig {} is not an object",
                super::json::render(other)
            ))),
        }
    }

    /// Reads `runtimeConfig` from `fields`; `network` selects our entry in `aliases`.
    fn from_fields(fields: &Fields<'_>, network: &str) -> Result<Self, CniError> {
        let mut config = Self {
            mac: fields.parsed::<MacAddr>("mac", "a MAC address")?,
            ..Self::default()
        };
        if let Some(mac) = config.mac
            && (!mac.is_unicast() || mac.is_zero())
        {
            return Err(fields.invalid(
                "mac",
                &Value::String(mac.to_string()),
                "is not a unicast address",
            ));
        }
        for entry in fields.objects("portMappings")? {
            config.port_mappings.push(port_mapping(&entry)?);
        }
        for (i, text) in fields.string_list("ips")?.into_iter().enumerate() {
            let net: IpNetwork = text.parse().map_err(|_| {
                fields.invalid(
                    &format!("ips[{i}]"),
                    &Value::String(text.clone()),
                    "is not an IP address or CIDR",
                )
            })?;
            match net.ip() {
                IpAddr::V4(ip) => config.ips.push(ip),
                IpAddr::V6(ip) => config.ips6.push(ip),
            }
        }
        config.aliases = match fields.get("aliases") {
            None => Vec::new(),
            Some(Value::Array(_)) => fields.string_list("aliases")?,
            Some(value @ Value::Object(_)) => {
                Fields::object_at(value, &fields.name("aliases"), fields.code())?
                    .string_list(network)?
            }
            Some(other) => {
                return Err(fields.invalid(
                    "aliases",
                    other,
                    "is not a list or an object of lists",
                ));
            }
        };
        if let Some(dns) = fields.merged_object("dns")? {
            config.dns = Some(RuntimeDns {
                servers: dns.parsed_list("servers", "an IP address")?,
                searches: dns.string_list("searches")?,
                options: dns.string_list("options")?,
            });
        }
        Ok(config)
    }
}

/// Reads one `portMappings` entry.
fn port_mapping(entry: &Fields<'_>) -> Result<PortMapping, CniError> {
    let port = |key: &str| {
        entry
            .uint::<u16>(key, 1..=u16::MAX)?
            .ok_or_else(|| entry.missing(key))
    };
    let protocol = match entry.string("protocol")? {
        None => Protocol::Tcp,
        Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
        Some(p) => {
            return Err(entry.invalid(
                "protocol",
                &Value::String(p.to_owned()),
                "is not \"tcp\" or \"udp\"",
            ));
        }
    };
    let host_ip = match entry.string("hostIP")? {
        None | Some("") => None,
        Some(_) => entry.parsed("hostIP", "an IP address")?,
    };
    Ok(PortMapping {
        host_port: port("hostPort")?,
        container_port: port("containerPort")?,
        protocol,
        host_ip,
    })
}

#[cfg(test)]
mod tests;
