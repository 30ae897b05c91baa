//! The scaling stage: the NAT connect rate and hostPort request/response with 1, 50 and 250
//! pods attached (each with its own hostPort), for the three CNI contenders.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use smarter_testbed::WAN_SERVER_IP;

use crate::contender::{Contender, Kind, POD_PORT};
use crate::error::At;
use crate::load::{RrServer, crr, rr};
use crate::report;
use crate::results::{Results, ScalingRow};
use crate::stage::{Ctx, Stage};

/// NAT and hostPort with more and more pods.
pub struct Scaling;

impl Stage for Scaling {
    fn name(&self) -> &'static str {
        "scaling"
    }

    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
        let plan = ctx.plan.clone();
        for kind in [Kind::Reference, Kind::SmarterIptables, Kind::SmarterEbpf] {
            let k = kind.name();
            let mut c = Contender::new(kind, &ctx.cli.plugin).context(At::new(k, "world"))?;
            let _hp = RrServer::start_after_pods(&mut c)?;
            let _wan = RrServer::start(c.world.wan(), WAN_SERVER_IP, 7002);
            for &n in &plan.scaling {
                eprintln!("bench: scaling {k}: {n} pods");
                let at = At::new(k, &format!("{n} pods"));
                while c.pods.len() < n.max(2) {
                    c.add_pod().context(at.clone())?;
                }
                std::thread::sleep(Duration::from_millis(200));
                let nat = crr(c.ns(0), SocketAddr::from((WAN_SERVER_IP, 7002)), plan.secs)
                    .context(at.clone())?;
                let hp = rr(c.world.wan(), c.host_port_target(0), plan.secs).context(at)?;
                ctx.results.scaling.push(ScalingRow {
                    contender: k.to_string(),
                    pods: c.pods.len(),
                    nat_crr_per_s: nat.per_s,
                    hostport_rr_per_s: hp.per_s,
                });
            }
        }
        Ok(())
    }

    fn markdown(&self, results: &Results) -> Option<String> {
        (!results.scaling.is_empty()).then(|| report::scaling_markdown(results))
    }
}

impl RrServer {
    /// Adds the first pod to `c` and starts pod 0's service (the hostPort's target).
    fn start_after_pods(c: &mut Contender) -> anyhow::Result<Self> {
        c.add_pod().context(At::new(c.kind.name(), "pod 0"))?;
        Ok(Self::start(c.ns(0), Ipv4Addr::UNSPECIFIED, POD_PORT))
    }
}
