//! The benchmark run: the selected stages in order, `results.json` saved after each, then
//! the report.

use crate::Cli;
use crate::report;
use crate::results::Results;
use crate::stage::{self, Ctx, Plan};

/// Runs the stages `cli` selects and writes the results and the report.
///
/// # Errors
///
/// When a stage failed (after everything measured was written) or nothing could be written.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let known: Vec<&str> = stage::all()
        .iter()
        .map(|s| s.name())
        .chain(crate::workloads::WorkloadId::ALL.iter().map(|w| w.id()))
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
    let results = stage::run_all(Ctx { cli, plan, results }, &cli.out);
    report::write(&cli.out, &results)?;
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
