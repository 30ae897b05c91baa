//! Command line and the read commands.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use super::rows::{
    AttachmentRow, ConfigRow, CtRow, EndpointRow, HostPortRow, MapRow, StatsRow, StatusRow,
    proto_name,
};
use super::{Failure, default_bpffs_dir, monitor, networks, write};
use crate::datapath::{CtEntryView, EbpfDatapath};
use crate::netlink::format_mac;

/// Inspect and carefully edit smarter-cni's pinned eBPF datapath.
#[derive(Debug, Parser)]
#[command(name = "smarter-bpfctl", version)]
pub struct Cli {
    /// Pin root (the plugin's `bpffsDir`).
    #[arg(long, global = true, default_value_os_t = default_bpffs_dir())]
    pub bpffs_dir: PathBuf,
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
        /// `tcp`, `udp` or `icmp`.
        #[arg(long)]
        proto: String,
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

/// Conntrack filters (all must match).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Pod address.
    #[arg(long)]
    pub pod: Option<Ipv4Addr>,
    /// Any address of the flow (pod, remote or NAT).
    #[arg(long)]
    pub addr: Option<Ipv4Addr>,
    /// `tcp`, `udp` or `icmp`.
    #[arg(long)]
    pub proto: Option<String>,
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
            && self.proto.as_deref().is_none_or(|p| p == proto_name(proto))
            && self
                .port
                .is_none_or(|p| p == pod_port || p == remote_port || nat.is_some_and(|n| n.1 == p))
    }

    fn matches_view(&self, e: &CtEntryView) -> bool {
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
    let nets = networks(&cli.bpffs_dir, cli.network.as_deref())?;
    let fmt = cli.output;
    match &cli.command {
        Command::Status => print_status(fmt, &collect(&nets, status)?),
        Command::Endpoints => print(fmt, &collect(&nets, endpoints)?),
        Command::Ct(CtArgs {
            action: Some(a), ..
        }) => write::ct(fmt, &nets, a),
        Command::Ct(CtArgs { filter, .. }) | Command::Nat(filter) => {
            print(fmt, &collect(&nets, |n, dp| ct(n, dp, filter))?)
        }
        Command::Hostports => print(fmt, &collect(&nets, hostports)?),
        Command::Config => print(fmt, &collect(&nets, config)?),
        Command::Stats { interval } => print(fmt, &stats(&nets, *interval)?),
        Command::Monitor { trace, count } => monitor::run(fmt, &nets, *trace, *count),
        Command::Completions { .. } => unreachable!("handled above"),
    }
}

type Nets = [(String, EbpfDatapath)];

fn collect<T>(
    nets: &Nets,
    f: impl Fn(&str, &EbpfDatapath) -> Result<Vec<T>, crate::datapath::EbpfError>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    for (name, dp) in nets {
        out.extend(f(name, dp).map_err(|e| Failure::from_ebpf(name, &e))?);
    }
    Ok(out)
}

fn status(name: &str, dp: &EbpfDatapath) -> Result<Vec<StatusRow>, crate::datapath::EbpfError> {
    let cfg = dp.config()?;
    let uplink = nix::net::if_::if_indextoname(cfg.uplink_ifindex)
        .ok()
        .and_then(|n| n.into_string().ok());
    Ok(vec![StatusRow {
        network: name.to_string(),
        pin_dir: dp.pin_dir().display().to_string(),
        layout: smarter_common::LAYOUT_VERSION,
        datapath: "ebpf",
        pod_program_id: dp.program_id(),
        uplink,
        uplink_addr: Ipv4Addr::from(cfg.uplink_addr.to_ne_bytes()).to_string(),
        attachments: dp
            .attachments()?
            .into_iter()
            .map(|a| AttachmentRow {
                ifname: a.ifname,
                program: a.program,
                direction: a.direction,
                mode: a.mode,
            })
            .collect(),
        maps: dp
            .map_fill()?
            .into_iter()
            .map(|m| MapRow {
                map: m.map,
                entries: m.entries,
                capacity: m.capacity,
            })
            .collect(),
    }])
}

fn endpoints(
    name: &str,
    dp: &EbpfDatapath,
) -> Result<Vec<EndpointRow>, crate::datapath::EbpfError> {
    let mut rows = Vec::new();
    for e in dp.endpoints()? {
        let (packets, bytes) = dp.endpoint_counters(e.host_ifindex)?.unwrap_or_default();
        rows.push(EndpointRow {
            network: name.to_string(),
            ip: e.ip.to_string(),
            mac: format_mac(&e.mac),
            host_ifname: e.host_ifname,
            host_ifindex: e.host_ifindex,
            pod_namespace: e.pod_namespace,
            pod_name: e.pod_name,
            container_id: e.container_id,
            packets,
            bytes,
        });
    }
    rows.sort_by(|a, b| a.ip.cmp(&b.ip));
    Ok(rows)
}

fn ct(
    name: &str,
    dp: &EbpfDatapath,
    filter: &Filter,
) -> Result<Vec<CtRow>, crate::datapath::EbpfError> {
    Ok(dp
        .ct_entries()?
        .into_iter()
        .filter(|e| filter.matches_view(e))
        .map(|e| CtRow {
            network: name.to_string(),
            proto: proto_name(e.proto),
            pod_ip: e.pod_ip.to_string(),
            pod_port: e.pod_port,
            remote_ip: e.remote_ip.to_string(),
            remote_port: e.remote_port,
            nat_ip: e.nat_ip.to_string(),
            nat_port: e.nat_port,
            state: e.state,
            age_s: (e.age.as_secs_f64() * 10.0).round() / 10.0,
        })
        .collect())
}

fn hostports(
    name: &str,
    dp: &EbpfDatapath,
) -> Result<Vec<HostPortRow>, crate::datapath::EbpfError> {
    Ok(dp
        .host_ports()?
        .into_iter()
        .map(|(p, ip)| HostPortRow {
            network: name.to_string(),
            protocol: proto_name(p.protocol),
            host_port: p.host_port,
            pod_ip: ip.to_string(),
            container_port: p.container_port,
        })
        .collect())
}

fn config(name: &str, dp: &EbpfDatapath) -> Result<Vec<ConfigRow>, crate::datapath::EbpfError> {
    let c = dp.config()?;
    let ip = |a: u32| Ipv4Addr::from(a.to_ne_bytes()).to_string();
    let (lo, hi) = c.nat_ports();
    Ok(vec![ConfigRow {
        network: name.to_string(),
        gateway: ip(c.gateway),
        subnet: format!("{}/{}", ip(c.subnet), c.prefix_len),
        uplink_ifindex: c.uplink_ifindex,
        uplink_addr: ip(c.uplink_addr),
        nat_ports: [lo, hi],
        ct_timeouts_s: c.ct_timeout_s,
        bridge_ifindex: c.bridge_ifindex,
        bridge_mac: format_mac(&c.bridge_mac),
        trace: c.flags & smarter_common::config::CFG_F_TRACE != 0,
        deny: dp.deny()?.iter().map(ToString::to_string).collect(),
    }])
}

fn stats(nets: &Nets, interval: Option<f64>) -> Result<Vec<StatsRow>, Failure> {
    let sample = || {
        collect(nets, |name, dp| {
            Ok(dp
                .verdict_stats()?
                .into_iter()
                .map(|(verdict, packets, bytes)| StatsRow {
                    network: name.to_string(),
                    verdict,
                    packets,
                    bytes,
                    packets_per_s: None,
                    bytes_per_s: None,
                })
                .collect())
        })
    };
    let first = sample()?;
    let Some(secs) = interval.filter(|s| *s > 0.0) else {
        return Ok(first);
    };
    std::thread::sleep(Duration::from_secs_f64(secs));
    let mut second = sample()?;
    for (now, before) in second.iter_mut().zip(&first) {
        now.packets_per_s = Some(now.packets.saturating_sub(before.packets) as f64 / secs);
        now.bytes_per_s = Some(now.bytes.saturating_sub(before.bytes) as f64 / secs);
    }
    Ok(second)
}

/// `status`: JSON as usual; for people one block per network with two small tables.
fn print_status(fmt: Format, rows: &[StatusRow]) -> Result<(), Failure> {
    if fmt == Format::Json {
        return print(fmt, rows);
    }
    for r in rows {
        println!(
            "network {}: datapath {}, layout v{}, pins {}, pod program id {}",
            r.network,
            r.datapath,
            r.layout,
            r.pin_dir,
            r.pod_program_id
                .map_or("-".to_string(), |id| id.to_string())
        );
        println!(
            "uplink {} (NAT to {})",
            r.uplink.as_deref().unwrap_or("-"),
            r.uplink_addr
        );
        print(fmt, &r.attachments)?;
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
