//! The command line: what `smarter-bpfctl` accepts (clap definitions and the filters).

use std::net::{IpAddr, Ipv4Addr};
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
    /// Remove exactly one flow (IPv4, or a dual-stack pod's NAT66 flow).
    Delete {
        /// Protocol (`icmp`: ICMPv6 echo for IPv6 addresses).
        #[arg(long, value_enum)]
        proto: Proto,
        /// Pod side, `IP:PORT` or `[IPv6]:PORT` (ICMP: the echo identifier as port).
        #[arg(long)]
        pod: std::net::SocketAddr,
        /// Remote side, `IP:PORT` or `[IPv6]:PORT`, the pod side's family (ICMP: port 0).
        #[arg(long)]
        remote: std::net::SocketAddr,
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
    /// The IP protocol number (IPv4's for ICMP).
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
        }
    }

    /// The conntrack protocol number of this protocol in `family` (ICMP in IPv6 is ICMPv6).
    #[must_use]
    pub fn number_in(self, ipv6: bool) -> u8 {
        match self {
            Self::Icmp if ipv6 => ICMPV6,
            _ => self.number(),
        }
    }
}

/// ICMPv6's protocol number (NAT66 echo flows).
const ICMPV6: u8 = 58;

/// Conntrack filters (all must match).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Pod address (IPv4, or a dual-stack pod's IPv6).
    #[arg(long)]
    pub pod: Option<IpAddr>,
    /// Any address of the flow (pod, remote or NAT; IPv4 or IPv6).
    #[arg(long)]
    pub addr: Option<IpAddr>,
    /// Protocol.
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Any port of the flow (pod, remote or NAT).
    #[arg(long)]
    pub port: Option<u16>,
}

impl Filter {
    /// Whether a flow matches (addresses of either family; an address filter of the other
    /// family matches nothing).
    #[must_use]
    pub fn matches(
        &self,
        proto: u8,
        (pod, pod_port): (IpAddr, u16),
        (remote, remote_port): (IpAddr, u16),
        nat: Option<(IpAddr, u16)>,
    ) -> bool {
        self.pod.is_none_or(|p| p == pod)
            && self
                .addr
                .is_none_or(|a| a == pod || a == remote || nat.is_some_and(|n| n.0 == a))
            && self
                .proto
                .is_none_or(|p| p.number_in(pod.is_ipv6()) == proto)
            && self
                .port
                .is_none_or(|p| p == pod_port || p == remote_port || nat.is_some_and(|n| n.1 == p))
    }

    /// Whether an IPv4 or NAT66 flow matches.
    pub(super) fn matches_view<A: Into<IpAddr> + Copy>(&self, e: &CtEntryView<A>) -> bool {
        self.matches(
            e.proto,
            (e.pod_ip.into(), e.pod_port),
            (e.remote_ip.into(), e.remote_port),
            Some((e.nat_ip.into(), e.nat_port)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::{Filter, Proto};
    use crate::datapath::CtEntryView;

    #[test]
    fn filters_match_nat66_flows_by_their_own_family() {
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
        assert!(none.matches_view(&flow));
        let pod = Filter {
            pod: Some(Ipv4Addr::new(172, 39, 0, 2).into()),
            ..none.clone()
        };
        assert!(!pod.matches_view(&flow), "an IPv4 pod filter");
        let pod6 = Filter {
            pod: Some(flow.pod_ip.into()),
            ..none.clone()
        };
        assert!(pod6.matches_view(&flow), "its own pod address");
        let nat6 = Filter {
            addr: Some(flow.nat_ip.into()),
            ..none.clone()
        };
        assert!(nat6.matches_view(&flow), "its NAT66 address");
        let echo = Filter {
            proto: Some(Proto::Icmp),
            ..none.clone()
        };
        assert!(echo.matches_view(&flow), "icmp is ICMPv6 for NAT66 flows");
        let nat_port = Filter {
            port: Some(61000),
            ..none.clone()
        };
        assert!(nat_port.matches_view(&flow));
        let other_port = Filter {
            port: Some(80),
            ..none
        };
        assert!(!other_port.matches_view(&flow));
    }
}
