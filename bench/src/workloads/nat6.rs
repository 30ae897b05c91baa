//! The NAT66 workloads' world of one contender ([`Topology::Dual`]: the uplink dual-stack, one
//! pod) and their measurements: UDP datagrams, TCP request/response and an iperf3 TCP stream
//! from the pod to the wan's IPv6 server. Every figure is checked to be what it claims: for the NAT contenders the
//! server saw the pod as the node's global address [`NODE_DUAL_IP6`] (so it was NATed on the
//! node), for the limit as the pod's own global address (routed, not NATed); for smarter-ebpf
//! the eBPF datapath's verdict counter of NATed traffic ([`NAT_OUT`], which counts both
//! families: nothing in this world sends IPv4 while a workload runs) also grew by at least the
//! datagrams or transactions, or, for the stream, by at least one packet per 64 KiB received
//! (no TSO super-packet is larger): the traffic took the eBPF datapath, not the kernel's. What
//! was checked is kept with the figure ([`Sample::path`]).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use smarter_cni::datapath::Datapath;
use smarter_testbed::{NODE_DUAL_IP6, UPLINK, WAN_SERVER_IP6};

use super::clat::open_ebpf;
use super::id::WorkloadId;
use super::sample::Sample;
use crate::contender::{Contender, Kind, Topology};
use crate::error::At;
use crate::load::{RrServer, iperf3_stream, rr, udp_via};
use crate::profile::Profile;

/// Port of the wan's request/response server in the NAT66 world.
const RR_PORT: u16 = 7004;
/// The most bytes one TSO super-packet carries: a stream's bytes need at least this many
/// packets' worth of NAT66 verdicts.
const GSO_MAX: u64 = 65_536;
/// The eBPF datapath's verdict counter of pods' traffic NATed out of the node (`Verdict::NatOut`,
/// both families). Nothing in the NAT66 world sends IPv4 while a workload runs, so its growth
/// is the NAT66's.
pub const NAT_OUT: &str = "nat_out";

/// One contender's NAT66 world; field order is drop order (the server stops before the world
/// goes, the pins close before it).
pub struct Nat6World {
    server: RrServer,
    /// smarter-ebpf's datapath, opened from its pins (its counters).
    ebpf: Option<Box<dyn Datapath>>,
    /// Pod 0's IPv6 address (the NAT contenders' ULA, the limit's global one).
    pod6: Ipv6Addr,
    /// The contender, one pod.
    pub c: Contender,
}

impl Nat6World {
    /// Builds `kind`'s NAT66 world for `profile`, with its pod and the wan's server, and
    /// checks it before anything is measured: pod 0 got an IPv6 address and reaches the wan's
    /// IPv6 server (a ping, retried for a few seconds: the pods' addresses may still be
    /// tentative).
    ///
    /// # Errors
    ///
    /// When the world, the pod, the profile's set-up or a check fails; when the ADD result
    /// gave the pod no IPv6 address (a smarter-cni without the IPv6 datapath).
    pub fn build(kind: Kind, plugin: &std::path::Path, profile: Profile) -> anyhow::Result<Self> {
        let at = At::new(kind.name(), "build the NAT66 world");
        let mut c = Contender::build(kind, plugin, Topology::Dual).context(at.clone())?;
        c.add_pod().context(at.clone())?;
        let pod6 = c.pods[0]
            .ip6
            .with_context(|| {
                format!(
                    "the ADD result gave pod 0 no IPv6 address (IPv4 {} only) on a node with \
                     the global IPv6 address {NODE_DUAL_IP6} on {UPLINK}: no IPv6 datapath",
                    c.pods[0].ip
                )
            })
            .context(at.clone())?;
        profile.apply(&c.world, &[c.ns(0)]).context(at.clone())?;
        let ebpf = if kind == Kind::SmarterEbpf {
            Some(open_ebpf(&c.world).context(at.clone())?)
        } else {
            None
        };
        round_trip(&c).context(at)?;
        let server = RrServer::start(c.world.wan(), WAN_SERVER_IP6, RR_PORT);
        Ok(Self {
            server,
            ebpf,
            pod6,
            c,
        })
    }

    /// Measures the NAT66 workload `w` for `secs` (`port`: a fresh port for the UDP sink).
    ///
    /// # Errors
    ///
    /// When the load fails, or the figure is not what it claims (see the module docs).
    pub fn measure(&self, w: WorkloadId, secs: f64, port: u16) -> anyhow::Result<Sample> {
        let before = self.nat_out6()?;
        Ok(match w {
            WorkloadId::UdpNat6 => {
                let sink = SocketAddr::from((WAN_SERVER_IP6, port));
                let got = udp_via(self.c.ns(0), self.c.world.wan(), sink, sink, secs)?;
                let path = self.check(got.source, (got.received, "datagrams"), before)?;
                Sample {
                    value: got.per_s,
                    latency: None,
                    secs,
                    path: Some(path),
                }
            }
            WorkloadId::StreamNat6 => {
                let (c, wan) = (&self.c, self.c.world.wan());
                let got = iperf3_stream(c.ns(0), wan, WAN_SERVER_IP6.into(), port, secs)?;
                let least = got.bytes.div_ceil(GSO_MAX);
                let path = self.check(got.peer, (least, "64 KiB segments received"), before)?;
                Sample {
                    value: got.gbps,
                    latency: None,
                    secs: secs.ceil().max(1.0),
                    path: Some(path),
                }
            }
            WorkloadId::RrNat6 => {
                let r = rr(
                    self.c.ns(0),
                    SocketAddr::from((WAN_SERVER_IP6, RR_PORT)),
                    secs,
                )?;
                // `rr` counts transactions over at least `secs`.
                let done = (r.per_s * secs).floor() as u64;
                let path =
                    self.check(self.server.last_peer_ip(), (done, "transactions"), before)?;
                Sample {
                    value: r.per_s,
                    latency: Some((r.p50_us, r.p99_us)),
                    secs,
                    path: Some(path),
                }
            }
            other => anyhow::bail!("{} is not a NAT66 workload", other.id()),
        })
    }

    /// smarter-ebpf's NAT count so far ([`NAT_OUT`]; 0 for the others).
    fn nat_out6(&self) -> anyhow::Result<u64> {
        if self.c.kind != Kind::SmarterEbpf {
            return Ok(0);
        }
        let dp = self.ebpf.as_ref().context("smarter-ebpf's pins not open")?;
        Ok(dp
            .counters()?
            .iter()
            .filter(|(n, _, _)| n == NAT_OUT)
            .map(|(_, packets, _)| packets)
            .sum())
    }

    /// Checks that what pod 0 came as (`seen`) is the node's global address (the limit: the
    /// pod's own) and, for smarter-ebpf, that its NAT counter counted at least `done.0`
    /// packets (`done.1` says of what) since `before`; returns what was checked, in words.
    fn check(
        &self,
        seen: Option<IpAddr>,
        done: (u64, &str),
        before: u64,
    ) -> anyhow::Result<String> {
        let (done, what) = done;
        let want = match self.c.kind {
            Kind::Limit => self.pod6,
            _ => NODE_DUAL_IP6,
        };
        let seen_text = seen.map_or_else(|| "nothing".to_string(), |a| a.to_string());
        anyhow::ensure!(
            seen == Some(IpAddr::V6(want)),
            "the wan's server saw pod 0 ({}) as {seen_text}, not as {want}{}",
            self.pod6,
            if self.c.kind == Kind::Limit {
                " (the limit routes, it does not NAT)"
            } else {
                ": the traffic was not NATed to the node's global address"
            }
        );
        let (pod, server) = (self.pod6, WAN_SERVER_IP6);
        Ok(match self.c.kind {
            Kind::Reference => format!(
                "reference chain: bridge with an IPv6 range, ipMasq (ip6tables masquerade); pod \
                 {pod} → {server}, the server saw {seen_text} (the node's global address)"
            ),
            Kind::SmarterIptables => format!(
                "smarter-cni's nftables datapath (ipv6: auto), NAT66; pod {pod} → {server}, the \
                 server saw {seen_text} (the node's global address)"
            ),
            Kind::SmarterEbpf => {
                let out = self.nat_out6()? - before;
                let counter = NAT_OUT;
                anyhow::ensure!(
                    out >= done,
                    "smarter-ebpf's {counter} counted {out} packets for {done} {what}: the \
                     traffic did not take its NAT66"
                );
                format!(
                    "smarter-ebpf's NAT66 (ipv6: auto): {counter} +{out} packets for {done} \
                     {what}; pod {pod} → {server}, the server saw {seen_text} (the node's \
                     global address)"
                )
            }
            Kind::Limit => format!(
                "native IPv6 from the pod ({pod} → {server}), routed, no NAT on the node; the \
                 server saw {seen_text} (the pod itself)"
            ),
        })
    }
}

/// Pod 0 pings the wan's IPv6 server until it answers, for up to 10 s (duplicate address
/// detection of the pod's address and its gateway's may still be running).
fn round_trip(c: &Contender) -> anyhow::Result<()> {
    let to = WAN_SERVER_IP6.to_string();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if c.ns(0).succeeds(&["ping", "-6", "-c", "1", "-W", "1", &to]) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("pod 0 gets no answer from {to} through the dual-stack uplink")
}
