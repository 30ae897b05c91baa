//! `runtimeConfig`: the capability arguments the runtime fills in per invocation
//! (CONVENTIONS.md "Well-known Capabilities").
//!
//! We understand `portMappings`, `ips`, `mac`, `aliases` and `dns`; other keys are ignored, as
//! the conventions allow. Malformed values of the known keys are code 7, named by path.

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
    /// `ips`: the IPv4 addresses listed, in order (prefixes dropped, IPv6 entries skipped);
    /// the first is the one to use.
    pub ips: Vec<Ipv4Addr>,
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
    /// Reads `runtimeConfig` from `fields`; `network` selects our entry in `aliases`.
    pub(super) fn from_fields(fields: &Fields<'_>, network: &str) -> Result<Self, CniError> {
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
            if let IpAddr::V4(ip) = net.ip() {
                config.ips.push(ip);
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
        if let Some(dns) = fields.object("dns")? {
            let dns = Fields::new(dns, format!("{}.", fields.name("dns")), fields.code());
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
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<RuntimeConfig, CniError> {
        let Value::Object(map) = value else {
            panic!("test input must be an object")
        };
        RuntimeConfig::from_fields(
            &Fields::new(&map, "runtimeConfig.", CniError::INVALID_CONFIG),
            "smartnet",
        )
    }

    #[test]
    fn all_capabilities() {
        let config = parse(json!({
            "portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.168.1.10"},
                {"hostPort": 9000, "containerPort": 9000, "hostIP": ""}
            ],
            "ips": ["fd00::5/64", "172.39.0.9/16", "172.39.0.10"],
            "mac": "c2:11:22:33:44:55",
            "aliases": {"smartnet": ["db", "primary-db"], "other": ["x"]},
            "dns": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
            "bandwidth": {"ingressRate": 1}
        }))
        .unwrap();
        assert_eq!(
            config.port_mappings,
            vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_ip: Some("192.168.1.10".parse().unwrap()),
                },
                PortMapping {
                    host_port: 9000,
                    container_port: 9000,
                    protocol: Protocol::Tcp,
                    host_ip: None
                },
            ]
        );
        assert_eq!(
            config.ips,
            vec![Ipv4Addr::new(172, 39, 0, 9), Ipv4Addr::new(172, 39, 0, 10)]
        );
        assert_eq!(
            config.mac,
            Some(MacAddr([0xc2, 0x11, 0x22, 0x33, 0x44, 0x55]))
        );
        assert_eq!(
            config.aliases,
            vec!["db".to_owned(), "primary-db".to_owned()]
        );
        let dns = config.dns.unwrap();
        assert_eq!(dns.servers, vec!["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!((dns.searches.len(), dns.options.len()), (1, 1));
    }

    #[test]
    fn empty_and_list_aliases() {
        assert_eq!(parse(json!({})).unwrap(), RuntimeConfig::default());
        assert_eq!(
            parse(json!({"aliases": ["a"]})).unwrap().aliases,
            vec!["a".to_owned()]
        );
        assert!(
            parse(json!({"aliases": {"other": ["a"]}}))
                .unwrap()
                .aliases
                .is_empty()
        );
    }

    #[test]
    fn errors_name_path_and_value() {
        let cases = [
            (
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
                "runtimeConfig.portMappings[0].hostPort 0 is not an integer in 1..=65535",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 70000}]}),
                "runtimeConfig.portMappings[0].containerPort 70000 is not an integer in 1..=65535",
            ),
            (
                json!({"portMappings": [{"hostPort": 80}]}),
                "runtimeConfig.portMappings[0].containerPort is missing",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}),
                "runtimeConfig.portMappings[0].protocol \"sctp\" is not \"tcp\" or \"udp\"",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "h"}]}),
                "runtimeConfig.portMappings[0].hostIP \"h\" is not an IP address",
            ),
            (
                json!({"portMappings": ["80:80"]}),
                "runtimeConfig.portMappings[0] \"80:80\" is not an object",
            ),
            (
                json!({"ips": ["10.0.0.300"]}),
                "runtimeConfig.ips[0] \"10.0.0.300\" is not an IP address or CIDR",
            ),
            (
                json!({"mac": "01:00:5e:00:00:01"}),
                "runtimeConfig.mac \"01:00:5e:00:00:01\" is not a unicast address",
            ),
            (
                json!({"mac": "00:00:00:00:00:00"}),
                "runtimeConfig.mac \"00:00:00:00:00:00\" is not a unicast address",
            ),
            (
                json!({"mac": "c2:11"}),
                "runtimeConfig.mac \"c2:11\" is not a MAC address",
            ),
            (
                json!({"aliases": "db"}),
                "runtimeConfig.aliases \"db\" is not a list or an object of lists",
            ),
            (
                json!({"aliases": {"smartnet": [1]}}),
                "runtimeConfig.aliases.smartnet[0] 1 is not a string",
            ),
            (
                json!({"dns": {"servers": ["x"]}}),
                "runtimeConfig.dns.servers[0] \"x\" is not an IP address",
            ),
        ];
        for (value, msg) in cases {
            let err = parse(value).unwrap_err();
            assert_eq!(
                (err.code, err.msg.as_str()),
                (CniError::INVALID_CONFIG, msg)
            );
        }
    }
}
