//! The data-plane stage of one profile: the four contenders' worlds built and set up for the
//! profile ([`arena`]), the workloads ([`id`]) run over repetitions with the contenders
//! interleaved, each measurement with its CPU time. A measurement that fails is recorded (stage,
//! contender, workload, error) and that workload is not measured again for that contender; the
//! others go on, and the stage reports the failures at its end.

mod arena;
mod clat;
mod id;
mod nat6;
mod sample;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::contender::Kind;
use crate::error::At;
use crate::load::have_iperf3;
use crate::profile::{CpuTimes, Profile};
use crate::report;
use crate::results::{Failure, Figure, Results, Workload};
use crate::stage::{Ctx, Stage};
use crate::stats::median;
use arena::Arena;
pub use id::WorkloadId;
use sample::Sample;

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
        // Every thread and process started from here on (worlds, servers, load, iperf3, the
        // layer-3 uplink's relay) runs on the profile's CPUs.
        let _pinned = profile.pin()?;
        let with_l3 = chosen.iter().any(|w| w.needs_l3_world());
        let with_nat6 = chosen.iter().any(|w| w.needs_nat6_world());
        let mut arenas = Vec::new();
        for kind in Kind::ALL {
            let with_clat = chosen
                .iter()
                .any(|w| w.needs_clat_world() && w.measured_by(kind));
            progress(&format!(
                "{}: building the {} world{}",
                profile.name(),
                kind.name(),
                if with_l3 || with_clat || with_nat6 {
                    "s"
                } else {
                    ""
                }
            ));
            arenas.push(Arena::build(
                kind,
                &ctx.cli.plugin,
                profile,
                with_l3,
                with_clat,
                with_nat6,
            )?);
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut samples: BTreeMap<(usize, &'static str), Vec<(Sample, CpuTimes)>> = BTreeMap::new();
        let mut broken: BTreeSet<(usize, &'static str)> = BTreeSet::new();
        let mut port = 5201;
        for rep in 0..ctx.plan.reps {
            for a in &arenas {
                let k = a.main.kind.name();
                progress(&format!(
                    "{}: repetition {}/{}: {k}",
                    profile.name(),
                    rep + 1,
                    ctx.plan.reps
                ));
                for (i, w) in chosen.iter().enumerate() {
                    port += 1;
                    if broken.contains(&(i, k)) || !w.measured_by(a.main.kind) {
                        continue;
                    }
                    let before = CpuTimes::now();
                    match a.measure(*w, ctx.plan.secs, port) {
                        Ok(s) => {
                            let cpu = CpuTimes::now().since(before);
                            samples.entry((i, k)).or_default().push((s, cpu));
                        }
                        Err(e) => {
                            let e = e.context(At::new(k, w.name()));
                            progress(&format!(
                                "{}: {k}: {} FAILED, not measured again: {e:#}",
                                profile.name(),
                                w.name()
                            ));
                            ctx.results.failures.push(failure(self.name(), k, *w, &e));
                            broken.insert((i, k));
                        }
                    }
                }
                // What was measured so far is kept, also when a later measurement fails.
                store(&mut ctx.results, profile, &chosen, &samples);
            }
            // On disk after every repetition (a run stopped midway keeps them).
            ctx.results.save(&ctx.cli.out)?;
        }
        anyhow::ensure!(
            broken.is_empty(),
            "{} measurement(s) failed (each recorded with its contender and workload): {}",
            broken.len(),
            broken
                .iter()
                .map(|(i, k)| format!("{k} {}", chosen[*i].id()))
                .collect::<Vec<_>>()
                .join(", ")
        );
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

/// The record of workload `w`'s failure `e` for contender `k`.
fn failure(stage: &str, k: &str, w: WorkloadId, e: &anyhow::Error) -> Failure {
    Failure {
        stage: stage.to_string(),
        contender: Some(k.to_string()),
        workload: Some(w.name().to_string()),
        call: None,
        stderr: None,
        error: format!("{e:#}"),
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
                    path: v.iter().rev().find_map(|(s, _)| s.path.clone()),
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
