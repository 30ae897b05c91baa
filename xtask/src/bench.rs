//! `cargo xtask bench [--quick] [--only STAGE|WORKLOAD]… [--reps N] [--profile P]`: builds the
//! release binaries, then runs `smarter-bench` as root (through sudo if needed), writing
//! `bench/results/{results.json,results.md,chart.svg}`.

use std::path::Path;

use anyhow::Result;

use crate::run;

/// What to run (passed through to `smarter-bench`).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A short smoke run (checks the harness, not the speed).
    #[arg(long)]
    quick: bool,
    /// Only these stages or data-plane workloads (their ids: `smarter-bench --help`);
    /// repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Repetitions of each data-plane workload.
    #[arg(long)]
    reps: Option<usize>,
    /// Only this profile of the data-plane workloads (`default` or `edge`).
    #[arg(long)]
    profile: Option<String>,
}

/// Builds the release binaries and runs the benchmark with `args`.
pub fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    let build = [
        "build",
        "--release",
        "-p",
        "smarter-cni",
        "--bins",
        "-p",
        "smarter-bench",
    ];
    run::cargo(root, build, &[]).status()?;
    let release = crate::release_dir(root);
    let mut cmd = crate::as_root(&release.join("smarter-bench"), "the benchmark")
        .arg("--plugin")
        .arg(release.join("smarter-cni"))
        .arg("--agent")
        .arg(release.join("smarter-agent"))
        .arg("--out")
        .arg(root.join("bench/results"));
    if args.quick {
        cmd = cmd.arg("--quick");
    }
    for only in &args.only {
        cmd = cmd.arg("--only").arg(only);
    }
    if let Some(reps) = args.reps {
        cmd = cmd.arg("--reps").arg(reps.to_string());
    }
    if let Some(profile) = &args.profile {
        cmd = cmd.arg("--profile").arg(profile);
    }
    cmd.status()
}
