//! `smarter-bench`: the harness behind `cargo xtask bench`. Builds one namespace world per
//! contender (the upstream reference chain, smarter-cni with the iptables and with the eBPF
//! datapath, and the physical limit: a bare veth), runs the workloads interleaved, and writes
//! JSON, a markdown table and an SVG chart under `bench/results/`. Needs root.

mod contender;
mod control;
mod load;
mod report;
mod run;

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
    #[arg(long)]
    plugin: PathBuf,
    /// The smarter-agent binary (for its RSS).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where to write the results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("smarter-bench builds network namespaces and needs root");
    }
    cleanup_on_signal()?;
    run::run(&cli)
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
            smarter_cni::testbed::sweep_own();
            std::process::exit(130);
        }
    });
    Ok(())
}
