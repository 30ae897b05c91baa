//! What a stage is: a type implementing [`Stage`], which measures, stores its figures in the
//! [`Results`] and renders its section of the report, given a [`Ctx`] (the command line, the
//! [`Plan`] of the run and the results so far). Which stages a run has, and in which order,
//! is the runner's list (`run::stages`).

use crate::cli::Cli;
use crate::results::Results;

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
    /// The first failure, with [`At`](crate::error::At) and
    /// [`CallFailed`](crate::error::CallFailed) context where known.
    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()>;
    /// This stage's section of the markdown report, from the results (also when read back
    /// from `results.json`); `None` when it has nothing to show.
    fn markdown(&self, results: &Results) -> Option<String>;
}
