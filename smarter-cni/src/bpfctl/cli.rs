//! Running a command: discover the networks, read or write, print.

use std::path::Path;
use std::time::Duration;

use super::args::{Cli, Command, CtArgs, Format};
use super::discover::{Net, networks};
use super::output::print;
use super::rows::{StatsRow, StatusRow};
use super::{Failure, monitor, nftables, read, write};
use crate::datapath::{ChoiceRecord, EbpfDatapath};

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
            let mut rows = collect(&nets, read::status, |n, dp| nftables::status(&n.name, dp))?;
            explain(&mut rows, &cli.state_dir, &cli.bpffs_dir);
            print_status(fmt, &rows)
        }
        Command::Endpoints => print(
            fmt,
            &collect(&nets, read::endpoints, |n, dp| {
                nftables::endpoints(&n.name, dp, &n.records)
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
            &collect(&nets, read::hostports, |n, dp| {
                nftables::hostports(&n.name, dp)
            })?,
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
        match n.ebpf() {
            Some(dp) => out.push((n.name.as_str(), dp)),
            None => eprintln!(
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
        &crate::datapath::nftables::NftablesDatapath,
    ) -> Result<Vec<T>, crate::datapath::nftables::NftablesError>,
) -> Result<Vec<T>, Failure> {
    let mut out = Vec::new();
    for n in nets {
        let rows = match (n.dp.as_ebpf(), n.dp.as_nftables()) {
            (Some(dp), _) => ebpf(&n.name, dp).map_err(|e| Failure::from_err(&n.name, &e)),
            (None, Some(dp)) => nft(n, dp).map_err(|e| Failure::from_err(&n.name, &e)),
            (None, None) => Ok(Vec::new()),
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
    let sample = || collect(nets, read::stats, |n, dp| nftables::stats(&n.name, dp));
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
        if !r.sysctl_drift.is_empty() {
            println!("sysctl drift: {}", r.sysctl_drift.join("; "));
        }
    }
    Ok(())
}
