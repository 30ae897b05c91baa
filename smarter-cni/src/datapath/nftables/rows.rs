//! What operators inspect of an nftables network ([`crate::datapath::rows`]): rows from its
//! tables, with pod names from the plugin's attachment records (read only; nothing under the
//! state directory is changed).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use super::error::NftablesError;
use super::tables::NftablesDatapath;
use crate::datapath::rows::{EndpointRow, MapRow, StatusRow};
use crate::netlink::format_mac;
use crate::state::Attachment;

/// `status` of one network: its tables and how many elements the endpoint set and hostPort
/// maps hold (nftables sets here have no fixed capacity: 0).
pub(super) fn status(name: &str, dp: &NftablesDatapath) -> Result<Vec<StatusRow>, NftablesError> {
    let veths: Vec<String> = dp.endpoints()?.into_iter().map(|e| e.host_ifname).collect();
    let endpoints = veths.len();
    let host_ports = dp.host_ports()?.len();
    Ok(vec![StatusRow {
        network: name.to_string(),
        datapath: "nftables",
        reason: None,
        reason_detail: None,
        pin_dir: None,
        layout: None,
        pod_program_id: None,
        uplink: None,
        uplink_addr: None,
        uplinks: Vec::new(),
        tables: ["inet", "bridge"]
            .iter()
            .map(|f| format!("{f} {}", dp.table()))
            .collect(),
        attachments: Vec::new(),
        maps: vec![
            MapRow {
                map: "endpoints".to_string(),
                entries: endpoints,
                capacity: 0,
            },
            MapRow {
                map: "hostports".to_string(),
                entries: host_ports,
                capacity: 0,
            },
        ],
        sysctl_drift: Vec::new(),
        bridge: None,
        veths,
    }])
}

/// `endpoints` of one network, sorted by address; pod names from the records in `records`.
pub(super) fn endpoints(
    name: &str,
    dp: &NftablesDatapath,
    records: &Path,
) -> Result<Vec<EndpointRow>, NftablesError> {
    let by_ip = attachments(records);
    let mut rows: Vec<EndpointRow> = dp
        .endpoints()?
        .into_iter()
        .map(|e| {
            let rec = by_ip.get(&e.ip);
            let text =
                |f: fn(&Attachment) -> &String| rec.map(|a| f(a).clone()).unwrap_or_default();
            EndpointRow {
                network: name.to_string(),
                ip: e.ip.to_string(),
                mac: format_mac(&e.mac),
                host_ifindex: nix::net::if_::if_nametoindex(e.host_ifname.as_str()).unwrap_or(0),
                host_ifname: e.host_ifname,
                pod_namespace: text(|a| &a.pod_namespace),
                pod_name: text(|a| &a.pod_name),
                container_id: text(|a| &a.container_id),
                packets: None,
                bytes: None,
            }
        })
        .collect();
    rows.sort_by_key(|r| r.ip.parse::<Ipv4Addr>().ok());
    Ok(rows)
}

/// The attachment records of one network by pod address; unreadable files are skipped.
fn attachments(dir: &Path) -> HashMap<Ipv4Addr, Attachment> {
    crate::state::scan(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, a)| (a.ip, a))
        .collect()
}
