//! Readers for the individual config keys that need more than a type check.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde_json::Value;

use super::{CtTimeoutsConf, DEFAULT_SUBNET, PortRange, ValidAttachment};
use crate::cni::CniError;
use crate::cni::json::Fields;
use crate::cni::names::validate_ifname;

/// Checks that `net` has no host bits; `key` and `text` name it in the error.
fn no_host_bits(f: &Fields<'_>, key: &str, text: &str, net: Ipv4Network) -> Result<(), CniError> {
    if net.ip() == net.network() {
        return Ok(());
    }
    Err(f.invalid(
        key,
        &Value::String(text.to_owned()),
        format!(
            "has host bits set (the network is {}/{})",
            net.network(),
            net.prefix()
        ),
    ))
}

/// `subnet` (prefix ≤ /30, no host bits) and `gateway` (a host address inside it; default the
/// first host).
pub(super) fn subnet_and_gateway(f: &Fields<'_>) -> Result<(Ipv4Network, Ipv4Addr), CniError> {
    let subnet = match f.string("subnet")? {
        None => DEFAULT_SUBNET,
        Some(text) => {
            let net: Ipv4Network = f
                .parsed("subnet", "an IPv4 CIDR")?
                .unwrap_or(DEFAULT_SUBNET);
            no_host_bits(f, "subnet", text, net)?;
            if net.prefix() > 30 {
                return Err(f.invalid(
                    "subnet",
                    &Value::String(text.to_owned()),
                    "is too small (the prefix must be /30 or shorter)",
                ));
            }
            net
        }
    };
    let first_host = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let Some(gateway) = f.parsed::<Ipv4Addr>("gateway", "an IPv4 address")? else {
        return Ok((subnet, first_host));
    };
    let why = if !subnet.contains(gateway) {
        format!("is outside subnet {subnet}")
    } else if gateway == subnet.network() {
        format!("is the network address of subnet {subnet}")
    } else if gateway == subnet.broadcast() {
        format!("is the broadcast address of subnet {subnet}")
    } else {
        return Ok((subnet, gateway));
    };
    Err(f.invalid("gateway", &Value::String(gateway.to_string()), why))
}

/// A string key that must be a valid interface name.
pub(super) fn ifname(f: &Fields<'_>, key: &str) -> Result<Option<String>, CniError> {
    let Some(name) = f.string(key)? else {
        return Ok(None);
    };
    validate_ifname(name)
        .map(|()| Some(name.to_owned()))
        .map_err(|why| {
            f.invalid(
                key,
                &Value::String(name.to_owned()),
                format!("is not a valid interface name: it {why}"),
            )
        })
}

/// `nodeDns`: an IPv4 unicast address, or `""` / `"off"` for no node-local DNS (`Some(None)`).
pub(super) fn node_dns(f: &Fields<'_>) -> Result<Option<Option<Ipv4Addr>>, CniError> {
    let Some(text) = f.string("nodeDns")? else {
        return Ok(None);
    };
    if text.is_empty() || text == "off" {
        return Ok(Some(None));
    }
    match text.parse::<Ipv4Addr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() => {
            Ok(Some(Some(ip)))
        }
        _ => Err(f.invalid(
            "nodeDns",
            &Value::String(text.to_owned()),
            "is not an IPv4 unicast address or \"off\"",
        )),
    }
}

/// `clusterDomain`: a DNS name, returned in key form (lower case, no trailing dot).
pub(super) fn cluster_domain(f: &Fields<'_>) -> Result<Option<String>, CniError> {
    let Some(text) = f.string("clusterDomain")? else {
        return Ok(None);
    };
    let name = crate::naming::normalize(text);
    if crate::naming::is_name(&name) {
        Ok(Some(name))
    } else {
        Err(f.invalid(
            "clusterDomain",
            &Value::String(text.to_owned()),
            "is not a DNS name (labels of letters, digits and '-', at most 253 characters)",
        ))
    }
}

/// A string key that must be one of `options`.
pub(super) fn choice<T: Copy>(
    f: &Fields<'_>,
    key: &str,
    options: &[(&str, T)],
) -> Result<Option<T>, CniError> {
    let Some(text) = f.string(key)? else {
        return Ok(None);
    };
    options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|&(_, value)| Some(value))
        .ok_or_else(|| {
            let names: Vec<String> = options
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            f.invalid(
                key,
                &Value::String(text.to_owned()),
                format!("is not one of {}", names.join(", ")),
            )
        })
}

/// A string key that must be an absolute path.
pub(super) fn abs_path(f: &Fields<'_>, key: &str) -> Result<Option<PathBuf>, CniError> {
    let Some(text) = f.string(key)? else {
        return Ok(None);
    };
    if text.contains('\0') {
        return Err(f.invalid(key, &Value::String(text.to_owned()), "contains NUL"));
    }
    let path = PathBuf::from(text);
    match super::paths::refuse_reason(key, &path) {
        None => Ok(Some(path)),
        Some(why) => Err(f.invalid(key, &Value::String(text.to_owned()), why)),
    }
}

/// `denyCIDRs`: IPv4 CIDRs without host bits.
pub(super) fn deny_cidrs(f: &Fields<'_>) -> Result<Vec<Ipv4Network>, CniError> {
    f.string_list("denyCIDRs")?
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let key = format!("denyCIDRs[{i}]");
            let net: Ipv4Network = text.parse().map_err(|_| {
                f.invalid(&key, &Value::String(text.clone()), "is not an IPv4 CIDR")
            })?;
            no_host_bits(f, &key, text, net).map(|()| net)
        })
        .collect()
}

/// `natPortRange`: `"a-b"` or `{"start": a, "end": b}` with 1024 ≤ a ≤ b ≤ 65535.
pub(super) fn port_range(f: &Fields<'_>) -> Result<Option<PortRange>, CniError> {
    let Some(value) = f.get("natPortRange") else {
        return Ok(None);
    };
    let bad = || {
        f.invalid(
            "natPortRange",
            value,
            "is not a port range \"a-b\" or {\"start\": a, \"end\": b} with 1024 <= a <= b <= 65535",
        )
    };
    let (start, end) = match value {
        Value::String(text) => {
            let (a, b) = text.split_once('-').ok_or_else(bad)?;
            (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            )
        }
        Value::Object(map) if map.keys().all(|k| k == "start" || k == "end") => {
            let port = |k: &str| {
                map.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(bad)
            };
            (port("start")?, port("end")?)
        }
        _ => return Err(bad()),
    };
    if 1024 <= start && start <= end {
        Ok(Some(PortRange { start, end }))
    } else {
        Err(bad())
    }
}

/// `ctTimeouts`: `{"tcpEstablished", "tcpOther", "udp", "icmp"}` in seconds (1..=604800), each
/// optional (defaults from [`CtTimeoutsConf::DEFAULT`]); an unknown key is refused.
pub(super) fn ct_timeouts(f: &Fields<'_>) -> Result<CtTimeoutsConf, CniError> {
    let mut t = CtTimeoutsConf::DEFAULT;
    let Some(value) = f.get("ctTimeouts") else {
        return Ok(t);
    };
    let Value::Object(map) = value else {
        return Err(f.invalid("ctTimeouts", value, "is not an object of seconds"));
    };
    for (k, v) in map {
        let slot = match k.as_str() {
            "tcpEstablished" => &mut t.tcp_established,
            "tcpOther" => &mut t.tcp_other,
            "udp" => &mut t.udp,
            "icmp" => &mut t.icmp,
            _ => {
                return Err(f.invalid(
                    &format!("ctTimeouts.{k}"),
                    v,
                    "is not one of tcpEstablished, tcpOther, udp, icmp",
                ));
            }
        };
        *slot = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=604_800).contains(n))
            .ok_or_else(|| {
                f.invalid(
                    &format!("ctTimeouts.{k}"),
                    v,
                    "is not a number of seconds in 1..=604800",
                )
            })?;
    }
    Ok(t)
}

/// `cni.dev/valid-attachments`, or the older spelling `cni.dev/attachments`.
pub(super) fn attachments(f: &Fields<'_>) -> Result<Option<Vec<ValidAttachment>>, CniError> {
    let Some(key) = ["cni.dev/valid-attachments", "cni.dev/attachments"]
        .into_iter()
        .find(|k| f.get(k).is_some())
    else {
        return Ok(None);
    };
    let required = |entry: &Fields<'_>, k: &str| -> Result<String, CniError> {
        entry
            .string(k)?
            .map(str::to_owned)
            .ok_or_else(|| entry.missing(k))
    };
    f.objects(key)?
        .iter()
        .map(|entry| {
            Ok(ValidAttachment {
                container_id: required(entry, "containerID")?,
                ifname: required(entry, "ifname")?,
            })
        })
        .collect::<Result<Vec<_>, CniError>>()
        .map(Some)
}

/// The first IPv4 address of `args.cni.ips` (CONVENTIONS.md); other `args` are ignored.
pub(super) fn args_ip(args: &Value) -> Result<Option<Ipv4Addr>, CniError> {
    let Some(cni) = args.get("cni").and_then(Value::as_object) else {
        return Ok(None);
    };
    let cni = Fields::new(cni, "args.cni.", CniError::INVALID_CONFIG);
    let ips: Vec<IpNetwork> = cni.parsed_list("ips", "an IP address or CIDR")?;
    Ok(ips.into_iter().find_map(|net| match net.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }))
}
