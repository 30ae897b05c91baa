//! Reading `nft -j list table` output: set and map elements, counters, table names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::error::NftablesError;
use crate::datapath::types::{HostPortSpec, PodLink};

fn parse_err(what: &str, reason: impl Into<String>) -> NftablesError {
    NftablesError::Parse {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

/// The objects of kind `kind` (`set`, `map`, `counter`, `table`) in a listing.
fn objects<'a>(doc: &'a Value, kind: &'static str) -> impl Iterator<Item = &'a Value> + 'a {
    doc.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |item| item.get(kind))
}

/// Whether a listing holds a set or map (`kind`) named `name`.
pub(super) fn has(doc: &Value, kind: &'static str, name: &str) -> bool {
    objects(doc, kind).any(|o| o.get("name").and_then(Value::as_str) == Some(name))
}

/// The elements of set or map `name` (`kind` is `set` or `map`); empty when it has none.
fn elements<'a>(doc: &'a Value, kind: &'static str, name: &str) -> &'a [Value] {
    objects(doc, kind)
        .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|o| o.get("elem"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An element possibly wrapped as `{"elem": {"val": ..., "counter": ...}}`.
fn unwrap_elem(v: &Value) -> &Value {
    v.get("elem").and_then(|e| e.get("val")).unwrap_or(v)
}

fn concat<'a>(v: &'a Value, what: &str, len: usize) -> Result<&'a [Value], NftablesError> {
    match unwrap_elem(v).get("concat").and_then(Value::as_array) {
        Some(parts) if parts.len() == len => Ok(parts),
        _ => Err(parse_err(
            what,
            format!("expected a {len}-part concatenation, got {v}"),
        )),
    }
}

fn ip(v: &Value, what: &str) -> Result<Ipv4Addr, NftablesError> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| parse_err(what, format!("expected an IPv4 address, got {v}")))
}

fn ip6(v: &Value, what: &str) -> Result<Ipv6Addr, NftablesError> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| parse_err(what, format!("expected an IPv6 address, got {v}")))
}

fn port(v: &Value, what: &str) -> Result<u16, NftablesError> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| parse_err(what, format!("expected a port, got {v}")))
}

fn mac(v: &Value, what: &str) -> Result<[u8; 6], NftablesError> {
    let bad = || parse_err(what, format!("expected a MAC address, got {v}"));
    let text = v.as_str().ok_or_else(bad)?;
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        *byte = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// The endpoints (`ifname . ip . mac` in `set`) of a bridge table listing, each with the IPv6
/// address set `set6` holds for its interface (none when it holds none, or does not exist:
/// tables written before dual-stack).
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn endpoints(doc: &Value, set: &str, set6: &str) -> Result<Vec<PodLink>, NftablesError> {
    let what = format!("set {set}");
    let v6 = endpoints6(doc, set6)?;
    elements(doc, "set", set)
        .iter()
        .map(|e| {
            let parts = concat(e, &what, 3)?;
            let host_ifname = parts[0]
                .as_str()
                .ok_or_else(|| parse_err(&what, format!("expected an interface name in {e}")))?
                .to_owned();
            let ip6 = v6.iter().find(|(i, _)| *i == host_ifname).map(|e| e.1);
            Ok(PodLink {
                ip: ip(&parts[1], &what)?,
                ip6,
                mac: mac(&parts[2], &what)?,
                host_ifname,
            })
        })
        .collect()
}

/// The `ifname . address` elements of a bridge table's `endpoints6` set (the address a 128-bit
/// integer, as a hex string or a number), as [`super::l2::endpoint6_element`] writes them.
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn endpoints6(doc: &Value, set: &str) -> Result<Vec<(String, Ipv6Addr)>, NftablesError> {
    let what = format!("set {set}");
    elements(doc, "set", set)
        .iter()
        .map(|e| {
            let parts = concat(e, &what, 2)?;
            let bad = || {
                parse_err(
                    &what,
                    format!("expected an interface and an address in {e}"),
                )
            };
            let ifname = parts[0].as_str().ok_or_else(bad)?.to_owned();
            let addr = match &parts[1] {
                Value::Number(n) => n.as_u64().map(u128::from),
                Value::String(s) => s
                    .strip_prefix("0x")
                    .and_then(|h| u128::from_str_radix(h, 16).ok())
                    .or_else(|| s.parse::<Ipv6Addr>().ok().map(u128::from)),
                _ => None,
            }
            .ok_or_else(bad)?;
            Ok((ifname, Ipv6Addr::from(addr)))
        })
        .collect()
}

/// The hostPorts of IPv6 map `map` (`port : ip6 . port`) in an inet table listing; empty when
/// the map does not exist.
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn host_ports6(
    doc: &Value,
    map: &str,
    protocol: u8,
) -> Result<Vec<(HostPortSpec, Ipv6Addr)>, NftablesError> {
    let what = format!("map {map}");
    elements(doc, "map", map)
        .iter()
        .map(|e| {
            let pair = e
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| parse_err(&what, format!("expected [key, value], got {e}")))?;
            let parts = concat(&pair[1], &what, 2)?;
            let hp = HostPortSpec {
                host_port: port(unwrap_elem(&pair[0]), &what)?,
                container_port: port(&parts[1], &what)?,
                protocol,
                host_ip: None,
            };
            Ok((hp, ip6(&parts[0], &what)?))
        })
        .collect()
}

/// The hostPorts of map `map` in an inet table listing: `port : ip . port`, or
/// `address . port : ip . port` for a `hostIP` map.
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn host_ports(
    doc: &Value,
    map: &str,
    protocol: u8,
) -> Result<Vec<(HostPortSpec, Ipv4Addr)>, NftablesError> {
    let what = format!("map {map}");
    elements(doc, "map", map)
        .iter()
        .map(|e| {
            let pair = e
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| parse_err(&what, format!("expected [key, value], got {e}")))?;
            let parts = concat(&pair[1], &what, 2)?;
            let key = unwrap_elem(&pair[0]);
            let (host_ip, host_port) = if key.get("concat").is_some() {
                let k = concat(key, &what, 2)?;
                (Some(ip(&k[0], &what)?), port(&k[1], &what)?)
            } else {
                (None, port(key, &what)?)
            };
            let hp = HostPortSpec {
                host_port,
                container_port: port(&parts[1], &what)?,
                protocol,
                host_ip,
            };
            Ok((hp, ip(&parts[0], &what)?))
        })
        .collect()
}

/// The `ip . ifname` elements of a set with counters (IPv4 or IPv6 addresses): address,
/// name, packets, bytes (0 for an element without a counter).
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn counted_elements(
    doc: &Value,
    set: &str,
) -> Result<Vec<(IpAddr, String, u64, u64)>, NftablesError> {
    let what = format!("set {set}");
    elements(doc, "set", set)
        .iter()
        .map(|e| {
            let parts = concat(e, &what, 2)?;
            let ifname = parts[1]
                .as_str()
                .ok_or_else(|| parse_err(&what, format!("expected an interface name in {e}")))?
                .to_owned();
            let counter = e.get("elem").and_then(|el| el.get("counter"));
            let field = |name: &str| {
                counter
                    .and_then(|c| c.get(name))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            let pod = parts[0]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| parse_err(&what, format!("expected an address in {e}")))?;
            Ok((pod, ifname, field("packets"), field("bytes")))
        })
        .collect()
}

/// The named counters of a listing: name, packets, bytes.
pub(super) fn counters(doc: &Value) -> Vec<(String, u64, u64)> {
    objects(doc, "counter")
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_owned();
            let packets = c.get("packets").and_then(Value::as_u64).unwrap_or(0);
            let bytes = c.get("bytes").and_then(Value::as_u64).unwrap_or(0);
            Some((name, packets, bytes))
        })
        .collect()
}

/// The `(family, name)` of every table in a `list tables` output.
pub(super) fn tables(doc: &Value) -> Vec<(String, String)> {
    objects(doc, "table")
        .filter_map(|t| {
            let family = t.get("family")?.as_str()?.to_owned();
            Some((family, t.get("name")?.as_str()?.to_owned()))
        })
        .collect()
}

/// The string elements of a plain set (the bridge table's pod ports).
pub(super) fn names(doc: &Value, set: &str) -> Vec<String> {
    elements(doc, "set", set)
        .iter()
        .filter_map(|e| unwrap_elem(e).as_str().map(str::to_owned))
        .collect()
}

/// The `ifname . MAC` elements of a bridge table's `macs` set (the MAC a 48-bit integer, as a
/// number or a hex string), as [`super::l2::mac_key`] writes them.
///
/// # Errors
///
/// [`NftablesError::Parse`] for an element of another shape.
pub(super) fn link_macs(doc: &Value, set: &str) -> Result<Vec<(String, u64)>, NftablesError> {
    let what = format!("set {set}");
    elements(doc, "set", set)
        .iter()
        .map(|e| {
            let parts = concat(e, &what, 2)?;
            let bad = || parse_err(&what, format!("expected an interface and a MAC in {e}"));
            let ifname = parts[0].as_str().ok_or_else(bad)?.to_owned();
            let mac = match &parts[1] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok()),
                _ => None,
            }
            .ok_or_else(bad)?;
            Ok((ifname, mac))
        })
        .collect()
}

/// The interface names of the `ifname . address` elements of a bridge table's `link_locals`
/// set.
pub(super) fn link_local_ifnames(doc: &Value, set: &str) -> Vec<String> {
    elements(doc, "set", set)
        .iter()
        .filter_map(|e| {
            let parts = unwrap_elem(e).get("concat")?.as_array()?;
            Some(parts.first()?.as_str()?.to_owned())
        })
        .collect()
}
