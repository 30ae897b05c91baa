//! A contender's worlds for the data-plane workloads and one measurement in them.
//!
//! The main world has the uplink and a LAN with a sensor ([`Topology::Lan`]): every workload
//! but the layer-3 one runs there, so the wan workloads are measured with a second external
//! interface attached, as on a gateway. The layer-3 workload has a world of its own
//! ([`Topology::L3Uplink`]), built only when it is selected: `World::add_l3_uplink` moves the
//! node's default route to `wwan0`, which would send the wan workloads through the relay too.
//! The CLAT workloads have one too ([`ClatWorld`], built when they are selected): its uplink is
//! IPv6-only. So do the NAT66 workloads ([`Nat6World`]: the uplink dual-stack), whose world
//! is kept per contender even when it cannot be built (a smarter-cni whose ADD gives no IPv6):
//! that contender's NAT66 workloads then fail with the reason, the other contenders go on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use smarter_testbed::{LAN_HOST_IP, LAN_NODE_IP, NODE_L3_IP, NODE_UPLINK_IP, WAN_SERVER_IP};

use super::clat::ClatWorld;
use super::id::WorkloadId;
use super::nat6::Nat6World;
use super::sample::Sample;
use crate::contender::{Contender, Kind, POD_PORT, Topology};
use crate::error::At;
use crate::load::{RrServer, crr, iperf3, rr, udp};
use crate::profile::Profile;

/// MTU of the layer-3 uplink (a raw-IP cellular modem's).
pub const L3_MTU: u32 = 1428;
/// Port of the pod-to-pod request/response server (pod 1).
const POD_RR_PORT: u16 = 7000;
/// Port of the wan's request/response server.
const WAN_RR_PORT: u16 = 7001;
/// Port of the LAN host's request/response server.
const LAN_RR_PORT: u16 = 7002;

/// The request/response servers of the main world.
struct Servers {
    /// Pod 1 (pod→pod).
    _pod: RrServer,
    /// Pod 0, behind its hostPort.
    _host_port: RrServer,
    /// The wan's.
    wan: RrServer,
    /// The LAN host's.
    lan: Option<RrServer>,
}

/// One contender's worlds; field order is drop order (the servers stop before the worlds go).
pub struct Arena {
    servers: Servers,
    /// Uplink and LAN, two pods: every workload but the layer-3 one.
    pub main: Contender,
    /// The layer-3 uplink carrying the default route, one pod (when a workload needs it).
    pub l3: Option<Contender>,
    /// The IPv6-only uplink with the wan's NAT64, one pod (when a CLAT workload is selected
    /// and the contender measures it).
    pub clat: Option<ClatWorld>,
    /// The dual-stack uplink, one pod (when a NAT66 workload is selected), or why it could not
    /// be built.
    pub nat6: Option<Result<Nat6World, String>>,
}

impl Arena {
    /// Builds `kind`'s worlds for `profile`: the main one with its servers, the layer-3 one if
    /// `with_l3`, the CLAT one if `with_clat`, the NAT66 one if `with_nat6` (its failure is
    /// kept, not returned).
    ///
    /// # Errors
    ///
    /// When a world, a pod or the profile's set-up fails (with [`At`] context).
    pub fn build(
        kind: Kind,
        plugin: &std::path::Path,
        profile: Profile,
        with_l3: bool,
        with_clat: bool,
        with_nat6: bool,
    ) -> anyhow::Result<Self> {
        let at = At::new(kind.name(), "build the world");
        let mut main = Contender::build(kind, plugin, Topology::Lan).context(at.clone())?;
        main.add_pod().context(at.clone())?;
        main.add_pod().context(at.clone())?;
        profile
            .apply(&main.world, &[main.ns(0), main.ns(1)])
            .context(at)?;
        let l3 = if with_l3 {
            let at = At::new(kind.name(), "build the layer-3 uplink's world");
            let mut c =
                Contender::build(kind, plugin, Topology::L3Uplink(L3_MTU)).context(at.clone())?;
            c.add_pod().context(at.clone())?;
            profile.apply(&c.world, &[c.ns(0)]).context(at)?;
            Some(c)
        } else {
            None
        };
        let servers = Servers {
            _pod: RrServer::start(main.ns(1), Ipv4Addr::UNSPECIFIED, POD_RR_PORT),
            _host_port: RrServer::start(main.ns(0), Ipv4Addr::UNSPECIFIED, POD_PORT),
            wan: RrServer::start(main.world.wan(), WAN_SERVER_IP, WAN_RR_PORT),
            lan: main
                .world
                .lan()
                .map(|lan| RrServer::start(lan, LAN_HOST_IP, LAN_RR_PORT)),
        };
        let clat = if with_clat {
            Some(ClatWorld::build(kind, plugin, profile)?)
        } else {
            None
        };
        let nat6 = with_nat6
            .then(|| Nat6World::build(kind, plugin, profile).map_err(|e| format!("{e:#}")));
        Ok(Self {
            servers,
            main,
            l3,
            clat,
            nat6,
        })
    }

    /// Measures `w` for `secs` (`port`: a fresh port for iperf3 and the UDP sink).
    ///
    /// # Errors
    ///
    /// When the load fails (nothing answers, nothing arrives), a NAT workload's traffic
    /// arrived from another source than the node's address on the interface it left by (the
    /// limit: the pod's own), or the layer-3 workload's datagrams did not all pass the relay.
    pub fn measure(&self, w: WorkloadId, secs: f64, port: u16) -> anyhow::Result<Sample> {
        let c = &self.main;
        let wan = SocketAddr::from((WAN_SERVER_IP, WAN_RR_PORT));
        let whole = secs.ceil().max(1.0);
        let stream = |value| Sample::plain(value, whole);
        Ok(match w {
            WorkloadId::StreamPod => stream(iperf3(c.ns(0), c.ns(1), c.peer_ip(), port, secs)?),
            WorkloadId::StreamNat => {
                stream(iperf3(c.ns(0), c.world.wan(), WAN_SERVER_IP, port, secs)?)
            }
            WorkloadId::RrPod => Sample::rate(
                rr(c.ns(0), SocketAddr::from((c.peer_ip(), POD_RR_PORT)), secs)?,
                secs,
            ),
            WorkloadId::CrrNat => {
                let r = crr(c.ns(0), wan, secs)?;
                nat_source(c, self.servers.wan.last_peer(), NODE_UPLINK_IP)?;
                Sample::rate(r, secs)
            }
            WorkloadId::UdpNat => {
                let to = SocketAddr::from((WAN_SERVER_IP, port));
                let got = udp(c.ns(0), c.world.wan(), to, secs)?;
                nat_source(c, got.source4(), NODE_UPLINK_IP)?;
                Sample::plain(got.per_s, secs)
            }
            WorkloadId::RrHostPort => {
                Sample::rate(rr(c.world.wan(), c.host_port_target(0), secs)?, secs)
            }
            WorkloadId::RrLan => {
                let r = rr(c.ns(0), SocketAddr::from((LAN_HOST_IP, LAN_RR_PORT)), secs)?;
                let server = self.servers.lan.as_ref().context("no LAN server")?;
                nat_source(c, server.last_peer(), LAN_NODE_IP)?;
                Sample::rate(r, secs)
            }
            WorkloadId::RrLanHostPort => {
                let lan = c.world.lan().context("the main world has no LAN")?;
                Sample::rate(rr(lan, c.host_port_on(LAN_NODE_IP, 0), secs)?, secs)
            }
            WorkloadId::UdpL3 => self.udp_l3(secs, port)?,
            WorkloadId::UdpClat | WorkloadId::RrClat => self
                .clat
                .as_ref()
                .context("the CLAT world was not built")?
                .measure(w, secs, port)?,
            WorkloadId::UdpNat6 | WorkloadId::RrNat6 | WorkloadId::StreamNat6 => match &self.nat6 {
                Some(Ok(world)) => world.measure(w, secs, port)?,
                Some(Err(e)) => anyhow::bail!("the NAT66 world could not be built: {e}"),
                None => anyhow::bail!("the NAT66 world was not built"),
            },
        })
    }

    /// UDP from pod 0 of the layer-3 world to the wan, checked to have gone through the
    /// relay (every datagram the sink got was copied node → wan by it).
    fn udp_l3(&self, secs: f64, port: u16) -> anyhow::Result<Sample> {
        let c = self
            .l3
            .as_ref()
            .context("the layer-3 uplink's world was not built")?;
        let relay = c
            .world
            .l3_relay()
            .context("the layer-3 world has no relay")?;
        let before = relay.counts().a_to_b.load(Ordering::Relaxed);
        let got = udp(
            c.ns(0),
            c.world.wan(),
            SocketAddr::from((WAN_SERVER_IP, port)),
            secs,
        )?;
        let relayed = relay.counts().a_to_b.load(Ordering::Relaxed) - before;
        nat_source(c, got.source4(), NODE_L3_IP)?;
        anyhow::ensure!(
            relayed >= got.received,
            "the wan received {} datagrams but the wwan0 relay copied only {relayed}: the \
             traffic did not take the layer-3 uplink",
            got.received
        );
        Ok(Sample::plain(got.per_s, secs))
    }
}

/// Checks that pod 0 of `c` arrived as `seen`: as `node_ip`, the node's address on the
/// interface its traffic left by (the limit, which does not NAT: as the pod itself). A figure
/// of a path that did not translate is not the workload's figure.
fn nat_source(c: &Contender, seen: Option<Ipv4Addr>, node_ip: Ipv4Addr) -> anyhow::Result<()> {
    let want = match c.kind {
        Kind::Limit => c.pods[0].ip,
        _ => node_ip,
    };
    anyhow::ensure!(
        seen == Some(want),
        "the far side saw pod 0 as {}, not as {want}",
        seen.map_or_else(|| "nothing".to_string(), |a| a.to_string())
    );
    Ok(())
}
