//! `smarter-agent`: the node agent. Follows the uplink and drives the datapath; see
//! [`smarter_cni::agent`].

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use smarter_cni::agent::{
    self, AgentConfig, DatapathControl, Health, LoggingDatapath, TerminationSignals,
};
use smarter_cni::cni::{NetConf, Uplink};
use tracing_subscriber::EnvFilter;

/// The smarter-cni node agent.
#[derive(Debug, Parser)]
#[command(
    name = "smarter-agent",
    version,
    about = "smarter-cni node agent: follows the uplink and drives the datapath"
)]
struct Cli {
    /// CNI network name (overrides the config's `name`).
    #[arg(long)]
    network: Option<String>,
    /// A CNI `.conf` or `.conflist` holding the smarter-cni plugin entry.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Uplink interface, or `auto` for the interface of the IPv4 default route.
    #[arg(long)]
    uplink: Option<String>,
    /// bpffs directory of the pinned maps (overrides `bpffsDir`).
    #[arg(long)]
    bpffs_dir: Option<PathBuf>,
    /// State directory (overrides `stateDir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between conntrack garbage collections.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    gc_interval: u64,
    /// Seconds between safety-net uplink resyncs (changes are followed by events anyway).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    resync_interval: u64,
    /// Health file for probes: exists while ready, its mtime is the last heartbeat.
    #[arg(long)]
    health_file: Option<PathBuf>,
    /// Prometheus metrics address (`GET /metrics`); `off` disables them.
    #[arg(long, default_value = "127.0.0.1:9402")]
    metrics_addr: String,
    /// Drain drop events into the log (then `smarter-bpfctl monitor` sees none).
    #[arg(long)]
    log_drops: bool,
    /// Only log what would be done to the datapath (nothing is loaded or written).
    #[arg(long)]
    dry_run: bool,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or an `EnvFilter` directive).
    #[arg(long, default_value = "info")]
    log: String,
}

/// The settings after merging the config file and the flags.
struct Settings {
    netconf: NetConf,
    agent: AgentConfig,
}

impl Cli {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut netconf = match &self.conf {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                agent::parse_network_config(&bytes)
                    .with_context(|| format!("network config {}", path.display()))?
            }
            None => NetConf::default(),
        };
        if let Some(n) = &self.network {
            netconf.name.clone_from(n);
        }
        if let Some(u) = &self.uplink {
            netconf.uplink = match u.as_str() {
                "auto" => Uplink::Auto,
                name => Uplink::Named(name.to_string()),
            };
        }
        if let Some(d) = &self.bpffs_dir {
            netconf.bpffs_dir.clone_from(d);
        }
        if let Some(d) = &self.state_dir {
            netconf.state_dir.clone_from(d);
        }
        let agent = AgentConfig {
            uplink: netconf.uplink.clone(),
            gc_interval: Duration::from_secs(self.gc_interval),
            resync_interval: Duration::from_secs(self.resync_interval),
            health_file: self.health_file.clone(),
            ..AgentConfig::default()
        };
        Ok(Settings { netconf, agent })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_new(&cli.log).context("--log")?)
        .init();
    let settings = cli.settings()?;
    // Before the runtime starts any thread, so that every thread inherits the mask.
    let signals = TerminationSignals::block().context("blocking SIGTERM/SIGINT")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let conf = &settings.netconf;
    tracing::info!(
        network = %conf.name,
        bridge = %conf.bridge,
        subnet = %conf.subnet,
        bpffs = %conf.bpffs_dir.display(),
        state = %conf.state_dir.display(),
        "smarter-agent starting"
    );
    let health = Health::new();
    let mut datapath: Box<dyn DatapathControl + Send> = if cli.dry_run {
        Box::new(LoggingDatapath)
    } else {
        agent::control::open(conf)?
    };
    if cli.metrics_addr != "off" {
        let addr = cli
            .metrics_addr
            .parse()
            .with_context(|| format!("--metrics-addr {}", cli.metrics_addr))?;
        agent::metrics::serve(
            addr,
            agent::metrics::MetricsSource {
                network: conf.name.clone(),
                bpffs_dir: conf.bpffs_dir.clone(),
                state_dir: conf.state_dir.clone(),
            },
        )
        .with_context(|| format!("serving metrics on {addr}"))?;
    }
    if cli.log_drops && !cli.dry_run {
        agent::drops::spawn(conf).context("--log-drops")?;
    }
    rt.block_on(async {
        let shutdown = async {
            match signals.recv().await {
                Ok(sig) => tracing::info!("{sig}: shutting down"),
                Err(e) => tracing::error!("waiting for signals failed: {e}; shutting down"),
            }
        };
        agent::run(&settings.agent, &mut datapath, &health, shutdown).await
    })
}
