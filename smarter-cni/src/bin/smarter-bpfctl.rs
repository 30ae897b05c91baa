//! `smarter-bpfctl`: inspect and carefully edit smarter-cni's pinned eBPF datapath; see
//! [`smarter_cni::bpfctl`].

use clap::Parser as _;

fn main() {
    let cli = smarter_cni::bpfctl::Cli::parse();
    std::process::exit(smarter_cni::bpfctl::run(&cli));
}
