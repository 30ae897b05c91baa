//! CHECK: verify that what ADD set up is still there and report every difference.

use std::net::Ipv4Addr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::Ctx;
use super::datapath;
use super::errors::IntoCni as _;
use crate::cni::CniError;
use crate::datapath::EndpointSpec;
use crate::naming::host_veth_name;
use crate::netlink::NetnsFile;

pub(super) async fn check(ctx: &Ctx) -> Result<(), CniError> {
    let (id, ifname, netns_path) = ctx.env.pod_triplet()?;
    let Some(prev) = ctx.conf.prev_result_typed()? else {
        return Err(CniError::new(
            CniError::INVALID_CONFIG,
            "CHECK needs prevResult",
            "prevResult",
        ));
    };
    let record = ctx.state()?.load(id, ifname).into_cni()?.ok_or_else(|| {
        CniError::new(
            CniError::UNKNOWN_CONTAINER,
            format!("no attachment {id}/{ifname} in network {}", ctx.conf.name),
            "CNI_CONTAINERID",
        )
    })?;
    let mut diffs: Vec<String> = Vec::new();
    let want_ip = Ipv4Network::new(record.ip, record.prefix).expect("stored prefix is valid");
    let want_ip6 = record.ip6.map(|ip| super::add6::pod_net6(&ctx.conf, ip));
    for want in std::iter::once(IpNetwork::V4(want_ip)).chain(want_ip6.map(IpNetwork::V6)) {
        if !prev.ips.iter().any(|c| c.address == want) {
            diffs.push(format!("prevResult does not list {want}"));
        }
    }

    let node = ctx.host.node().into_cni()?;
    let host = host_veth_name(id, ifname);
    let bridge = node.link_by_name(&ctx.conf.bridge).await.into_cni()?;
    let host_link = node.link_by_name(&host).await.into_cni()?;
    match (&bridge, &host_link) {
        (None, _) => diffs.push(format!("bridge {} is missing", ctx.conf.bridge)),
        (_, None) => diffs.push(format!("host veth {host} is missing")),
        (Some(b), Some(h)) => {
            if h.controller != Some(b.index) {
                diffs.push(format!("{host} is not attached to {}", ctx.conf.bridge));
            }
            if !h.up {
                diffs.push(format!("{host} is down"));
            }
            // A pod must not configure the node: the sysctls ADD set on both.
            diffs.extend(ctx.host.sysctl_drift(&ctx.conf.bridge));
            diffs.extend(ctx.host.sysctl_drift(&host));
        }
    }

    match NetnsFile::open(netns_path) {
        Err(e) => diffs.push(format!("pod namespace: {e}")),
        Ok(ns) => {
            check_pod(
                ctx,
                &ns,
                ifname,
                (want_ip, want_ip6),
                ctx.conf.gateway,
                &record.mac,
                &mut diffs,
            )
            .await?
        }
    }

    match ctx
        .datapaths
        .open_existing(&ctx.conf, datapath::recorded_kind(&record.datapath)?)
        .into_cni()?
    {
        None => diffs.push(format!("the {} datapath is missing", record.datapath)),
        Some(dp) => {
            if let Some(h) = &host_link {
                let spec = EndpointSpec {
                    ip: record.ip,
                    ip6: record.ip6,
                    mac: parse_mac(&record.mac),
                    host_ifname: host.clone(),
                    host_ifindex: h.index,
                    pod_ifname: ifname.to_string(),
                    container_id: id.to_string(),
                    pod_namespace: record.pod_namespace.clone(),
                    pod_name: record.pod_name.clone(),
                };
                diffs.extend(dp.check(&spec).into_cni()?);
            }
        }
    }

    if diffs.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            CniError::CHECK_MISMATCH,
            format!(
                "{id}/{ifname} differs from what ADD set up: {}",
                diffs.join("; ")
            ),
            "",
        ))
    }
}

async fn check_pod(
    ctx: &Ctx,
    ns: &NetnsFile,
    ifname: &str,
    (want_ip, want_ip6): (Ipv4Network, Option<Ipv6Network>),
    gateway: Ipv4Addr,
    want_mac: &str,
    diffs: &mut Vec<String>,
) -> Result<(), CniError> {
    let pod = ctx.host.pod(ns).into_cni()?;
    let Some(link) = pod.link_by_name(ifname).await.into_cni()? else {
        diffs.push(format!("{ifname} is missing in the pod"));
        return Ok(());
    };
    if !link.up {
        diffs.push(format!("{ifname} is down"));
    }
    if link.mac_string() != want_mac {
        diffs.push(format!(
            "{ifname} MAC is {} not {want_mac}",
            link.mac_string()
        ));
    }
    if !pod
        .ipv4_addresses(link.index)
        .await
        .into_cni()?
        .contains(&want_ip)
    {
        diffs.push(format!("{ifname} lacks {want_ip}"));
    }
    if let Some(want) = want_ip6
        && !pod
            .ipv6_addresses(link.index)
            .await
            .into_cni()?
            .contains(&want)
    {
        diffs.push(format!("{ifname} lacks {want}"));
    }
    let route = pod.default_route().await.into_cni()?;
    if route.as_ref().and_then(|r| r.gateway) != Some(gateway) {
        diffs.push(format!("default route is not via {gateway}"));
    }
    if want_ip6.is_some() {
        let gateway6 = ctx.conf.gateway6();
        if pod.default_route6().await.into_cni()? != Some(gateway6) {
            diffs.push(format!("IPv6 default route is not via {gateway6}"));
        }
    }
    Ok(())
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(s.split(':')) {
        *slot = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}
