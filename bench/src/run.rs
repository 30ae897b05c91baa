//! The benchmark run: every stage there is ([`stages`]), the selected ones run in order with
//! `results.json` saved after each, then the report. A failing stage is recorded with its
//! location (stage, contender, workload, failing call and its stderr) and the run goes on
//! with the next stage.

use std::path::Path;
use std::time::Instant;

use crate::cli::Cli;
use crate::control::ControlPlane;
use crate::cri::CriStage;
use crate::error::{At, CallFailed};
use crate::memory::MemoryStage;
use crate::profile::Profile;
use crate::report;
use crate::results::{Failure, Results, StageRecord};
use crate::scaling::Scaling;
use crate::stage::{Ctx, Plan, Stage};
use crate::workloads::{WorkloadId, Workloads};

/// Every stage, in the order a full run takes them.
pub fn stages() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Workloads(Profile::Default)),
        Box::new(Workloads(Profile::Edge)),
        Box::new(Scaling),
        Box::new(ControlPlane),
        Box::new(MemoryStage),
        Box::new(CriStage),
    ]
}

/// Runs the stages `cli` selects and writes the results and the report.
///
/// # Errors
///
/// When a stage failed (after everything measured was written) or nothing could be written.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let stages = stages();
    let known: Vec<&str> = stages
        .iter()
        .map(|s| s.name())
        .chain(WorkloadId::ALL.iter().map(|w| w.id()))
        .collect();
    if let Some(bad) = cli.only.iter().find(|o| !known.contains(&o.as_str())) {
        anyhow::bail!(
            "--only {bad}: not a stage or workload ({})",
            known.join(", ")
        );
    }
    let plan = Plan::new(cli);
    let results = Results {
        complete: false,
        quick: cli.quick,
        only: cli.only.clone(),
        seconds_per_run: plan.secs,
        repetitions: plan.reps,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: report::machine(),
        ..Results::default()
    };
    results.save(&cli.out)?;
    let results = run_all(&stages, Ctx { cli, plan, results }, &cli.out);
    report::write(&cli.out, &results, &stages)?;
    if !results.failures.is_empty() {
        anyhow::bail!(
            "{} stage(s) failed ({}); what they measured is in {}",
            results.failures.len(),
            results
                .failures
                .iter()
                .map(|f| f.stage.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            cli.out.join("results.json").display()
        );
    }
    Ok(())
}

/// Runs the `stages` that `ctx` selects, saving `results.json` under `out` after each;
/// returns the results, `complete` when every stage ran without failure.
fn run_all(stages: &[Box<dyn Stage>], mut ctx: Ctx<'_>, out: &Path) -> Results {
    let mut failed = false;
    for stage in stages {
        if !stage.selected(&ctx) {
            continue;
        }
        eprintln!("bench: stage {}", stage.name());
        let started = Instant::now();
        let res = stage.run(&mut ctx);
        let seconds = started.elapsed().as_secs_f64();
        if let Err(e) = &res {
            failed = true;
            let failure = failure(stage.name(), e);
            eprintln!(
                "bench: stage {} FAILED after {seconds:.0} s: {:#}",
                stage.name(),
                e
            );
            ctx.results.failures.push(failure);
        }
        ctx.results.stages.push(StageRecord {
            name: stage.name().to_string(),
            seconds,
            ok: res.is_ok(),
        });
        if let Err(e) = ctx.results.save(out) {
            eprintln!("bench: cannot save results.json: {e:#}");
        }
    }
    ctx.results.complete = !failed;
    ctx.results
}

/// The record of stage `stage`'s failure `e`, with the [`At`] and [`CallFailed`] it carries.
fn failure(stage: &str, e: &anyhow::Error) -> Failure {
    let at = e.downcast_ref::<At>();
    let call = e.downcast_ref::<CallFailed>();
    Failure {
        stage: stage.to_string(),
        contender: at.map(|a| a.contender.clone()),
        workload: at.map(|a| a.workload.clone()),
        call: call.map(|c| c.call.clone()),
        stderr: call.map(|c| c.stderr.clone()),
        error: format!("{e:#}"),
    }
}
