//! Choosing and driving the datapath of an attachment: eBPF or nftables behind one small
//! enum, so the verbs never care which one serves a pod.
//!
//! ADD picks the datapath from the configuration (`auto`: eBPF unless it cannot run here —
//! no bpf file system for `bpffsDir`, no bpf(2) permission, the kernel refusing the programs —
//! then nftables, saying why) and records its name in the attachment record;
//! DEL, CHECK and GC use the recorded one, so switching `datapath` in the conflist never
//! strands a pod. When the last pod of the other datapath is gone, its rules or pins are
//! removed ([`retire_unused`]): checked on every ADD, and on every DEL and GC once their
//! records are gone ([`retire_unused_now`]), so a node that served pods on both keeps no
//! stale tables or pins while pods of the configured datapath run on.

use std::net::Ipv4Addr;

use super::Ctx;
use super::errors::IntoCni as _;
use crate::cni::{CniError, PortMapping, Uplink as UplinkConf};
use crate::datapath::iptables::{NftConfig, NftDatapath, NftEndpoint, NftHostPort};
use crate::datapath::{
    ChoiceReason, CtTimeouts, DatapathChoice, DatapathKind, EbpfDatapath, EndpointSpec,
    HostPortSpec, Uplink,
};
use crate::netlink::Netlink;

/// Recorded name of the eBPF datapath.
pub(super) const EBPF: &str = "ebpf";
/// Recorded name of the nftables datapath (the configuration calls it `iptables`).
pub(super) const NFT: &str = "iptables";

/// The datapath serving an attachment.
pub(super) enum Active {
    /// TC eBPF programs and pinned maps.
    Ebpf(Box<EbpfDatapath>),
    /// Per-network nftables tables with per-pod set elements.
    Nft(NftDatapath),
}

impl Active {
    /// `ebpf` or `iptables`, as recorded in the attachment record.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Active::Ebpf(_) => EBPF,
            Active::Nft(_) => NFT,
        }
    }

    /// Makes the pod known to the datapath, with its hostPorts. All or nothing.
    pub(super) fn attach(
        &self,
        ctx: &Ctx,
        spec: &EndpointSpec,
        ports: &[PortMapping],
    ) -> Result<(), CniError> {
        match self {
            Active::Ebpf(dp) => {
                dp.attach_endpoint(spec, ctx.attach_mode()).into_cni()?;
                let specs: Vec<HostPortSpec> = ports
                    .iter()
                    .map(|p| HostPortSpec {
                        host_port: p.host_port,
                        container_port: p.container_port,
                        protocol: p.protocol.number(),
                    })
                    .collect();
                if let Err(e) = dp.set_host_ports(spec.ip, &specs) {
                    if let Err(undo) = dp.detach_endpoint(spec.ip, &spec.host_ifname) {
                        tracing::error!("rollback of {}: {undo}", spec.ip);
                    }
                    return Err(e).into_cni();
                }
                Ok(())
            }
            Active::Nft(dp) => {
                let ep = NftEndpoint {
                    ip: spec.ip,
                    mac: spec.mac,
                    host_ifname: spec.host_ifname.clone(),
                };
                let ports: Vec<NftHostPort> = ports
                    .iter()
                    .map(|p| NftHostPort {
                        host_port: p.host_port,
                        container_port: p.container_port,
                        protocol: p.protocol.number(),
                    })
                    .collect();
                dp.attach_endpoint(&ep, &ports).into_cni()
            }
        }
    }

    /// Forgets the pod: endpoint entries, hostPorts, its conntrack entries. Success when
    /// already gone.
    pub(super) fn detach(&self, ip: Ipv4Addr, host_ifname: &str) -> Result<(), String> {
        match self {
            Active::Ebpf(dp) => dp
                .detach_endpoint(ip, host_ifname)
                .map_err(|e| e.to_string()),
            Active::Nft(dp) => dp
                .detach_endpoint(ip, host_ifname)
                .map_err(|e| e.to_string()),
        }
    }

    /// What differs from what ADD set up for this pod.
    pub(super) fn check(&self, spec: &EndpointSpec) -> Result<Vec<String>, CniError> {
        match self {
            Active::Ebpf(dp) => dp.check_endpoint(spec).into_cni(),
            Active::Nft(dp) => dp
                .check_endpoint(&NftEndpoint {
                    ip: spec.ip,
                    mac: spec.mac,
                    host_ifname: spec.host_ifname.clone(),
                })
                .into_cni(),
        }
    }

    /// The pods this datapath knows, as (address, host veth name).
    pub(super) fn endpoints(&self) -> Result<Vec<(Ipv4Addr, String)>, CniError> {
        Ok(match self {
            Active::Ebpf(dp) => dp
                .endpoints()
                .into_cni()?
                .into_iter()
                .map(|e| (e.ip, e.host_ifname))
                .collect(),
            Active::Nft(dp) => dp
                .endpoints()
                .into_cni()?
                .into_iter()
                .map(|e| (e.ip, e.host_ifname))
                .collect(),
        })
    }
}

/// The node's uplink as the configuration selects it (`auto`: the default route's
/// interface), or `None` when there is none yet (pods still reach each other and the node).
/// An uplink without an IPv4 address has address 0.0.0.0: nothing is NATed until it gets one.
///
/// # Errors
///
/// A netlink CNI error when the links, routes or addresses cannot be read.
pub(super) async fn resolve_uplink(
    ctx: &Ctx,
    node: &Netlink,
) -> Result<Option<(Uplink, Vec<Ipv4Addr>)>, CniError> {
    let link = match &ctx.conf.uplink {
        UplinkConf::Named(name) => node.link_by_name(name).await.into_cni()?,
        UplinkConf::Auto => match node.default_route().await.into_cni()?.and_then(|r| r.oif) {
            Some(oif) => node
                .links()
                .await
                .into_cni()?
                .into_iter()
                .find(|l| l.index == oif),
            None => None,
        },
    };
    let Some(link) = link else {
        tracing::info!(
            "no uplink ({:?}): pods reach each other and the node only",
            ctx.conf.uplink
        );
        return Ok(None);
    };
    let addrs: Vec<Ipv4Addr> = node
        .ipv4_addresses(link.index)
        .await
        .into_cni()?
        .iter()
        .map(|n| n.ip())
        .collect();
    let up = Uplink {
        ifindex: link.index,
        name: link.name.clone(),
        addr: addrs.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
        mac: <[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or_default(),
    };
    Ok(Some((up, addrs)))
}

/// The datapath this invocation should use before anything is opened: as configured, or for
/// `auto` eBPF unless there is no bpf file system for `bpffsDir` (a missing pin root whose
/// parent is bpffs counts as usable: it is created) or no permission to use bpf(2).
pub(super) fn select(ctx: &Ctx) -> DatapathChoice {
    DatapathChoice::select(ctx.conf.datapath, &ctx.conf.bpffs_dir)
}

/// Opens (loading or creating as needed) the datapath the configuration asks for, with the
/// bridge, NAT settings, deny list and current uplink applied. With `datapath: auto` a load
/// that fails for a reason making eBPF unusable (no permission, the kernel refusing the
/// programs) falls back to nftables; the choice and its reason are logged and recorded in
/// `<stateDir>/<network>/datapath.choice`.
///
/// # Errors
///
/// The datapath's CNI error (103 eBPF, 107 nftables).
pub(super) fn open_for_add(
    ctx: &Ctx,
    uplink: Option<&(Uplink, Vec<Ipv4Addr>)>,
    bridge: (u32, [u8; 6]),
) -> Result<Active, CniError> {
    let conf = &ctx.conf;
    let mut choice = select(ctx);
    let mut active = None;
    if choice.datapath == DatapathKind::Ebpf {
        match EbpfDatapath::open_or_load(
            &conf.bpffs_dir,
            &conf.name,
            &ctx.lock_dir(),
            &ctx.datapath_config(),
        ) {
            Ok(dp) => active = Some(dp),
            Err(e) => match choice.after_failure(&e) {
                Some(fallback) => choice = fallback,
                None => return Err(e).into_cni(),
            },
        }
    }
    report_choice(ctx, &choice);
    if let Some(dp) = active {
        dp.set_bridge(bridge.0, bridge.1).into_cni()?;
        dp.set_nat(
            (conf.nat_port_range.start, conf.nat_port_range.end),
            &CtTimeouts::from(conf.ct_timeouts),
        )
        .into_cni()?;
        dp.set_deny(&conf.deny_cidrs).into_cni()?;
        refresh_uplink(ctx, &dp, uplink)?;
        dp.attach_local(ctx.attach_mode()).into_cni()?;
        Ok(Active::Ebpf(Box::new(dp)))
    } else {
        let name = uplink.map(|(u, _)| u.name.clone());
        let dp = NftDatapath::ensure(&ctx.nft_config(name)).into_cni()?;
        Ok(Active::Nft(dp))
    }
}

/// Logs the datapath choice (a fallback as a warning naming the reason) and records it for
/// `smarter-bpfctl status` (best effort).
fn report_choice(ctx: &Ctx, choice: &DatapathChoice) {
    match &choice.reason {
        ChoiceReason::Unavailable(u) => {
            tracing::warn!(
                reason = choice.reason_label(),
                "datapath auto: eBPF unavailable ({u}); using nftables"
            );
        }
        _ => tracing::debug!("datapath {choice}"),
    }
    let stored = ctx.state().map_err(|e| e.msg).and_then(|_| {
        choice
            .store(&ctx.conf.state_dir, &ctx.conf.name)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = stored {
        tracing::debug!("cannot record the datapath choice: {e}");
    }
}

/// Records and attaches the uplink unless what is recorded is still true: the agent follows
/// the uplink (and picks the route's preferred source among several addresses), so the plugin
/// only fills the gap when there is no agent: nothing recorded, another interface, or an
/// address the interface no longer has.
fn refresh_uplink(
    ctx: &Ctx,
    dp: &EbpfDatapath,
    uplink: Option<&(Uplink, Vec<Ipv4Addr>)>,
) -> Result<(), CniError> {
    let current = dp.config().into_cni()?;
    let Some((up, addrs)) = uplink else {
        if current.uplink_ifindex != 0 {
            tracing::info!("no uplink any more: NAT paused");
            dp.set_uplink(None).into_cni()?;
        }
        return Ok(());
    };
    let recorded = Ipv4Addr::from(current.uplink_addr.to_ne_bytes());
    let still_true = current.uplink_ifindex == up.ifindex && addrs.contains(&recorded);
    if !still_true {
        dp.set_uplink(Some(up)).into_cni()?;
    }
    dp.attach_uplink(up, ctx.attach_mode()).into_cni()
}

/// Opens the recorded datapath of an attachment without creating anything (DEL, CHECK, GC).
/// `Ok(None)` when it is gone (nothing left to detach).
///
/// # Errors
///
/// The datapath's CNI error when its state cannot be read.
pub(super) fn open_existing(ctx: &Ctx, name: &str) -> Result<Option<Active>, CniError> {
    if name == NFT {
        Ok(NftDatapath::open(&ctx.conf.name)
            .into_cni()?
            .map(Active::Nft))
    } else {
        Ok(
            EbpfDatapath::open_existing(&ctx.conf.bpffs_dir, &ctx.conf.name)
                .into_cni()?
                .map(|dp| Active::Ebpf(Box::new(dp))),
        )
    }
}

/// Both datapaths that exist for this network (GC sweeps both).
///
/// # Errors
///
/// As [`open_existing`].
pub(super) fn open_all(ctx: &Ctx) -> Result<Vec<Active>, CniError> {
    let mut all = Vec::new();
    for name in [EBPF, NFT] {
        if name == NFT && NftDatapath::available().is_err() {
            continue;
        }
        all.extend(open_existing(ctx, name)?);
    }
    Ok(all)
}

/// Switching datapaths: once no attachment of this network uses the datapath other than
/// `now`, remove its rules or pins so nothing stale is left. Best effort (logged).
pub(super) fn retire_unused(ctx: &Ctx, now: &str) {
    let others_in_use = ctx
        .state()
        .and_then(|s| s.list().into_cni())
        .map(|records| records.iter().any(|r| r.datapath != now))
        .unwrap_or(true);
    if others_in_use {
        return;
    }
    let res = if now == EBPF {
        match NftDatapath::open(&ctx.conf.name) {
            Ok(Some(_)) => {
                tracing::info!("retiring the unused nftables datapath of {}", ctx.conf.name);
                NftDatapath::remove(&ctx.conf.name).map_err(|e| e.to_string())
            }
            Ok(None) => Ok(()),
            // No nft binary: there cannot be tables of ours to remove.
            Err(_) => Ok(()),
        }
    } else {
        match EbpfDatapath::open_existing(&ctx.conf.bpffs_dir, &ctx.conf.name) {
            Ok(Some(dp)) => {
                tracing::info!("retiring the unused eBPF datapath of {}", ctx.conf.name);
                // Netlink filters outlive pins: take the uplink program off explicitly.
                dp.detach_uplink()
                    .and_then(|()| dp.detach_local())
                    .and_then(|()| {
                        crate::datapath::remove_network_pins(&ctx.conf.bpffs_dir, &ctx.conf.name)
                    })
                    .map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    };
    if let Err(e) = res {
        tracing::warn!("cannot retire the unused datapath: {e}");
    }
}

/// [`retire_unused`] for the datapath this configuration serves new pods with (DEL, GC):
/// the other one goes as soon as its last attachment is gone, not only at the next ADD.
pub(super) fn retire_unused_now(ctx: &Ctx) {
    let now = match select(ctx).datapath {
        DatapathKind::Ebpf => EBPF,
        DatapathKind::Nftables => NFT,
    };
    retire_unused(ctx, now);
}

impl Ctx {
    /// The nftables settings of this network.
    #[must_use]
    pub fn nft_config(&self, uplink: Option<String>) -> NftConfig {
        NftConfig {
            network: self.conf.name.clone(),
            bridge: self.conf.bridge.clone(),
            subnet: self.conf.subnet,
            gateway: self.conf.gateway,
            uplink,
            deny: self.conf.deny_cidrs.clone(),
            nat_ports: (self.conf.nat_port_range.start, self.conf.nat_port_range.end),
        }
    }
}
