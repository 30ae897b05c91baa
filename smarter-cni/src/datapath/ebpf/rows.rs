//! What operators inspect of an eBPF network ([`crate::datapath::rows`]): rows from the
//! pinned maps and programs.

use std::net::Ipv4Addr;

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use crate::datapath::rows::{ConfigRow, EndpointRow, HookRow, MapRow, StatusRow, UplinkRow};
use crate::netlink::format_mac;

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a.to_ne_bytes())
}

/// `status` of one network: the default route's uplink from the config record, every
/// external interface from the `uplinks` map.
pub(super) fn status(name: &str, dp: &EbpfDatapath) -> Result<Vec<StatusRow>, EbpfError> {
    let cfg = dp.config()?;
    let name_of = |ifindex: u32| {
        (ifindex != 0)
            .then(|| nix::net::if_::if_indextoname(ifindex).ok())
            .flatten()
            .and_then(|n| n.into_string().ok())
    };
    let uplink = name_of(cfg.uplink_ifindex);
    let veths: Vec<String> = dp.endpoints()?.into_iter().map(|e| e.host_ifname).collect();
    let clats = dp.clats()?;
    Ok(vec![StatusRow {
        network: name.to_string(),
        datapath: "ebpf",
        reason: None,
        reason_detail: None,
        pin_dir: Some(dp.pin_dir().display().to_string()),
        layout: Some(smarter_common::LAYOUT_VERSION),
        pod_program_id: dp.program_id(),
        uplink,
        uplink_addr: Some(ip(cfg.uplink_addr).to_string()),
        uplinks: dp
            .uplinks()?
            .into_iter()
            .map(|u| {
                let default_route = u.ifindex == cfg.uplink_ifindex;
                let mut row = UplinkRow::new(u.ifindex, u.name, u.addr, u.l3, u.mtu, default_route);
                if let Some((_, addr, pref64)) = clats.iter().find(|c| c.0 == u.ifindex) {
                    row = row.with_clat(*addr, *pref64);
                }
                if u.egress { row } else { row.replies_only() }
            })
            .collect(),
        tables: Vec::new(),
        attachments: dp
            .attachments()?
            .into_iter()
            .map(|a| HookRow {
                ifname: a.ifname,
                program: a.program,
                direction: a.direction,
                mode: a.mode,
            })
            .collect(),
        maps: dp
            .map_fill()?
            .into_iter()
            .map(|m| MapRow {
                map: m.map.to_string(),
                entries: m.entries,
                capacity: m.capacity,
            })
            .collect(),
        sysctl_drift: Vec::new(),
        bridge: name_of(cfg.bridge_ifindex),
        veths,
    }])
}

/// `endpoints` of one network, sorted by address.
pub(super) fn endpoints(name: &str, dp: &EbpfDatapath) -> Result<Vec<EndpointRow>, EbpfError> {
    let mut rows = Vec::new();
    for e in dp.endpoints()? {
        let (packets, bytes) = dp.endpoint_counters(e.host_ifindex)?.unwrap_or_default();
        rows.push(EndpointRow {
            network: name.to_string(),
            ip: e.ip.to_string(),
            mac: format_mac(&e.mac),
            host_ifname: e.host_ifname,
            host_ifindex: e.host_ifindex,
            pod_namespace: e.pod_namespace,
            pod_name: e.pod_name,
            container_id: e.container_id,
            packets: Some(packets),
            bytes: Some(bytes),
        });
    }
    rows.sort_by_key(|r| r.ip.parse::<Ipv4Addr>().ok());
    Ok(rows)
}

/// `config`: the live configuration record and deny ranges.
pub(super) fn config(name: &str, dp: &EbpfDatapath) -> Result<Vec<ConfigRow>, EbpfError> {
    let c = dp.config()?;
    let (lo, hi) = c.nat_ports();
    Ok(vec![ConfigRow {
        network: name.to_string(),
        gateway: ip(c.gateway).to_string(),
        subnet: format!("{}/{}", ip(c.subnet), c.prefix_len),
        uplink_ifindex: c.uplink_ifindex,
        uplink_addr: ip(c.uplink_addr).to_string(),
        nat_ports: [lo, hi],
        ct_timeouts_s: c.ct_timeout_s,
        bridge_ifindex: c.bridge_ifindex,
        bridge_mac: format_mac(&c.bridge_mac),
        trace: c.flags & smarter_common::config::CFG_F_TRACE != 0,
        deny: dp.deny()?.iter().map(ToString::to_string).collect(),
    }])
}
