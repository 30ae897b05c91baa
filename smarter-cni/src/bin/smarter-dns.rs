//! `smarter-dns`: node-local DNS for pod hostnames, as its own process (the node agent can
//! run the same server as a task instead; see `smarter_cni::dns`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use smarter_cni::cni::config::defaults;
use smarter_cni::dns::{self, DnsConfig};

/// Node-local DNS for pod hostnames (see `smarter_cni::dns` for the names it answers).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// CNI network name (records are read from <state-dir>/<network>/).
    #[arg(long, default_value = defaults::NETWORK)]
    network: String,
    /// The plugin's stateDir.
    #[arg(long, default_value = defaults::STATE_DIR)]
    state_dir: PathBuf,
    /// Address and port to answer on (UDP and TCP); the address is put on the bridge.
    #[arg(long, default_value = "169.254.0.2:53")]
    listen: SocketAddr,
    /// Cluster domain.
    #[arg(long, default_value = dns::DEFAULT_DOMAIN)]
    domain: String,
    /// TTL of local answers, seconds.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// Bridge that holds the listen address (created if missing).
    #[arg(long, default_value = "smartnet0")]
    bridge: String,
    /// Do not put the listen address on the bridge (something else provides it).
    #[arg(long)]
    no_manage_address: bool,
    /// The runtime's CRI socket (k3s: /run/k3s/containerd/containerd.sock); "none" disables
    /// hostname lookups (pod names are used).
    #[arg(long, default_value = dns::CONTAINERD_SOCKET)]
    cri_socket: String,
    /// The node's resolv.conf, for upstream resolvers (followed for changes).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Upstream timeout in milliseconds (then SERVFAIL).
    #[arg(long, default_value_t = 2000)]
    upstream_timeout_ms: u64,
    /// Queries per second allowed per source address (0: no limit).
    #[arg(long, default_value_t = 500)]
    rate_limit: u32,
    /// Log filter (tracing env-filter syntax), e.g. `info`, `smarter_cni::dns=debug`.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut cfg = DnsConfig {
        network: args.network,
        state_dir: args.state_dir,
        listen: args.listen,
        domain: args.domain,
        ttl: args.ttl,
        bridge: args.bridge,
        manage_address: !args.no_manage_address,
        cri_socket: (args.cri_socket != "none").then(|| PathBuf::from(args.cri_socket)),
        resolv_conf: args.resolv_conf,
        upstream_timeout: Duration::from_millis(args.upstream_timeout_ms),
        ..DnsConfig::default()
    };
    cfg.limits.rate = args.rate_limit;
    cfg.limits.burst = args.rate_limit.saturating_mul(2);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dns::run(&cfg, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
