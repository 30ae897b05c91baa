//! `smarter-agent`: the node agent. Follows the uplink and drives the datapath (see
//! [`smarter_cni::agent`]), optionally serves node-local DNS (`--dns`, see
//! [`smarter_cni::dns`]); `smarter-agent install | uninstall | health` is the node installer
//! (see [`smarter_cni::install`]).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use smarter_cni::agent::{
    self, AgentConfig, DatapathControl, Health, LoggingDatapath, TerminationSignals,
};
use smarter_cni::cni::{NetConf, UplinkSelector};
use smarter_cni::dns::{self, DnsConfig};
use smarter_cni::state::StateDir;
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
    /// The external interfaces pods may leave by: `auto` (every one) or a comma-separated list
    /// of interface names.
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
    /// Serve node-local DNS for pod hostnames on the config's `nodeDns` address (port 53,
    /// UDP and TCP) for its `clusterDomain`; nothing when `nodeDns` is `off`.
    #[arg(long)]
    dns: bool,
    /// With `--dns`: the runtime's CRI socket for pod hostnames (k3s:
    /// /run/k3s/containerd/containerd.sock); `none`: pod names only.
    #[arg(long, default_value = smarter_cni::dns::CONTAINERD_SOCKET)]
    cri_socket: String,
    /// The resolv.conf naming the node's resolvers: the upstreams of `--dns` (followed for
    /// changes), and whom NAT64 prefix discovery asks for `ipv4only.arpa` (RFC 7050) with
    /// `nat64Prefix: auto`.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// With `--dns`: TTL of local answers, seconds.
    #[arg(long, default_value_t = 5)]
    dns_ttl: u32,
}

/// The settings after merging the config file and the flags.
struct Settings {
    netconf: NetConf,
    agent: AgentConfig,
    /// The DNS server's, with `--dns` and a `nodeDns` address.
    dns: Option<DnsConfig>,
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
                "auto" => UplinkSelector::Auto,
                name if !name.contains(',') => UplinkSelector::Named(name.to_string()),
                list => UplinkSelector::List(list.split(',').map(str::to_owned).collect()),
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
            bridge: netconf.bridge.clone(),
            nat64_prefix: netconf.nat64_prefix,
            resolv_conf: self.resolv_conf.clone(),
            // A dry run writes nothing, the discovered prefix's record included.
            pref64_record: (!self.dry_run)
                .then(|| StateDir::new(&netconf.state_dir, &netconf.name)),
            gc_interval: Duration::from_secs(self.gc_interval),
            resync_interval: Duration::from_secs(self.resync_interval),
            health_file: self.health_file.clone(),
            ..AgentConfig::default()
        };
        let dns = self.dns_config(&netconf);
        Ok(Settings {
            netconf,
            agent,
            dns,
        })
    }

    fn dns_config(&self, netconf: &NetConf) -> Option<DnsConfig> {
        if !self.dns {
            return None;
        }
        let Some(ip) = netconf.node_dns else {
            tracing::info!("--dns: nodeDns is off in the config; not serving DNS");
            return None;
        };
        Some(DnsConfig {
            network: netconf.name.clone(),
            state_dir: netconf.state_dir.clone(),
            listen: std::net::SocketAddr::from((ip, 53)),
            domain: netconf.cluster_domain.clone(),
            ttl: self.dns_ttl,
            bridge: netconf.bridge.clone(),
            bridge_mtu: netconf.mtu_or_default(),
            cri_socket: (self.cri_socket != "none").then(|| PathBuf::from(&self.cri_socket)),
            resolv_conf: self.resolv_conf.clone(),
            ..DnsConfig::default()
        })
    }
}

fn main() -> anyhow::Result<()> {
    // `smarter-agent install | uninstall | health`: the DaemonSet's init container and probes.
    if let Some(done) = smarter_cni::install::cli::dispatch(std::env::args_os()) {
        return done;
    }
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
    if !cli.dry_run {
        // Before anything else: a record of a sandbox that died with the last boot must not
        // keep its address, hostPorts or DNS name from the pods the kubelet starts now.
        match rt.block_on(smarter_cni::cmd::reconcile_after_boot(conf)) {
            Ok(done) if done.ran => tracing::info!(
                retired = done.retired.len(),
                torn = done.torn.len(),
                "reconciled after a boot"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("reconciling after a boot: {}", e.msg),
        }
    }
    let health = Health::new();
    let mut datapath: Box<dyn DatapathControl + Send> = if cli.dry_run {
        Box::new(LoggingDatapath)
    } else {
        let (control, choice) = agent::control::open_choosing(conf)?;
        health.set_datapath(choice);
        control
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
                dns: settings.dns.as_ref().map(|d| d.stats.clone()),
                datapath: health.datapath(),
            },
        )
        .with_context(|| format!("serving metrics on {addr}"))?;
    }
    if cli.log_drops && !cli.dry_run {
        agent::drops::spawn(conf).context("--log-drops")?;
    }
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stop = &stop;
        let shutdown = async move {
            match signals.recv().await {
                Ok(sig) => tracing::info!("{sig}: shutting down"),
                Err(e) => tracing::error!("waiting for signals failed: {e}; shutting down"),
            }
            let _ = stop.send(true);
        };
        let agent = agent::run(&settings.agent, &mut datapath, &health, shutdown);
        let Some(dns_cfg) = &settings.dns else {
            return agent.await;
        };
        let mut stopped = stopped;
        let dns = dns::run(dns_cfg, async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        tokio::pin!(agent, dns);
        tokio::select! {
            // The agent ended (a signal, or a failure): stop DNS cleanly (it takes the
            // listen address off the bridge if it put it there), then report the agent's end.
            r = &mut agent => {
                let _ = stop.send(true);
                if let Err(e) = dns.await {
                    tracing::warn!("node-local DNS shutdown: {e}");
                }
                r
            }
            // DNS cannot serve (address, sockets, inotify): exit so the kubelet restarts us.
            r = &mut dns => {
                r.context("node-local DNS")?;
                agent.await
            }
        }
    })
}
