//! The CLAT workloads' world of one contender ([`Topology::Nat64`]: the uplink IPv6-only, the
//! wan's tayga as NAT64, one pod) and their measurements: UDP and TCP request/response from
//! the pod to the wan's IPv4 server. Every figure is checked to be the CLAT's: the server saw
//! the pod as an address of the NAT64's pool (so the traffic crossed the uplink as IPv6 and
//! the wan translated it), and the contender's translator on the node carried at least every
//! datagram or transaction — smarter-ebpf's `clat_out` counter, with the CLAT on the uplink's
//! `bpfctl status` row; the node's tayga's TUN device. What was checked is kept with the
//! figure ([`Sample::path`]).

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use smarter_cni::datapath::{Datapath, DatapathKind, open_existing};
use smarter_testbed::nat64::{NAT64_POOL, NAT64_POOL_LEN};
use smarter_testbed::{UPLINK, WAN_SERVER_IP, World};

use super::id::WorkloadId;
use super::sample::Sample;
use crate::contender::nat64::{CLAT_IF, CLAT_IP4, CLAT_IP6, PREF64, in_pref64, limit_pod_ip6};
use crate::contender::{Contender, Kind, Topology};
use crate::error::At;
use crate::load::{RrServer, rr, udp_via};
use crate::profile::Profile;

/// Port of the wan's request/response server in the CLAT world.
const RR_PORT: u16 = 7003;

/// One contender's CLAT world; field order is drop order (the server stops before the world
/// goes, the pins close before it).
pub struct ClatWorld {
    server: RrServer,
    /// smarter-ebpf's datapath, opened from its pins (its counters).
    ebpf: Option<Box<dyn Datapath>>,
    /// smarter-ebpf: the CLAT of the uplink's status row (`<address> -> <prefix>/96`).
    clat_row: Option<String>,
    /// The contender, one pod.
    pub c: Contender,
}

impl ClatWorld {
    /// Builds `kind`'s CLAT world for `profile`, with its pod and the wan's server, and checks
    /// it before anything is measured: smarter-ebpf's uplink has the CLAT on, and pod 0
    /// reaches the wan's IPv4 server (a ping, retried for a few seconds).
    ///
    /// # Errors
    ///
    /// When the world, the pod, the profile's set-up, tayga on the node, or a check fails.
    pub fn build(kind: Kind, plugin: &std::path::Path, profile: Profile) -> anyhow::Result<Self> {
        let at = At::new(kind.name(), "build the CLAT world");
        let mut c = Contender::build(kind, plugin, Topology::Nat64).context(at.clone())?;
        c.add_pod().context(at.clone())?;
        profile.apply(&c.world, &[c.ns(0)]).context(at.clone())?;
        let (ebpf, clat_row) = if kind == Kind::SmarterEbpf {
            let row = clat_of_uplink(&c.world).context(at.clone())?;
            (Some(open_ebpf(&c.world).context(at.clone())?), Some(row))
        } else {
            (None, None)
        };
        round_trip(&c).context(at)?;
        let server = RrServer::start(c.world.wan(), WAN_SERVER_IP, RR_PORT);
        Ok(Self {
            server,
            ebpf,
            clat_row,
            c,
        })
    }

    /// Measures the CLAT workload `w` for `secs` (`port`: a fresh port for the UDP sink).
    ///
    /// # Errors
    ///
    /// When the load fails, or the figure is not the CLAT's (see the module docs).
    pub fn measure(&self, w: WorkloadId, secs: f64, port: u16) -> anyhow::Result<Sample> {
        let limit = self.c.kind == Kind::Limit;
        // The limit's pod speaks IPv6 itself, to the server's address in the NAT64 prefix.
        let dest = |port| {
            if limit {
                SocketAddr::from((in_pref64(WAN_SERVER_IP), port))
            } else {
                SocketAddr::from((WAN_SERVER_IP, port))
            }
        };
        let before = self.translated()?;
        Ok(match w {
            WorkloadId::UdpClat => {
                let sink = SocketAddr::from((WAN_SERVER_IP, port));
                let got = udp_via(self.c.ns(0), self.c.world.wan(), sink, dest(port), secs)?;
                let path = self.check(got.source4(), got.received, before)?;
                Sample {
                    value: got.per_s,
                    latency: None,
                    secs,
                    path: Some(path),
                }
            }
            WorkloadId::RrClat => {
                let r = rr(self.c.ns(0), dest(RR_PORT), secs)?;
                // `rr` counts transactions over at least `secs`.
                let done = (r.per_s * secs).floor() as u64;
                let path = self.check(self.server.last_peer(), done, before)?;
                Sample {
                    value: r.per_s,
                    latency: Some((r.p50_us, r.p99_us)),
                    secs,
                    path: Some(path),
                }
            }
            other => anyhow::bail!("{} is not a CLAT workload", other.id()),
        })
    }

    /// Packets the contender's translator on the node has handled so far: smarter-ebpf's
    /// `clat_out` and `clat_in` counters, the packets into the node's tayga; `(0, 0)` for the
    /// limit, which translates nothing on the node.
    fn translated(&self) -> anyhow::Result<(u64, u64)> {
        match self.c.kind {
            Kind::SmarterEbpf => {
                let dp = self.ebpf.as_ref().context("smarter-ebpf's pins not open")?;
                let counters = dp.counters()?;
                let count = |name: &str| {
                    counters
                        .iter()
                        .filter(|(n, _, _)| n == name)
                        .map(|(_, packets, _)| packets)
                        .sum::<u64>()
                };
                Ok((count("clat_out"), count("clat_in")))
            }
            Kind::Reference => {
                let tayga = self.c.node_clat.as_ref().context("no tayga on the node")?;
                Ok((tayga.packets_in(self.c.world.node())?, 0))
            }
            Kind::SmarterIptables | Kind::Limit => Ok((0, 0)),
        }
    }

    /// Checks that what `done` datagrams or transactions of pod 0 came as (`seen`) is an
    /// address of the NAT64's pool and that the node's translator carried at least `done`
    /// packets since `before`; returns what was checked, in words.
    fn check(
        &self,
        seen: Option<Ipv4Addr>,
        done: u64,
        before: (u64, u64),
    ) -> anyhow::Result<String> {
        let pool = u32::from(NAT64_POOL) >> (32 - NAT64_POOL_LEN);
        anyhow::ensure!(
            seen.is_some_and(|a| u32::from(a) >> (32 - NAT64_POOL_LEN) == pool),
            "the wan's server saw pod 0 as {}, not as an address of the NAT64's pool \
             {NAT64_POOL}/{NAT64_POOL_LEN}: the traffic did not cross the IPv6-only uplink",
            seen.map_or_else(|| "nothing".to_string(), |a| a.to_string())
        );
        let now = self.translated()?;
        let (out, back) = (now.0 - before.0, now.1 - before.1);
        let seen = seen.map_or_else(String::new, |a| a.to_string());
        match self.c.kind {
            Kind::SmarterEbpf => {
                anyhow::ensure!(
                    out >= done,
                    "smarter-ebpf's clat_out counted {out} packets for {done} datagrams or \
                     transactions: the traffic did not take its CLAT"
                );
                Ok(format!(
                    "smarter-ebpf's CLAT on {UPLINK} ({}): clat_out +{out}, clat_in +{back} \
                     packets; the server saw {seen} (NAT64 pool)",
                    self.clat_row.as_deref().unwrap_or("?")
                ))
            }
            Kind::Reference => {
                anyhow::ensure!(
                    out >= done,
                    "the node's tayga got {out} packets for {done} datagrams or transactions: \
                     the traffic did not take it"
                );
                Ok(format!(
                    "reference chain + tayga on the node (TUN {CLAT_IF}, {CLAT_IP4} ↔ {CLAT_IP6}, \
                     prefix {PREF64}/96): +{out} packets into it; the server saw {seen} (NAT64 \
                     pool)"
                ))
            }
            Kind::SmarterIptables | Kind::Limit => Ok(format!(
                "native IPv6 from the pod ({} → {}), no translation on the node; the server \
                 saw {seen} (NAT64 pool)",
                limit_pod_ip6(0),
                in_pref64(WAN_SERVER_IP)
            )),
        }
    }
}

/// The configuration the registry opens `world`'s datapath with (its directories).
pub(super) fn registry_conf(world: &World) -> smarter_cni::cni::NetConf {
    smarter_cni::cni::NetConf {
        bpffs_dir: world.bpffs_dir().to_path_buf(),
        state_dir: world.state_dir(),
        ..smarter_cni::cni::NetConf::default()
    }
}

/// smarter-ebpf's datapath in `world`, opened from its pins in the node namespace as the
/// registry opens it.
pub(super) fn open_ebpf(world: &World) -> anyhow::Result<Box<dyn Datapath>> {
    let conf = registry_conf(world);
    world
        .node()
        .run(|| open_existing(&conf, DatapathKind::Ebpf))?
        .context("smarter-ebpf has nothing pinned")
}

/// The CLAT on the uplink's row of `smarter-bpfctl status` (the same rows, read in the node
/// namespace); an error when the uplink has none (the CLAT did not turn on).
fn clat_of_uplink(world: &World) -> anyhow::Result<String> {
    let conf = registry_conf(world);
    let rows = world.node().run(|| -> anyhow::Result<_> {
        let dp = open_existing(&conf, DatapathKind::Ebpf)?.context("nothing pinned")?;
        Ok(dp.status_rows("smartnet")?)
    })?;
    let uplinks: Vec<_> = rows.iter().flat_map(|r| r.uplinks.iter()).collect();
    uplinks
        .iter()
        .find(|u| u.ifname.as_deref() == Some(UPLINK))
        .and_then(|u| u.clat.clone())
        .with_context(|| format!("the CLAT is not on {UPLINK}: status rows {uplinks:?}"))
}

/// Pod 0 pings the wan's IPv4 server (the limit: its address in the NAT64 prefix) until it
/// answers, for up to 5 s.
fn round_trip(c: &Contender) -> anyhow::Result<()> {
    let to = if c.kind == Kind::Limit {
        in_pref64(WAN_SERVER_IP).to_string()
    } else {
        WAN_SERVER_IP.to_string()
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if c.ns(0).succeeds(&["ping", "-c", "1", "-W", "1", &to]) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("pod 0 gets no answer from {to} through the IPv6-only uplink")
}
