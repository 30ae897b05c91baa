//! `smarter-bench`: the harness behind `cargo xtask bench`. Builds one namespace world per
//! contender (the upstream reference chain, smarter-cni with the iptables and with the eBPF
//! datapath, and the physical limit: a bare veth), runs the workloads interleaved, and writes
//! JSON, a markdown table and an SVG chart under `bench/results/`. Needs root.

mod contender;
mod control;
mod cri;
mod load;
mod memory;
mod profile;
mod report;
mod results;
mod run;
mod scaling;
mod stage;
mod targets;
mod workloads;

use std::path::PathBuf;

use clap::Parser;

/// Benchmark iptables against eBPF, side by side, with the physical limit.
#[derive(Debug, Parser)]
#[command(name = "smarter-bench")]
pub struct Cli {
    /// A short smoke run (checks the harness and the output, not the speed).
    #[arg(long)]
    quick: bool,
    /// The smarter-cni plugin binary (release build).
    #[arg(long, default_value = "target/release/smarter-cni")]
    plugin: PathBuf,
    /// The smarter-agent binary (for its RSS).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where to write the results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Only these stages (`workloads`, `edge`, `scaling`, `control`, `memory`, `cri`) or data-plane
    /// workloads (`stream-pod`, `stream-nat`, `rr-pod`, `crr-nat`, `udp-nat`, `rr-hostport`);
    /// repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Repetitions of each data-plane workload (default 5; `--quick`: 1).
    #[arg(long)]
    reps: Option<usize>,
    /// Only this profile of the data-plane workloads: `default` or `edge` (default: both).
    #[arg(long, value_parser = ["default", "edge"])]
    profile: Option<String>,
    /// Regenerate results.md and the charts under `--out` from this results.json, measuring
    /// nothing.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(json) = &cli.report {
        let results = results::Results::load(json)?;
        return report::render(&cli.out, &results);
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("smarter-bench builds network namespaces and needs root");
    }
    // Absolute paths: the plugins run through nsenter, which looks bare names up in PATH.
    cli.plugin = std::fs::canonicalize(&cli.plugin)
        .map_err(|e| anyhow::anyhow!("plugin {}: {e}", cli.plugin.display()))?;
    if let Some(agent) = &cli.agent {
        cli.agent = Some(
            std::fs::canonicalize(agent)
                .map_err(|e| anyhow::anyhow!("agent {}: {e}", agent.display()))?,
        );
    }
    private_tmp()?;
    cleanup_on_signal()?;
    run::run(&cli)
}

/// Moves the whole run into a private mount namespace with a fresh tmpfs on /tmp, before any
/// thread starts: the worlds' IPAM data and state directories live there, on tmpfs, as they do
/// on a node (`/var/run/cni`, `/run/smarter-cni`), not on this machine's disk (whose fsyncs
/// would dominate every CNI call); the namespaces' names, the bpffs mounts and the scratch
/// files of this run are invisible to the rest of the machine and go with the process.
fn private_tmp() -> anyhow::Result<()> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=1g"),
    )?;
    Ok(())
}

/// Ctrl-C or SIGTERM: remove every namespace and bpffs mount of this run, then exit (the
/// worlds' destructors would not run). Signals are blocked in every thread and taken by one.
fn cleanup_on_signal() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("bench: {sig}: removing this run's namespaces");
            smarter_testbed::sweep_own();
            std::process::exit(130);
        }
    });
    Ok(())
}
