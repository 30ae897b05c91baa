//! The control-plane stage: ADD/DEL latency of the whole plugin chain at a given
//! concurrency, each contender in a fresh world.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use smarter_testbed::World;

use crate::contender::{Kind, run_chain};
use crate::error::At;
use crate::report;
use crate::results::{ControlRow, Results};
use crate::stage::{Ctx, Stage};
use crate::stats::percentile_us;

/// Runs `f(i)` for `i` in `0..n`, `concurrency` at a time; returns every duration.
///
/// # Errors
///
/// The first failing call (after its batch finished).
pub fn batched(
    n: usize,
    concurrency: usize,
    f: &(dyn Fn(usize) -> anyhow::Result<Duration> + Sync),
) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(concurrency.max(1)) {
        let results: Vec<anyhow::Result<Duration>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|&i| s.spawn(move || f(i))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
                })
                .collect()
        });
        for r in results {
            all.push(r?);
        }
    }
    Ok(all)
}

/// ADD and DEL latency at each concurrency, each contender in a fresh world.
pub struct ControlPlane;

impl Stage for ControlPlane {
    fn name(&self) -> &'static str {
        "control"
    }

    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
        let plan = ctx.plan.clone();
        for kind in [Kind::Reference, Kind::SmarterIptables, Kind::SmarterEbpf] {
            for &conc in &plan.concurrency {
                let step = format!("{} ADD/DEL at concurrency {conc}", plan.control_n);
                eprintln!("bench: control plane {}: {step}", kind.name());
                let row = measure(kind, &ctx.cli.plugin, plan.control_n, conc)
                    .with_context(|| At::new(kind.name(), &step))?;
                ctx.results.control_plane.push(row);
            }
        }
        Ok(())
    }

    fn markdown(&self, results: &Results) -> Option<String> {
        (!results.control_plane.is_empty()).then(|| report::control_markdown(results))
    }
}

fn measure(kind: Kind, plugin: &Path, n: usize, conc: usize) -> anyhow::Result<ControlRow> {
    let mut world = World::new(&format!("bench-cp-{}", kind.name()))?;
    let nss: Vec<_> = (0..n)
        .map(|i| Ok(world.add_pod_ns(&format!("c{i}"))?.path().to_path_buf()))
        .collect::<anyhow::Result<_>>()?;
    // Warm up (first load of programs or rules) outside the measurement.
    let warm = world.add_pod_ns("warm")?.path().to_path_buf();
    run_chain(kind, &world, plugin, "ADD", "warm", &warm, 999)?;
    let call = |verb: &'static str| {
        let (world, nss) = (&world, &nss);
        move |i: usize| -> anyhow::Result<Duration> {
            let started = Instant::now();
            run_chain(kind, world, plugin, verb, &format!("c{i}"), &nss[i], i)?;
            Ok(started.elapsed())
        }
    };
    let mut adds = batched(n, conc, &call("ADD"))?;
    let mut dels = batched(n, conc, &call("DEL"))?;
    Ok(ControlRow {
        contender: kind.name().to_string(),
        concurrency: conc,
        add_p50_ms: percentile_us(&mut adds, 50.0) / 1e3,
        add_p99_ms: percentile_us(&mut adds, 99.0) / 1e3,
        del_p50_ms: percentile_us(&mut dels, 50.0) / 1e3,
        del_p99_ms: percentile_us(&mut dels, 99.0) / 1e3,
    })
}
