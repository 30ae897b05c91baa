//! The data-plane stage of one profile: the four contenders' worlds built and set up for the
//! profile, the workloads run over repetitions with the contenders interleaved, each
//! measurement with its CPU time.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use smarter_testbed::WAN_SERVER_IP;

use crate::contender::{Contender, Kind, POD_PORT};
use crate::error::At;
use crate::load::{RrServer, crr, have_iperf3, iperf3, rr, udp};
use crate::profile::{CpuTimes, Profile};
use crate::report;
use crate::results::{Figure, Results, Workload};
use crate::stage::{Ctx, Stage};
use crate::stats::median;

/// One data-plane workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadId {
    /// iperf3 TCP stream between two pods.
    StreamPod,
    /// iperf3 TCP stream from a pod to the wan (NAT).
    StreamNat,
    /// TCP request/response between two pods.
    RrPod,
    /// TCP connect/request/response/close to the wan (NAT).
    CrrNat,
    /// 64-byte UDP datagrams to the wan (NAT).
    UdpNat,
    /// TCP request/response from the wan to a hostPort.
    RrHostPort,
}

impl WorkloadId {
    /// Every workload, in report order.
    pub const ALL: [WorkloadId; 6] = [
        WorkloadId::StreamPod,
        WorkloadId::StreamNat,
        WorkloadId::RrPod,
        WorkloadId::CrrNat,
        WorkloadId::UdpNat,
        WorkloadId::RrHostPort,
    ];

    /// Short id (`--only`).
    pub fn id(self) -> &'static str {
        match self {
            WorkloadId::StreamPod => "stream-pod",
            WorkloadId::StreamNat => "stream-nat",
            WorkloadId::RrPod => "rr-pod",
            WorkloadId::CrrNat => "crr-nat",
            WorkloadId::UdpNat => "udp-nat",
            WorkloadId::RrHostPort => "rr-hostport",
        }
    }

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadId::StreamPod => "stream pod→pod",
            WorkloadId::StreamNat => "stream pod→wan (NAT)",
            WorkloadId::RrPod => "rr pod→pod",
            WorkloadId::CrrNat => "crr pod→wan (NAT)",
            WorkloadId::UdpNat => "udp pod→wan (NAT)",
            WorkloadId::RrHostPort => "rr wan→hostPort",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            WorkloadId::StreamPod | WorkloadId::StreamNat => "Gbit/s",
            WorkloadId::UdpNat => "packets/s",
            WorkloadId::CrrNat => "connections/s",
            WorkloadId::RrPod | WorkloadId::RrHostPort => "transactions/s",
        }
    }

    /// The unit of the CPU cost and how many of them one unit of the rate over one second is.
    fn cpu_unit(self) -> (&'static str, f64) {
        match self {
            WorkloadId::StreamPod | WorkloadId::StreamNat => ("per Gbit", 1.0),
            WorkloadId::UdpNat => ("per 100k packets", 1e-5),
            WorkloadId::CrrNat => ("per 100k connections", 1e-5),
            WorkloadId::RrPod | WorkloadId::RrHostPort => ("per 100k transactions", 1e-5),
        }
    }
}

/// One measurement.
struct Sample {
    value: f64,
    latency: Option<(f64, f64)>,
    /// Seconds the rate was measured over (to turn it into an amount of work).
    secs: f64,
}

/// The data-plane workloads in one profile.
pub struct Workloads(pub Profile);

impl Stage for Workloads {
    fn name(&self) -> &'static str {
        match self.0 {
            Profile::Default => "workloads",
            Profile::Edge => "edge",
        }
    }

    fn selected(&self, ctx: &Ctx<'_>) -> bool {
        if ctx
            .cli
            .profile
            .as_deref()
            .is_some_and(|p| p != self.0.name())
        {
            return false;
        }
        ctx.selected(self.name())
            || WorkloadId::ALL
                .iter()
                .any(|w| ctx.cli.only.iter().any(|o| o == w.id()))
    }

    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
        anyhow::ensure!(have_iperf3(), "iperf3 is missing: run `cargo xtask setup`");
        let profile = self.0;
        let chosen: Vec<WorkloadId> = WorkloadId::ALL
            .into_iter()
            .filter(|w| ctx.selected(self.name()) || ctx.cli.only.iter().any(|o| o == w.id()))
            .collect();
        // Every thread and process started from here on (worlds, servers, load, iperf3)
        // runs on the profile's CPUs.
        let _pinned = profile.pin()?;
        let mut contenders = Vec::new();
        for kind in Kind::ALL {
            progress(&format!(
                "{}: building the {} world",
                profile.name(),
                kind.name()
            ));
            let at = At::new(kind.name(), "build the world");
            let mut c = Contender::new(kind, &ctx.cli.plugin).context(at.clone())?;
            c.add_pod().context(at.clone())?;
            c.add_pod().context(at.clone())?;
            profile
                .apply(&c.world, &[c.ns(0), c.ns(1)])
                .context(at.clone())?;
            contenders.push(c);
        }
        let _servers: Vec<_> = contenders
            .iter()
            .flat_map(|c| {
                [
                    RrServer::start(c.ns(1), Ipv4Addr::UNSPECIFIED, 7000),
                    RrServer::start(c.ns(0), Ipv4Addr::UNSPECIFIED, POD_PORT),
                    RrServer::start(c.world.wan(), WAN_SERVER_IP, 7001),
                ]
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut samples: BTreeMap<(usize, &'static str), Vec<(Sample, CpuTimes)>> = BTreeMap::new();
        let mut port = 5201;
        for rep in 0..ctx.plan.reps {
            for c in &contenders {
                let k = c.kind.name();
                progress(&format!(
                    "{}: repetition {}/{}: {k}",
                    profile.name(),
                    rep + 1,
                    ctx.plan.reps
                ));
                for (i, w) in chosen.iter().enumerate() {
                    port += 1;
                    let before = CpuTimes::now();
                    let s = measure(*w, c, ctx.plan.secs, port)
                        .with_context(|| At::new(k, w.name()))?;
                    let cpu = CpuTimes::now().since(before);
                    samples.entry((i, k)).or_default().push((s, cpu));
                }
                // What was measured so far is kept, also when a later measurement fails.
                store(&mut ctx.results, profile, &chosen, &samples);
            }
            // On disk after every repetition (a run stopped midway keeps them).
            ctx.results.save(&ctx.cli.out)?;
        }
        Ok(())
    }

    fn markdown(&self, results: &Results) -> Option<String> {
        let p = results
            .profiles
            .iter()
            .find(|p| p.profile == self.0.name())?;
        Some(report::profile_markdown(p))
    }
}

fn measure(w: WorkloadId, c: &Contender, secs: f64, port: u16) -> anyhow::Result<Sample> {
    let wan = SocketAddr::from((WAN_SERVER_IP, 7001));
    let whole = secs.ceil().max(1.0);
    Ok(match w {
        WorkloadId::StreamPod => Sample {
            value: iperf3(c.ns(0), c.ns(1), c.peer_ip(), port, secs)?,
            latency: None,
            secs: whole,
        },
        WorkloadId::StreamNat => Sample {
            value: iperf3(c.ns(0), c.world.wan(), WAN_SERVER_IP, port, secs)?,
            latency: None,
            secs: whole,
        },
        WorkloadId::RrPod => rate(
            rr(c.ns(0), SocketAddr::from((c.peer_ip(), 7000)), secs)?,
            secs,
        ),
        WorkloadId::CrrNat => rate(crr(c.ns(0), wan, secs)?, secs),
        WorkloadId::UdpNat => Sample {
            value: udp(
                c.ns(0),
                c.world.wan(),
                SocketAddr::from((WAN_SERVER_IP, port)),
                secs,
            )?,
            latency: None,
            secs,
        },
        WorkloadId::RrHostPort => rate(rr(c.world.wan(), c.host_port_target(0), secs)?, secs),
    })
}

fn rate(r: crate::load::Rate, secs: f64) -> Sample {
    Sample {
        value: r.per_s,
        latency: Some((r.p50_us, r.p99_us)),
        secs,
    }
}

/// Replaces `profile`'s workloads in `results` with the figures of `samples`.
fn store(
    results: &mut Results,
    profile: Profile,
    chosen: &[WorkloadId],
    samples: &BTreeMap<(usize, &'static str), Vec<(Sample, CpuTimes)>>,
) {
    let p = results.profile_mut(profile.name(), profile.description());
    for (i, w) in chosen.iter().enumerate() {
        let (cpu_unit, per) = w.cpu_unit();
        let mut contenders = BTreeMap::new();
        for ((j, k), v) in samples {
            if *j != i {
                continue;
            }
            let values: Vec<f64> = v.iter().map(|(s, _)| s.value).collect();
            let lat: Vec<(f64, f64)> = v.iter().filter_map(|(s, _)| s.latency).collect();
            let work = |s: &Sample| (s.value * s.secs * per).max(f64::MIN_POSITIVE);
            let softirq: Vec<f64> = v.iter().map(|(s, c)| c.softirq_ms / work(s)).collect();
            let kernel: Vec<f64> = v
                .iter()
                .map(|(s, c)| (c.softirq_ms + c.system_ms) / work(s))
                .collect();
            contenders.insert(
                (*k).to_string(),
                Figure {
                    median: median(&values),
                    min: values.iter().copied().fold(f64::INFINITY, f64::min),
                    max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    samples: values,
                    p50_us: (!lat.is_empty())
                        .then(|| median(&lat.iter().map(|l| l.0).collect::<Vec<_>>())),
                    p99_us: (!lat.is_empty())
                        .then(|| median(&lat.iter().map(|l| l.1).collect::<Vec<_>>())),
                    softirq_ms: Some(median(&softirq)),
                    kernel_ms: Some(median(&kernel)),
                },
            );
        }
        let workload = Workload {
            name: w.name().to_string(),
            id: w.id().to_string(),
            unit: w.unit().to_string(),
            cpu_unit: cpu_unit.to_string(),
            contenders,
        };
        match p.workloads.iter().position(|x| x.id == w.id()) {
            Some(at) => p.workloads[at] = workload,
            None => p.workloads.push(workload),
        }
    }
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}
