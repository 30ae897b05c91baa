//! The stages of a run. A stage is one entry of [`all`]: a type implementing [`Stage`], which
//! measures, stores its figures in the [`Results`] and renders its section of the report.
//! The runner saves `results.json` after every stage, records failures with their location
//! (stage, contender, workload, failing call and its stderr) and goes on with the next stage.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use crate::Cli;
use crate::results::{Failure, Results, StageRecord};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seconds per measurement.
    pub secs: f64,
    /// Repetitions of each data-plane workload.
    pub reps: usize,
    /// Pod counts of the scaling stage.
    pub scaling: Vec<usize>,
    /// ADD/DEL calls per control-plane measurement.
    pub control_n: usize,
    /// Concurrencies of the control-plane stage.
    pub concurrency: [usize; 2],
    /// Pods of the memory stage (the agent's RSS is read with them attached).
    pub memory_pods: usize,
}

impl Plan {
    /// The plan for `cli` (`--quick`, `--reps`).
    pub fn new(cli: &Cli) -> Self {
        let mut plan = if cli.quick {
            Self {
                secs: 0.5,
                reps: 1,
                scaling: vec![1, 4],
                control_n: 4,
                concurrency: [1, 4],
                memory_pods: 4,
            }
        } else {
            Self {
                secs: 3.0,
                reps: 5,
                scaling: vec![1, 50, 250],
                control_n: 40,
                concurrency: [1, 20],
                memory_pods: 250,
            }
        };
        if let Some(reps) = cli.reps {
            plan.reps = reps.max(1);
        }
        plan
    }
}

/// What a stage gets.
pub struct Ctx<'a> {
    /// The command line.
    pub cli: &'a Cli,
    /// Sizes.
    pub plan: Plan,
    /// Everything measured so far; a stage adds its own figures.
    pub results: Results,
}

impl Ctx<'_> {
    /// Whether `--only` selects `name` (a stage or a workload id); true without `--only`.
    pub fn selected(&self, name: &str) -> bool {
        self.cli.only.is_empty() || self.cli.only.iter().any(|o| o == name)
    }
}

/// One stage of the run.
pub trait Stage {
    /// Name, as `--only` takes it and the report shows it.
    fn name(&self) -> &'static str;
    /// Whether `--only` selects this stage (its name, or one of its workloads).
    fn selected(&self, ctx: &Ctx<'_>) -> bool {
        ctx.selected(self.name())
    }
    /// Measures and stores the figures in `ctx.results` (as they come: what was stored
    /// before a failure is kept).
    ///
    /// # Errors
    ///
    /// The first failure, with [`At`] and [`CallFailed`] context where known.
    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()>;
    /// This stage's section of the markdown report, from the results (also when read back
    /// from `results.json`); `None` when it has nothing to show.
    fn markdown(&self, results: &Results) -> Option<String>;
}

/// Every stage, in the order a full run takes them.
pub fn all() -> Vec<Box<dyn Stage>> {
    use crate::profile::Profile;
    vec![
        Box::new(crate::workloads::Workloads(Profile::Default)),
        Box::new(crate::workloads::Workloads(Profile::Edge)),
        Box::new(crate::scaling::Scaling),
        Box::new(crate::control::ControlPlane),
        Box::new(crate::memory::MemoryStage),
        Box::new(crate::cri::CriStage),
    ]
}

/// Where in a stage something failed: attach with `anyhow::Context` (found again by
/// downcasting).
#[derive(Debug, Clone)]
pub struct At {
    /// Contender.
    pub contender: String,
    /// Workload or step.
    pub workload: String,
}

impl At {
    /// At `contender`, doing `workload`.
    pub fn new(contender: &str, workload: &str) -> Self {
        Self {
            contender: contender.to_string(),
            workload: workload.to_string(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.contender, self.workload)
    }
}

/// A call (a plugin invocation or a command) that failed, with its standard error.
#[derive(Debug)]
pub struct CallFailed {
    /// What was called, e.g. `ADD /usr/lib/cni/bridge (c3)`.
    pub call: String,
    /// Why: exit status or the I/O error.
    pub reason: String,
    /// Its standard error.
    pub stderr: String,
}

impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.reason)?;
        let tail = tail_lines(&self.stderr, 20);
        if !tail.is_empty() {
            write!(f, "\n--- stderr (last lines) ---\n{tail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CallFailed {}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the selected stages of `ctx`, saving `results.json` under `out` after each; returns
/// the results, `complete` when every stage ran without failure.
pub fn run_all(mut ctx: Ctx<'_>, out: &Path) -> Results {
    let stages = all();
    let mut failed = false;
    for stage in &stages {
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
