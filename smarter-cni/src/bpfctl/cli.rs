//! Running a command: discover the networks, read or write, print.

use std::path::Path;
use std::time::Duration;

use super::args::{Cli, Command, CtArgs, Format};
use super::discover::{Net, collect, networks};
use super::output::print;
use super::rows::{CtRow, HostPortRow, StatsRow, StatusRow, proto_name};
use super::{Failure, drift, monitor, traffic, write};
use crate::datapath::{ChoiceRecord, DatapathError, HostPortSpec};

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
            let mut rows = collect(&nets, |n| n.dp.status_rows(&n.name))?;
            for r in &mut rows {
                r.sysctl_drift = drift::of(r.bridge.clone(), &r.veths);
            }
            explain(&mut rows, &cli.state_dir, &cli.bpffs_dir);
            print_status(fmt, &rows)
        }
        Command::Endpoints => print(
            fmt,
            &collect(&nets, |n| n.dp.endpoint_rows(&n.name, &n.records))?,
        ),
        Command::Ct(CtArgs {
            action: Some(a), ..
        }) => write::ct(fmt, &ebpf_only(&nets, "ct")?, a),
        Command::Ct(CtArgs { filter, .. }) | Command::Nat(filter) => print(
            fmt,
            &collect(&ebpf_only(&nets, "ct")?, |n| ct_rows(n, filter))?,
        ),
        Command::Hostports => print(fmt, &collect(&nets, hostport_rows)?),
        Command::Traffic(args) => print(fmt, &traffic::rows(&nets, args)?),
        Command::Config => print(
            fmt,
            &collect(&ebpf_only(&nets, "config")?, |n| {
                n.dp.config_rows(&n.name).map(Option::unwrap_or_default)
            })?,
        ),
        Command::Stats { interval } => print(fmt, &stats(&nets, *interval)?),
        Command::Monitor { trace, count } => {
            monitor::run(fmt, &ebpf_only(&nets, "monitor")?, *trace, *count)
        }
        Command::Completions { .. } => unreachable!("handled above"),
    }
}

/// The networks of the selection whose datapath keeps its own flows and settings (eBPF);
/// the others (nftables: the kernel's conntrack) are named on stderr and skipped.
///
/// # Errors
///
/// Exit code 6 when none is left.
fn ebpf_only<'a>(nets: &'a [Net], what: &str) -> Result<Vec<&'a Net>, Failure> {
    let mut out = Vec::new();
    for n in nets {
        if n.dp.kind() == crate::datapath::DatapathKind::Ebpf {
            out.push(n);
        } else {
            eprintln!(
                "smarter-bpfctl: skipping {}: `{what}` needs the eBPF datapath and it uses \
                 nftables (its conntrack is the kernel's: `conntrack -L`)",
                n.name
            );
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

/// `ct` / `nat`: the flows of one network matching `filter` (IPv4, then NAT66's), sorted.
fn ct_rows(n: &Net, filter: &super::args::Filter) -> Result<Vec<CtRow>, DatapathError> {
    let mut rows: Vec<CtRow> =
        n.dp.flows()?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| filter.matches_view(e))
            .map(|e| ct_row(&n.name, e))
            .collect();
    rows.extend(
        n.dp.flows6()?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| filter.matches_view(e))
            .map(|e| ct_row(&n.name, e)),
    );
    rows.sort_by(|a, b| {
        (&a.pod_ip, a.pod_port, a.proto, &a.remote_ip, a.remote_port).cmp(&(
            &b.pod_ip,
            b.pod_port,
            b.proto,
            &b.remote_ip,
            b.remote_port,
        ))
    });
    Ok(rows)
}

/// The row of flow `e` of `network`.
fn ct_row<A: std::fmt::Display>(network: &str, e: crate::datapath::CtEntryView<A>) -> CtRow {
    CtRow {
        network: network.to_owned(),
        proto: proto_name(e.proto),
        pod_ip: e.pod_ip.to_string(),
        pod_port: e.pod_port,
        remote_ip: e.remote_ip.to_string(),
        remote_port: e.remote_port,
        nat_ip: e.nat_ip.to_string(),
        nat_port: e.nat_port,
        state: e.state,
        age_s: (e.age.as_secs_f64() * 10.0).round() / 10.0,
    }
}

/// `hostports` of one network (IPv4, then a dual-stack pod's IPv6 ones), sorted.
fn hostport_rows(n: &Net) -> Result<Vec<HostPortRow>, DatapathError> {
    let row = |p: HostPortSpec, ip: std::net::IpAddr| {
        HostPortRow::new(&n.name, p.protocol, p.host_port, ip, p.container_port)
    };
    let mut rows: Vec<HostPortRow> =
        n.dp.host_ports()?
            .into_iter()
            .map(|(p, ip)| row(p, ip.into()))
            .chain(
                n.dp.host_ports6()?
                    .into_iter()
                    .map(|(p, ip)| row(p, ip.into())),
            )
            .collect();
    rows.sort_by_key(|r| (r.protocol, r.host_port, r.pod_ip.contains(':')));
    Ok(rows)
}

/// `stats`: one row per verdict or counter of one network.
fn stats_rows(n: &Net) -> Result<Vec<StatsRow>, DatapathError> {
    Ok(n.dp
        .counters()?
        .into_iter()
        .map(|(verdict, packets, bytes)| StatsRow {
            network: n.name.clone(),
            verdict,
            packets,
            bytes,
            packets_per_s: None,
            bytes_per_s: None,
        })
        .collect())
}

fn stats(nets: &[Net], interval: Option<f64>) -> Result<Vec<StatsRow>, Failure> {
    let sample = || collect(nets, stats_rows);
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
            if r.uplinks.is_empty() {
                println!("uplinks: none");
            }
            for u in &r.uplinks {
                println!("uplink {}", u.describe());
            }
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
        if !r.sysctl_drift.is_empty() {
            println!("sysctl drift: {}", r.sysctl_drift.join("; "));
        }
    }
    Ok(())
}
