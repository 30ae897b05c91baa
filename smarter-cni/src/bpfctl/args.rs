//! The command line: what `smarter-bpfctl` accepts (clap definitions and the filters).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::{default_bpffs_dir, default_state_dir};
use crate::datapath::CtEntryView;
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
    /// Bytes and packets per pod, per external interface, both directions (metered links).
    Traffic(TrafficArgs),
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

/// `traffic` arguments: filters (all must match) and rates.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrafficArgs {
    /// Pod address.
    #[arg(long)]
    pub pod: Option<Ipv4Addr>,
    /// External interface name (as `traffic` prints it).
    #[arg(long)]
    pub interface: Option<String>,
    /// Sample twice this many seconds apart and add rates.
    #[arg(long)]
    pub interval: Option<f64>,
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

    /// Whether a NAT66 flow matches: the address filters are IPv4 and so match none; protocol
    /// and port as for IPv4.
    pub(super) fn matches_view6(&self, e: &CtEntryView<std::net::Ipv6Addr>) -> bool {
        self.pod.is_none()
            && self.addr.is_none()
            && self.proto.is_none_or(|p| p.number() == e.proto)
            && self
                .port
                .is_none_or(|p| p == e.pod_port || p == e.remote_port || p == e.nat_port)
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::Filter;
    use crate::datapath::CtEntryView;

    #[test]
    fn ipv4_address_filters_leave_nat66_flows_out_and_ports_apply() {
        let flow = CtEntryView {
            proto: 58,
            pod_ip: Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 2),
            pod_port: 7,
            remote_ip: Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1),
            remote_port: 0,
            nat_ip: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
            nat_port: 61000,
            state: "new",
            age: Duration::ZERO,
        };
        let none = Filter {
            pod: None,
            addr: None,
            proto: None,
            port: None,
        };
        assert!(none.matches_view6(&flow));
        let pod = Filter {
            pod: Some(Ipv4Addr::new(172, 39, 0, 2)),
            ..none.clone()
        };
        assert!(!pod.matches_view6(&flow));
        let nat_port = Filter {
            port: Some(61000),
            ..none.clone()
        };
        assert!(nat_port.matches_view6(&flow));
        let other_port = Filter {
            port: Some(80),
            ..none
        };
        assert!(!other_port.matches_view6(&flow));
    }
}
