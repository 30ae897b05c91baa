//! ADD: allocate, wire the pod, attach the datapath, record — undoing every step already
//! done when a later one fails, so a failed ADD leaves nothing behind.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::Ipv4Network;

use super::Ctx;
use super::Step;
use super::add6;
use super::datapath;
use super::errors::IntoCni as _;
use super::network::Network;
use super::rollback::{Rollback, Undo};
use crate::cni::{CniError, CniResult, Interface, IpConfig, MacAddr, Route};
use crate::datapath::{Datapath, EndpointSpec, HostPortSpec};
use crate::naming::host_veth_name;
use crate::netlink::{LinkInfo, Links, NetnsFile};
use crate::state::{Attachment, StoredPortMapping};

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
    let requested6 = add6::requested_ip6(ctx)?;
    let ipam = ctx.ipam()?;
    let ipam6 = if ctx.conf.ipv6 == crate::cni::config::Ipv6Mode::Off {
        None
    } else {
        Some(ctx.ipam6()?)
    };
    let node = ctx.host.node().into_cni()?;
    let node = node.as_ref();

    let mut rollback = Rollback::new(&ipam, ipam6.as_ref(), node);
    let ip = ipam.allocate(id, ifname, requested).into_cni()?;
    rollback.push(Undo::Release);
    // Node-wide first (shared with every pod and the agent), then the pod's IPv6 address
    // when it gets one, then the pod.
    let net = match prepare(ctx, node).await {
        Ok(net) => net,
        Err(e) => {
            rollback.unwind(ctx, None).await;
            return Err(e);
        }
    };
    let ip6 = match allocate6(ctx, node, &net, ipam6.as_ref(), requested6, &mut rollback).await {
        Ok(ip6) => ip6,
        Err(e) => {
            rollback.unwind(ctx, None).await;
            return Err(e);
        }
    };
    match attach_pod(ctx, node, &netns, &net, (ip, ip6), &mut rollback).await {
        Ok(json) => {
            rollback.commit();
            datapath::retire_unused(ctx, net.datapath.kind());
            Ok(json)
        }
        Err(e) => {
            rollback.unwind(ctx, Some(net.datapath.as_ref())).await;
            Err(e)
        }
    }
}

fn requested_ip(ctx: &Ctx) -> Result<Option<Ipv4Addr>, CniError> {
    Ok(ctx.conf.requested_ip(&ctx.env.args))
}

/// The IPv4 allocation's fault point, then the node-wide half ([`super::network::ensure`]).
async fn prepare(ctx: &Ctx, node: &dyn Links) -> Result<Network, CniError> {
    ctx.faults.after(Step::Ipam)?;
    super::network::ensure(ctx, node).await
}

/// The pod's IPv6 address when it gets one ([`add6::wants_v6`]): allocated (registered with
/// `rollback`), the bridge given the IPv6 gateway.
async fn allocate6(
    ctx: &Ctx,
    node: &dyn Links,
    net: &Network,
    ipam6: Option<&crate::ipam::Ipam6>,
    requested: Option<Ipv6Addr>,
    rollback: &mut Rollback<'_>,
) -> Result<Option<Ipv6Addr>, CniError> {
    let Some(ipam6) = ipam6.filter(|_| add6::wants_v6(ctx.conf.ipv6, net.uplink_v6, requested))
    else {
        return Ok(None);
    };
    let (id, ifname, _) = ctx.env.pod_triplet()?;
    let ip6 = ipam6.allocate(id, ifname, requested).into_cni()?;
    rollback.push(Undo::Release6);
    ctx.faults.after(Step::Ipam6)?;
    add6::ensure_bridge6(&ctx.conf, node, &net.bridge).await?;
    Ok(Some(ip6))
}

/// The pod's half of ADD, in named steps, each registered with `rollback`: its veth on the
/// bridge ([`wire_host_side`]), its address and route ([`configure_pod`]), the datapath
/// entries ([`attach_datapath`]), then the result and the record. After each, the test seam
/// ([`super::Faults`], a no-op in production) may fail it at that [`Step`].
async fn attach_pod(
    ctx: &Ctx,
    node: &dyn Links,
    netns: &NetnsFile,
    net: &Network,
    (ip, ip6): (Ipv4Addr, Option<Ipv6Addr>),
    rollback: &mut Rollback<'_>,
) -> Result<serde_json::Value, CniError> {
    let (id, ifname, netns_path) = ctx.env.pod_triplet()?;
    let host = host_veth_name(id, ifname);
    let host_link = wire_host_side(ctx, node, netns, net, &host, rollback).await?;
    ctx.faults.after(Step::Veth)?;
    let pod_link = configure_pod(ctx, netns, ip, ip6).await?;
    ctx.faults.after(Step::Pod)?;
    let mut spec = endpoint_spec(ctx, ip, &host_link, &pod_link)?;
    spec.ip6 = ip6;
    attach_datapath(ctx, node, net.datapath.as_ref(), &spec, rollback).await?;
    ctx.faults.after(Step::Datapath)?;
    let mut result = result_of(ctx, net.mtu, &host_link, &pod_link, ip, netns_path);
    if let Some(ip6) = ip6 {
        let (ip_config, route) = add6::result_entries(&ctx.conf, ip6);
        result.ips.push(ip_config);
        result.routes.push(route);
    }
    let json = result.to_json(ctx.version);
    let record = record_of(ctx, &spec, &pod_link, net.datapath.kind().name(), &json);
    ctx.state()?.save(&record).into_cni()?;
    Ok(json)
}

/// The veth pair, its peer created inside the pod as `CNI_IFNAME`, the host end prepared
/// (sysctls, no learning) and attached to the bridge.
async fn wire_host_side(
    ctx: &Ctx,
    node: &dyn Links,
    netns: &NetnsFile,
    net: &Network,
    host: &str,
    rollback: &mut Rollback<'_>,
) -> Result<LinkInfo, CniError> {
    let conf = &ctx.conf;
    let ifname = ctx.env.ifname()?;
    let mac = conf.runtime_config.mac.map(MacAddr::octets);
    node.create_veth(host, ifname, netns, net.mtu, mac)
        .await
        .into_cni()?;
    rollback.push(Undo::DeleteVeth(host.to_owned()));
    let host_link =
        node.link_by_name(host).await.into_cni()?.ok_or_else(|| {
            CniError::new(CniError::NETLINK, format!("{host} vanished"), "netlink")
        })?;
    ctx.host.prepare_port(host)?;
    node.attach_to_bridge(host_link.index, host, net.bridge.index, conf.hairpin_mode)
        .await
        .into_cni()?;
    Ok(host_link)
}

/// Inside the pod: `lo` up, the address (and the IPv6 one), the interface up, the default
/// route via the gateway (and `::/0` via the IPv6 one). Returns the pod's interface.
async fn configure_pod(
    ctx: &Ctx,
    netns: &NetnsFile,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
) -> Result<LinkInfo, CniError> {
    let conf = &ctx.conf;
    let ifname = ctx.env.ifname()?;
    let pod = ctx.host.pod(netns).into_cni()?;
    if let Some(lo) = pod.link_by_name("lo").await.into_cni()? {
        pod.set_up(lo.index, "lo").await.into_cni()?;
    }
    let pod_link = pod.link_by_name(ifname).await.into_cni()?.ok_or_else(|| {
        CniError::new(
            CniError::NETLINK,
            format!("{ifname} missing in pod"),
            "netlink",
        )
    })?;
    pod.ensure_address(pod_link.index, ifname, pod_net(ctx, ip))
        .await
        .into_cni()?;
    if let Some(ip6) = ip6 {
        add6::address_pod6(conf, pod.as_ref(), &pod_link, ip6).await?;
    }
    pod.set_up(pod_link.index, ifname).await.into_cni()?;
    pod.ensure_default_route(conf.gateway, pod_link.index)
        .await
        .into_cni()?;
    if ip6.is_some() {
        add6::route_pod6(conf, pod.as_ref(), &pod_link).await?;
    }
    Ok(pod_link)
}

/// The pod's address with the subnet's prefix.
fn pod_net(ctx: &Ctx, ip: Ipv4Addr) -> Ipv4Network {
    Ipv4Network::new(ip, ctx.conf.subnet.prefix()).expect("validated prefix")
}

/// What the datapath needs of the pod.
fn endpoint_spec(
    ctx: &Ctx,
    ip: Ipv4Addr,
    host_link: &LinkInfo,
    pod_link: &LinkInfo,
) -> Result<EndpointSpec, CniError> {
    let (id, ifname, _) = ctx.env.pod_triplet()?;
    Ok(EndpointSpec {
        ip,
        ip6: None,
        mac: pod_link.mac.as_slice().try_into().unwrap_or_default(),
        host_ifname: host_link.name.clone(),
        host_ifindex: host_link.index,
        pod_ifname: ifname.to_string(),
        container_id: id.to_string(),
        pod_namespace: ctx.env.args.pod_namespace.clone().unwrap_or_default(),
        pod_name: ctx.env.args.pod_name.clone().unwrap_or_default(),
    })
}

/// The pod's MAC as the only one its bridge port forwards, then the datapath entries with
/// the pod's hostPorts.
async fn attach_datapath(
    ctx: &Ctx,
    node: &dyn Links,
    dp: &dyn Datapath,
    spec: &EndpointSpec,
    rollback: &mut Rollback<'_>,
) -> Result<(), CniError> {
    node.add_port_mac(spec.host_ifindex, &spec.host_ifname, spec.mac)
        .await
        .into_cni()?;
    let ports: Vec<HostPortSpec> = ctx
        .conf
        .runtime_config
        .port_mappings
        .iter()
        .filter_map(|p| {
            let host_ip = match p.host_ip {
                None => None,
                Some(std::net::IpAddr::V4(a)) => Some(a),
                // `hostIP` is IPv4-only: a mapping limited to one IPv6 node address is skipped
                // (portmap skips it for IPv4 pods too). Without `hostIP`, a dual-stack pod's
                // hostPort answers on every node IPv6 address as well.
                Some(std::net::IpAddr::V6(a)) => {
                    tracing::warn!(
                        "hostPort {} limited to {a}: hostIP must be IPv4 (without hostIP a \
                         dual-stack pod's hostPort answers on every node IPv6 address); skipped",
                        p.host_port
                    );
                    return None;
                }
            };
            Some(HostPortSpec {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.number(),
                host_ip,
            })
        })
        .collect();
    dp.attach(spec, &ports).into_cni()?;
    rollback.push(Undo::Detach(spec.ip, spec.host_ifname.clone()));
    Ok(())
}

/// The CNI result: both veth ends, the address, the default route, the DNS settings.
fn result_of(
    ctx: &Ctx,
    mtu: u32,
    host_link: &LinkInfo,
    pod_link: &LinkInfo,
    ip: Ipv4Addr,
    netns_path: &str,
) -> CniResult {
    let conf = &ctx.conf;
    CniResult {
        interfaces: vec![
            Interface {
                name: host_link.name.clone(),
                mac: mac_of(&host_link.mac),
                mtu: Some(mtu),
                ..Interface::default()
            },
            Interface {
                name: pod_link.name.clone(),
                mac: mac_of(&pod_link.mac),
                sandbox: Some(netns_path.to_string()),
                mtu: Some(mtu),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            address: pod_net(ctx, ip).into(),
            gateway: Some(conf.gateway.into()),
            interface: Some(1),
        }],
        routes: vec![Route::new(
            Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0)
                .expect("valid")
                .into(),
            Some(conf.gateway.into()),
        )],
        dns: conf.result_dns(ctx.env.args.pod_namespace.as_deref()),
    }
}

/// The attachment record: what CHECK compares, what DEL and GC remove, what the DNS names.
fn record_of(
    ctx: &Ctx,
    spec: &EndpointSpec,
    pod_link: &LinkInfo,
    datapath: &str,
    json: &serde_json::Value,
) -> Attachment {
    let conf = &ctx.conf;
    Attachment {
        container_id: spec.container_id.clone(),
        ifname: spec.pod_ifname.clone(),
        netns: ctx.env.netns.clone().unwrap_or_default(),
        host_ifname: spec.host_ifname.clone(),
        ip: spec.ip,
        prefix: conf.subnet.prefix(),
        ip6: spec.ip6,
        mac: pod_link.mac_string(),
        pod_namespace: spec.pod_namespace.clone(),
        pod_name: spec.pod_name.clone(),
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
        datapath: datapath.to_string(),
        result: json.clone(),
    }
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr::from)
}
