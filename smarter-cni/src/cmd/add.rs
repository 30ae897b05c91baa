//! ADD: allocate, wire the pod, attach the datapath, record — undoing every step already
//! done when a later one fails, so a failed ADD leaves nothing behind.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::Ctx;
use super::datapath::{self, Active};
use super::errors::IntoCni as _;
use super::naming::{bridge_mac, host_veth_name};
use crate::cni::{CniError, CniResult, Interface, IpConfig, MacAddr, Route};
use crate::datapath::EndpointSpec;
use crate::netlink::{Netlink, NetnsFile};
use crate::state::{Attachment, StoredPortMapping};

/// What has been done so far, undone newest first on failure.
enum Undo {
    Release,
    DeleteVeth(String),
    Detach(Ipv4Addr, String),
}

pub(super) async fn add(ctx: &Ctx) -> Result<serde_json::Value, CniError> {
    let (id, ifname, netns_path) = ctx.env.pod_triplet()?;
    let store = ctx.state()?;
    if store.load(id, ifname).into_cni()?.is_some() {
        return Err(CniError::new(
            CniError::ATTACHMENT_EXISTS,
            format!("attachment {id}/{ifname} already exists; DEL it first"),
            "CNI_CONTAINERID",
        ));
    }
    let netns = NetnsFile::open(netns_path).map_err(|e| {
        CniError::new(
            CniError::INVALID_ENV,
            format!("CNI_NETNS {netns_path}: {e}"),
            "CNI_NETNS",
        )
    })?;
    let requested = requested_ip(ctx)?;
    let ipam = ctx.ipam()?;
    let node = Netlink::connect().into_cni()?;

    let mut done = Vec::new();
    let mut active = None;
    let res = wire(ctx, &ipam, &node, &netns, &mut active, requested, &mut done).await;
    match res {
        Ok(v) => {
            if let Some(dp) = &active {
                datapath::retire_unused(ctx, dp.name());
            }
            Ok(v)
        }
        Err(e) => {
            for step in done.into_iter().rev() {
                let r = match &step {
                    Undo::Release => ipam
                        .release(id, ifname)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Undo::DeleteVeth(name) => node
                        .delete_link(name)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Undo::Detach(ip, host) => {
                        active.as_ref().map_or(Ok(()), |dp| dp.detach(*ip, host))
                    }
                };
                if let Err(err) = r {
                    tracing::error!("rollback step failed: {err}");
                }
            }
            Err(e)
        }
    }
}

fn requested_ip(ctx: &Ctx) -> Result<Option<Ipv4Addr>, CniError> {
    Ok(ctx.conf.requested_ip(&ctx.env.args))
}

async fn wire(
    ctx: &Ctx,
    ipam: &crate::ipam::Ipam,
    node: &Netlink,
    netns: &NetnsFile,
    active: &mut Option<Active>,
    requested: Option<Ipv4Addr>,
    done: &mut Vec<Undo>,
) -> Result<serde_json::Value, CniError> {
    let (id, ifname, netns_path) = ctx.env.pod_triplet()?;
    let conf = &ctx.conf;
    let mtu = conf.mtu.unwrap_or(1500);

    let ip = ipam.allocate(id, ifname, requested).into_cni()?;
    done.push(Undo::Release);
    ctx.fault("after-ipam")?;

    let bridge = node
        .ensure_bridge(&conf.bridge, mtu, bridge_mac(&conf.bridge))
        .await
        .into_cni()?;
    let gw_net = Ipv4Network::new(conf.gateway, conf.subnet.prefix()).expect("validated prefix");
    node.ensure_address(bridge.index, &conf.bridge, gw_net)
        .await
        .into_cni()?;
    super::node::prepare(&conf.bridge, conf.nat_port_range)?;
    let uplink = datapath::resolve_uplink(ctx, node).await?;
    let dp: &Active = active.insert(datapath::open_for_add(
        ctx,
        uplink.as_ref(),
        (bridge.index, bridge_mac(&conf.bridge)),
    )?);

    let host = host_veth_name(id, ifname);
    node.create_veth(
        &host,
        ifname,
        netns,
        mtu,
        conf.runtime_config.mac.map(MacAddr::octets),
    )
    .await
    .into_cni()?;
    done.push(Undo::DeleteVeth(host.clone()));
    let host_link =
        node.link_by_name(&host).await.into_cni()?.ok_or_else(|| {
            CniError::new(CniError::NETLINK, format!("{host} vanished"), "netlink")
        })?;
    node.attach_to_bridge(host_link.index, &host, bridge.index, conf.hairpin_mode)
        .await
        .into_cni()?;
    ctx.fault("after-veth")?;

    let pod = Netlink::connect_in(netns).into_cni()?;
    let lo = pod.link_by_name("lo").await.into_cni()?;
    if let Some(lo) = lo {
        pod.set_up(lo.index, "lo").await.into_cni()?;
    }
    let pod_link = pod.link_by_name(ifname).await.into_cni()?.ok_or_else(|| {
        CniError::new(
            CniError::NETLINK,
            format!("{ifname} missing in pod"),
            "netlink",
        )
    })?;
    let pod_net = Ipv4Network::new(ip, conf.subnet.prefix()).expect("validated prefix");
    pod.ensure_address(pod_link.index, ifname, pod_net)
        .await
        .into_cni()?;
    pod.set_up(pod_link.index, ifname).await.into_cni()?;
    pod.ensure_default_route(conf.gateway, pod_link.index)
        .await
        .into_cni()?;
    ctx.fault("after-pod")?;

    let mac: [u8; 6] = pod_link.mac.as_slice().try_into().unwrap_or_default();
    let spec = EndpointSpec {
        ip,
        mac,
        host_ifname: host.clone(),
        host_ifindex: host_link.index,
        pod_ifname: ifname.to_string(),
        container_id: id.to_string(),
        pod_namespace: ctx.env.args.pod_namespace.clone().unwrap_or_default(),
        pod_name: ctx.env.args.pod_name.clone().unwrap_or_default(),
    };
    dp.attach(ctx, &spec, &conf.runtime_config.port_mappings)?;
    done.push(Undo::Detach(ip, host.clone()));
    ctx.fault("after-datapath")?;

    let result = CniResult {
        interfaces: vec![
            Interface {
                name: host.clone(),
                mac: mac_of(&host_link.mac),
                mtu: Some(mtu),
                ..Interface::default()
            },
            Interface {
                name: ifname.to_string(),
                mac: mac_of(&pod_link.mac),
                sandbox: Some(netns_path.to_string()),
                mtu: Some(mtu),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            address: pod_net,
            gateway: Some(conf.gateway),
            interface: Some(1),
        }],
        routes: vec![Route::new(
            Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("valid"),
            Some(conf.gateway),
        )],
        dns: conf.result_dns(ctx.env.args.pod_namespace.as_deref()),
    };
    let json = result.to_json(ctx.version);
    let record = Attachment {
        container_id: id.to_string(),
        ifname: ifname.to_string(),
        netns: netns_path.to_string(),
        host_ifname: host,
        ip,
        prefix: conf.subnet.prefix(),
        mac: pod_link.mac_string(),
        pod_namespace: spec.pod_namespace,
        pod_name: spec.pod_name,
        pod_uid: ctx.env.args.pod_uid.clone().unwrap_or_default(),
        port_mappings: conf
            .runtime_config
            .port_mappings
            .iter()
            .map(|p| StoredPortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.to_string(),
                host_ip: p.host_ip.map(|i| i.to_string()),
            })
            .collect(),
        aliases: conf.runtime_config.aliases.clone(),
        datapath: dp.name().to_string(),
        result: json.clone(),
    };
    ctx.state()?.save(&record).into_cni()?;
    Ok(json)
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr::from)
}
