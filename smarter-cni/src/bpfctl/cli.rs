//! Command line and the read commands.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use super::discover::{Datapath, Net, networks};
use super::rows::{StatsRow, StatusRow};
use super::{Failure, default_bpffs_dir, default_state_dir, monitor, nft, read, write};
use crate::datapath::{ChoiceRecord, CtEntryView, EbpfDatapath};

/// Inspect and carefully edit smarter-cni's pinned eBPF datapath.
#[derive(Debug, Parser)]
#[command(name = "smarter-bpfctl", version)]
pub struct Cli {
    /// Pin root (the plugin's `bpffsDir`).
    #[arg(long, global = true, default_value_os_t = default_bpffs_dir())]
    pub bpffs_dir: PathBuf,
    /// Record root (the plugin's `stateDir`): finds networks on the nftables datapath and
    /// their pods' names.
    #[arg(long, global = true, default_value_os_t = default_state_dir())]
    pub state_dir: PathBuf,
    /// Only this CNI network (default: every pinned network).
    #[arg(long, short = 'n', global = true)]
    pub network: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON array (monitor: one JSON object per line).
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Networks, pins, program attachments, uplink, map fill levels.
    Status,
    /// Pods attached to the datapath.
    Endpoints,
    /// Conntrack (NAT) entries; `flush`/`delete` remove some (with --yes).
    Ct(CtArgs),
    /// The NAT view of conntrack (same rows as `ct`).
    Nat(Filter),
    /// hostPort mappings.
    Hostports,
    /// The live configuration record and deny ranges.
    Config,
    /// Per-verdict packet and byte counters, summed over CPUs.
    Stats {
        /// Sample twice this many seconds apart and add rates.
        #[arg(long)]
        interval: Option<f64>,
    },
    /// Stream drop events (and every packet with --trace) until interrupted.
    Monitor {
        /// Also show every packet (switched on while monitoring, off again on exit).
        #[arg(long)]
        trace: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Shell completions on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `ct` arguments.
#[derive(Debug, clap::Args)]
pub struct CtArgs {
    /// Filters for listing.
    #[command(flatten)]
    pub filter: Filter,
    /// Remove entries.
    #[command(subcommand)]
    pub action: Option<CtAction>,
}

/// Conntrack writes.
#[derive(Debug, Subcommand)]
pub enum CtAction {
    /// Remove every flow matching the filters (all flows without filters).
    Flush {
        /// Which flows.
        #[command(flatten)]
        filter: Filter,
        /// Really remove them.
        #[arg(long)]
        yes: bool,
    },
    /// Remove exactly one flow.
    Delete {
        /// Protocol.
        #[arg(long, value_enum)]
        proto: Proto,
        /// Pod side, `IP:PORT` (ICMP: the echo identifier as port).
        #[arg(long)]
        pod: std::net::SocketAddrV4,
        /// Remote side, `IP:PORT` (ICMP: port 0).
        #[arg(long)]
        remote: std::net::SocketAddrV4,
        /// Really remove it.
        #[arg(long)]
        yes: bool,
    },
}

/// A conntrack protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo (the identifier plays the pod port).
    Icmp,
}

impl Proto {
    /// The IP protocol number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
        }
    }
}

/// Conntrack filters (all must match).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Pod address.
    #[arg(long)]
    pub pod: Option<Ipv4Addr>,
    /// Any address of the flow (pod, remote or NAT).
    #[arg(long)]
    pub addr: Option<Ipv4Addr>,
    /// Protocol.
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Any port of the flow (pod, remote or NAT).
    #[arg(long)]
    pub port: Option<u16>,
}

impl Filter {
    /// Whether a flow matches.
    #[must_use]
    pub fn matches(
        &self,
        proto: u8,
        pod: Ipv4Addr,
        pod_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
        nat: Option<(Ipv4Addr, u16)>,
    ) -> bool {
        self.pod.is_none_or(|p| p == pod)
            && self
                .addr
                .is_none_or(|a| a == pod || a == remote || nat.is_some_and(|n| n.0 == a))
            && self.proto.is_none_or(|p| p.number() == proto)
            && self
                .port
                .is_none_or(|p| p == pod_port || p == remote_port || nat.is_some_and(|n| n.1 == p))
    }

    pub(super) fn matches_view(&self, e: &CtEntryView) -> bool {
        self.matches(
            e.proto,
            e.pod_ip,
            e.pod_port,
            e.remote_ip,
            e.remote_port,
            Some((e.nat_ip, e.nat_port)),
        )
    }
}

/// Runs the command; returns the exit code.
#[must_use]
pub fn run(cli: &Cli) -> i32 {
    match dispatch(cli) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("smarter-bpfctl: {}", f.message);
            f.code
        }
    }
}

fn dispatch(cli: &Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "smarter-bpfctl", &mut std::io::stdout());
        return Ok(());
    }
    let nets = networks(&cli.bpffs_dir, &cli.state_dir, cli.network.as_deref()).map_err(|f| {
        // Nothing found: say so, and why eBPF could not run here if it cannot.
        match crate::datapath::probe(&cli.bpffs_dir) {
            Err(u) if f.code == 3 => Failure::new(3, format!("{}; eBPF: {u}", f.message)),
            _ => f,
        }
    })?;
    let fmt = cli.output;
    match &cli.command {
        Command::Status => {
            let mut rows = collect(&nets, read::status, |n, dp| nft::status(&n.name, dp))?;
            explain(&mut rows, &cli.state_dir, &cli.bpffs_dir);
            print_status(fmt, &rows)
        }
        Command::Endpoints => print(
            fmt,
            &collect(&nets, read::endpoints, |n, dp| {
                nft::endpoints(&n.name, dp, &n.records)
            })?,
        ),
        Command::Ct(CtArgs {
            action: Some(a), ..
        }) => write::ct(fmt, &ebpf_only(&nets, "ct")?, a),
        Command::Ct(CtArgs { filter, .. }) | Command::Nat(filter) => print(
            fmt,
            &collect_ebpf(&ebpf_only(&nets, "ct")?, |n, dp| read::ct(n, dp, filter))?,
        ),
        Command::Hostports => print(
            fmt,
            &collect(&nets, read::hostports, |n, dp| nft::hostports(&n.name, dp))?,
        ),
        Command::Config => print(
            fmt,
            &collect_ebpf(&ebpf_only(&nets, "config")?, read::config)?,
        ),
        Command::Stats { interval } => print(fmt, &stats(&nets, *interval)?),
        Command::Monitor { trace, count } => {
            monitor::run(fmt, &ebpf_only(&nets, "monitor")?, *trace, *count)
        }
        Command::Completions { .. } => unreachable!("handled above"),
    }
}

/// The eBPF networks of the selection; nftables networks are named on stderr and skipped.
///
/// # Errors
///
/// Exit code 6 when no eBPF network is left.
fn ebpf_only<'a>(nets: &'a [Net], what: &str) -> Result<Vec<(&'a str, &'a EbpfDatapath)>, Failure> {
    let mut out = Vec::new();
    for n in nets {
        match &n.dp {
            Datapath::Ebpf(dp) => out.push((n.name.as_str(), &**dp)),
            Datapath::Nft(_) => eprintln!(
                "smarter-bpfctl: skipping {}: `{what}` needs the eBPF datapath and it uses \
                 nftables (its conntrack is the kernel's: `conntrack -L`)",
                n.name
            ),
        }
    }
    if out.is_empty() {
        return Err(Failure::new(
            6,
            format!("`{what}`: no selected network uses the eBPF datapath"),
        ));
    }
    Ok(out)
}

/// Rows of every network, from its eBPF or nftables reader.
fn collect<T>(
    nets: &[Net],
    ebpf: impl Fn(&str, &EbpfDatapath) -> Result<Vec<T>, crate::datapath::EbpfError>,
    nft: impl Fn(
        &Net,
        &crate::datapath::iptables::NftDatapath,
    ) -> Result<Vec<T>, crate::datapath::iptables::NftError>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    for n in nets {
        let rows = match &n.dp {
            Datapath::Ebpf(dp) => ebpf(&n.name, dp).map_err(|e| Failure::from_err(&n.name, &e)),
            Datapath::Nft(dp) => nft(n, dp).map_err(|e| Failure::from_err(&n.name, &e)),
        };
        out.extend(rows?);
    }
    Ok(out)
}

/// Rows of eBPF networks.
fn collect_ebpf<T>(
    nets: &[(&str, &EbpfDatapath)],
    f: impl Fn(&str, &EbpfDatapath) -> Result<Vec<T>, crate::datapath::EbpfError>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    for (name, dp) in nets {
        out.extend(f(name, dp).map_err(|e| Failure::from_err(name, &e))?);
    }
    Ok(out)
}

fn stats(nets: &[Net], interval: Option<f64>) -> Result<Vec<StatsRow>, Failure> {
    let sample = || collect(nets, read::stats, |n, dp| nft::stats(&n.name, dp));
    let first = sample()?;
    let Some(secs) = interval.filter(|s| *s > 0.0) else {
        return Ok(first);
    };
    std::thread::sleep(Duration::from_secs_f64(secs));
    let mut second = sample()?;
    for now in &mut second {
        let before = first
            .iter()
            .find(|b| b.network == now.network && b.verdict == now.verdict);
        let (p0, b0) = before.map_or((0, 0), |b| (b.packets, b.bytes));
        now.packets_per_s = Some(now.packets.saturating_sub(p0) as f64 / secs);
        now.bytes_per_s = Some(now.bytes.saturating_sub(b0) as f64 / secs);
    }
    Ok(second)
}

/// Fills in why each network is on its datapath: the choice the plugin or agent recorded when
/// it names this datapath, else for nftables what probing the pin root finds.
fn explain(rows: &mut [StatusRow], state_dir: &Path, bpffs_dir: &Path) {
    for r in rows {
        let recorded = ChoiceRecord::load(state_dir, &r.network)
            .filter(|c| (c.datapath == "ebpf") == (r.datapath == "ebpf"));
        if let Some(c) = recorded {
            r.reason = Some(c.reason);
            r.reason_detail = c.detail;
        } else if r.datapath != "ebpf"
            && let Err(u) = crate::datapath::probe(bpffs_dir)
        {
            r.reason = Some(u.label().to_string());
            r.reason_detail = Some(u.to_string());
        }
    }
}

/// `status`: JSON as usual; for people one block per network with two small tables.
fn print_status(fmt: Format, rows: &[StatusRow]) -> Result<(), Failure> {
    if fmt == Format::Json {
        return print(fmt, rows);
    }
    for r in rows {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let why = match (&r.reason, &r.reason_detail) {
            (Some(label), Some(detail)) => format!(" ({label}: {detail})"),
            (Some(label), None) => format!(" ({label})"),
            _ => String::new(),
        };
        if r.datapath == "ebpf" {
            println!(
                "network {}: datapath ebpf{why}, layout v{}, pins {}, pod program id {}",
                r.network,
                or_dash(r.layout.map(|l| l.to_string())),
                or_dash(r.pin_dir.clone()),
                or_dash(r.pod_program_id.map(|id| id.to_string()))
            );
            println!(
                "uplink {} (NAT to {})",
                or_dash(r.uplink.clone()),
                or_dash(r.uplink_addr.clone())
            );
            print(fmt, &r.attachments)?;
        } else {
            println!(
                "network {}: datapath {}{why}, tables {}",
                r.network,
                r.datapath,
                r.tables.join(", ")
            );
        }
        print(fmt, &r.maps)?;
    }
    Ok(())
}

/// Prints rows as JSON or as a table built from their JSON fields (nested lists are shown as
/// compact JSON).
pub(super) fn print<T: Serialize>(fmt: Format, rows: &[T]) -> Result<(), Failure> {
    let value = serde_json::to_value(rows).map_err(|e| Failure::new(1, e.to_string()))?;
    if fmt == Format::Json {
        println!("{value}");
        return Ok(());
    }
    let Some(items) = value.as_array() else {
        return Ok(());
    };
    let Some(first) = items.first().and_then(|v| v.as_object()) else {
        println!("(none)");
        return Ok(());
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(first.keys().map(|k| k.to_uppercase()));
    for item in items {
        let Some(obj) = item.as_object() else {
            continue;
        };
        table.add_row(obj.values().map(cell));
    }
    println!("{table}");
    Ok(())
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::Object(o) => o.values().map(cell).collect::<Vec<_>>().join("/"),
                other => cell(other),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
