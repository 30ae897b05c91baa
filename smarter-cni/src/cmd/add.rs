//! ADD: allocate, wire the pod, attach the datapath, record — undoing every step already
//! done when a later one fails, so a failed ADD leaves nothing behind.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::Ctx;
use super::datapath;
use super::errors::IntoCni as _;
use super::network::Network;
use crate::cni::{CniError, CniResult, Interface, IpConfig, MacAddr, Route};
use crate::datapath::{Datapath, EndpointSpec, HostPortSpec};
use crate::ipam::Ipam;
use crate::naming::host_veth_name;
use crate::netlink::{Links, NetnsFile};
use crate::state::{Attachment, StoredPortMapping};

/// A step done, undone on failure.
enum Undo {
    Release,
    DeleteVeth(String),
    Detach(Ipv4Addr, String),
}

/// What a failed ADD must take back, newest first. [`Rollback::unwind`] runs it; a rollback
/// that is committed or unwound has nothing left, and dropping one that is neither (a bug)
/// says so in the log.
struct Rollback<'a> {
    steps: Vec<Undo>,
    ipam: &'a Ipam,
    node: &'a dyn Links,
}

impl<'a> Rollback<'a> {
    fn new(ipam: &'a Ipam, node: &'a dyn Links) -> Self {
        Self {
            steps: Vec::new(),
            ipam,
            node,
        }
    }

    fn push(&mut self, step: Undo) {
        self.steps.push(step);
    }

    /// Success: nothing is undone.
    fn commit(mut self) {
        self.steps.clear();
    }

    /// Undoes every step, newest first; failures are logged and the rest still run.
    async fn unwind(mut self, ctx: &Ctx, datapath: Option<&dyn Datapath>) {
        let (id, ifname) = (
            ctx.env.container_id().unwrap_or(""),
            ctx.env.ifname().unwrap_or(""),
        );
        while let Some(step) = self.steps.pop() {
            let r = match &step {
                Undo::Release => self
                    .ipam
                    .release(id, ifname)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::DeleteVeth(name) => self
                    .node
                    .delete_link(name)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::Detach(ip, host) => datapath
                    .map_or(Ok(()), |dp| dp.detach(*ip, host))
                    .map_err(|e| e.to_string()),
            };
            if let Err(err) = r {
                tracing::error!("rollback step failed: {err}");
            }
        }
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.steps.is_empty() {
            tracing::error!(
                "ADD rollback dropped with {} steps not undone",
                self.steps.len()
            );
        }
    }
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
    let node = ctx.host.node().into_cni()?;
    let node = node.as_ref();

    let mut rollback = Rollback::new(&ipam, node);
    let ip = ipam.allocate(id, ifname, requested).into_cni()?;
    rollback.push(Undo::Release);
    if let Err(e) = ctx.fault("after-ipam") {
        rollback.unwind(ctx, None).await;
        return Err(e);
    }
    // Node-wide first (shared with every pod and the agent), then the pod.
    let net = match super::network::ensure(ctx, node).await {
        Ok(net) => net,
        Err(e) => {
            rollback.unwind(ctx, None).await;
            return Err(e);
        }
    };
    match attach_pod(ctx, node, &netns, &net, ip, &mut rollback).await {
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

/// The pod's half of ADD: its veth on the bridge, its addresses and route, the datapath
/// entries, the record. Every step is registered with `rollback`.
async fn attach_pod(
    ctx: &Ctx,
    node: &dyn Links,
    netns: &NetnsFile,
    net: &Network,
    ip: Ipv4Addr,
    rollback: &mut Rollback<'_>,
) -> Result<serde_json::Value, CniError> {
    let (id, ifname, netns_path) = ctx.env.pod_triplet()?;
    let conf = &ctx.conf;
    let mtu = conf.mtu.unwrap_or(crate::cni::config::DEFAULT_MTU);
    let bridge = &net.bridge;
    let dp = net.datapath.as_ref();

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
    rollback.push(Undo::DeleteVeth(host.clone()));
    let host_link =
        node.link_by_name(&host).await.into_cni()?.ok_or_else(|| {
            CniError::new(CniError::NETLINK, format!("{host} vanished"), "netlink")
        })?;
    ctx.host.prepare_port(&host)?;
    node.attach_to_bridge(host_link.index, &host, bridge.index, conf.hairpin_mode)
        .await
        .into_cni()?;
    ctx.fault("after-veth")?;

    let pod = ctx.host.pod(netns).into_cni()?;
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
    node.add_port_mac(host_link.index, &host, mac)
        .await
        .into_cni()?;
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
    let ports: Vec<HostPortSpec> = conf
        .runtime_config
        .port_mappings
        .iter()
        .map(|p| HostPortSpec {
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: p.protocol.number(),
        })
        .collect();
    dp.attach(&spec, &ports).into_cni()?;
    rollback.push(Undo::Detach(ip, host.clone()));
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
        datapath: dp.kind().name().to_string(),
        result: json.clone(),
    };
    ctx.state()?.save(&record).into_cni()?;
    Ok(json)
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr::from)
}
