//! The command line of `smarter-bench`.

use std::path::PathBuf;

use clap::Parser;

/// Benchmark iptables against eBPF, side by side, with the physical limit.
#[derive(Debug, Parser)]
#[command(name = "smarter-bench")]
pub struct Cli {
    /// A short smoke run (checks the harness and the output, not the speed).
    #[arg(long)]
    pub quick: bool,
    /// The smarter-cni plugin binary (release build).
    #[arg(long, default_value = "target/release/smarter-cni")]
    pub plugin: PathBuf,
    /// The smarter-agent binary (for its RSS).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Where to write the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Only these stages (`workloads`, `edge`, `scaling`, `control`, `memory`, `cri`) or data-plane
    /// workloads (`stream-pod`, `stream-nat`, `rr-pod`, `crr-nat`, `udp-nat`, `rr-hostport`,
    /// `rr-lan`, `rr-lan-hostport`, `udp-l3`, `udp-clat`, `rr-clat`, `udp-nat6`, `rr-nat6`,
    /// `stream-nat6`); repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// Repetitions of each data-plane workload (default 5; `--quick`: 1).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Only this profile of the data-plane workloads: `default` or `edge` (default: both).
    #[arg(long, value_parser = ["default", "edge"])]
    pub profile: Option<String>,
    /// Regenerate results.md and the charts under `--out` from this results.json, measuring
    /// nothing.
    #[arg(long)]
    pub report: Option<PathBuf>,
}
