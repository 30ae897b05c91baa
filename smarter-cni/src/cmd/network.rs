//! The node-wide half of ADD, shared by every pod of the network: the bridge and its
//! address, the sysctls, and the datapath opened with the bridge and the uplink written.
//! The agent makes the same datapath calls ([`Datapath::ensure_network`]) when it starts
//! and whenever the uplink changes.

use ipnetwork::Ipv4Network;

use super::Ctx;
use super::errors::IntoCni as _;
use crate::cni::CniError;
use crate::datapath::{self, Bridge, Datapath};
use crate::naming::bridge_mac;
use crate::netlink::{LinkInfo, Links};

/// The network as a pod's ADD needs it.
pub(super) struct Network {
    /// The bridge.
    pub bridge: LinkInfo,
    /// The datapath serving new pods.
    pub datapath: Box<dyn Datapath>,
    /// The MTU of the bridge and of this ADD's veth.
    pub mtu: u32,
    /// A selected external interface has a global IPv6 address now (`ipv6: auto` gives the
    /// pod IPv6 then: [`super::add6::wants_v6`]).
    pub uplink_v6: bool,
}

/// Ensures the bridge (with the gateway address), forwarding and the reserved NAT ports,
/// then opens the datapath and writes the bridge and the external interfaces as the kernel
/// shows them now ([`datapath::uplink::external`], the agent's decision). Idempotent.
///
/// # Errors
///
/// Netlink (102), sysctl (5) or datapath (103, 107) CNI errors.
pub(super) async fn ensure(ctx: &Ctx, node: &dyn Links) -> Result<Network, CniError> {
    let conf = &ctx.conf;
    let snapshot = node
        .uplink_snapshot(&conf.uplink.names())
        .await
        .into_cni()?;
    let external = datapath::uplink::external(&conf.uplink, &snapshot, &conf.bridge)
        .with_clat(&snapshot, conf.pref64());
    let mtu = if conf.mtu_auto {
        external
            .smallest_mtu()
            .unwrap_or(crate::cni::config::defaults::MTU)
    } else {
        conf.mtu_or_default()
    };
    let mac = bridge_mac(&conf.bridge);
    let bridge = node
        .ensure_bridge(&conf.bridge, mtu, mac)
        .await
        .into_cni()?;
    let gw_net = Ipv4Network::new(conf.gateway, conf.subnet.prefix()).expect("validated prefix");
    node.ensure_address(bridge.index, &conf.bridge, gw_net)
        .await
        .into_cni()?;
    ctx.host.prepare(&conf.bridge, conf.nat_port_range)?;
    if !external.uplinks.iter().any(|u| !u.addr.is_unspecified()) {
        tracing::info!(
            "no uplink with an address ({:?}): pods reach each other and the node only",
            conf.uplink
        );
    }
    let mut datapath = ctx.datapaths.open(conf).into_cni()?.datapath;
    datapath
        .ensure_network(
            Some(Bridge {
                ifindex: bridge.index,
                mac,
            }),
            &external,
        )
        .into_cni()?;
    Ok(Network {
        uplink_v6: super::add6::uplink_has_v6(&external, &snapshot, conf.subnet6),
        bridge,
        datapath,
        mtu,
    })
}
