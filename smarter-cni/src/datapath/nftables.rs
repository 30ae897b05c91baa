//! The nftables datapath: the eBPF datapath's semantics with netfilter rules per network.
//!
//! Each network owns two tables named `smarter_<network>` (see [`NftablesDatapath::ensure`]):
//! - `inet`: masquerade of the pod subnet out of the uplinks (every interface but the bridge,
//!   or the configured ones; NAT ports in `nat_ports`), hostPort DNAT for traffic to the
//!   node's own addresses (prerouting and output) from maps `hostport_tcp`/`hostport_udp`
//!   (`port : pod ip . pod port`, every address) and `hostip_tcp`/`hostip_udp`
//!   (`address . port : pod ip . pod port`, the `hostIP`), hairpin masquerade, the `deny`
//!   interval set, node-local-only filtering in forward, the leak backstop, and per-pod
//!   traffic per interface in the dynamic sets `traffic_out`/`traffic_in`;
//! - `bridge` (`l2`): what pods may send on the link, on the pod ports (set `ports`): IPv4 and
//!   ARP against the set `endpoints` of `ifname . ipv4_addr . ether_addr`, IPv6 against the
//!   port's MAC (`macs`) and link-local address (`link_locals`), the RA guard, and no other
//!   ethertype.
//!
//! In a dual-stack network ([`NftablesConfig::v6`]) both tables say the same of the pods' IPv6
//! (ULA) subnet: masquerade, node-local-only, the backstop, hostPort DNAT from
//! `hostport6_tcp`/`hostport6_udp` on the node's IPv6 addresses, and the bridge table's
//! `endpoints6` (`ifname . ULA`, a pod's one IPv6 source besides `::` and its link-local
//! address, also the one it may claim in neighbour discovery), pod traffic in
//! `traffic6_out`/`traffic6_in`; the node then forwards IPv6
//! ([`NftablesDatapath::enable_ipv6_forwarding`]).
//!
//! Rules never mention a pod: ADD and DEL only add and delete set elements, each as one atomic
//! `nft -f -` batch. Verdicts are counted by named counters ([`NftablesDatapath::counters`]),
//! pod traffic by set elements ([`NftablesDatapath::pod_traffic`]).
//! Everything runs `nft` in the calling thread's network namespace.

mod config;
mod error;
mod exec;
mod forward6;
mod hostports;
mod l2;
mod network;
mod parse;
mod probe;
mod rows;
mod script;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;
mod traffic;
mod traffic_view;

pub use config::NftablesConfig;
pub use error::NftablesError;
pub use network::NftablesNetwork;
pub use tables::NftablesDatapath;
