//! The contenders' side of the NAT66 world ([`Topology::Dual`](super::Topology::Dual)): the
//! uplink dual-stack (`World::add_ipv6`: the node's global [`NODE_DUAL_IP6`], its IPv6 default
//! route via the wan, the wan's IPv6 server). Pods' IPv6 reaches the wan's IPv6 server:
//!
//! - the reference chain: the bridge plugin with an IPv6 range in host-local besides the IPv4
//!   one ([`SUBNET6`], gateway [`GATEWAY6`], routes `0.0.0.0/0` and `::/0`) and `ipMasq`,
//!   which masquerades the pods' ULA with ip6tables as it does IPv4 with iptables: the
//!   kernel's ip6 masquerade;
//! - smarter-cni, both datapaths: its defaults (`ipv6: auto`: the node has a global IPv6
//!   address on the uplink), so pods get a ULA of its `subnet6` (the same [`SUBNET6`] by
//!   default) NATed to the uplink's global address;
//! - the limit: pods with a global IPv6 address of their own
//!   ([`limit_pod_ip6`](super::nat64::limit_pod_ip6)), routed natively by the node (the wan
//!   routes [`LIMIT_PODS6`](super::nat64::LIMIT_PODS6) back to [`NODE_DUAL_IP6`]).
//!
//! So every NAT contender's traffic reaches the wan from [`NODE_DUAL_IP6`], the limit's from the
//! pod itself.

use std::net::Ipv6Addr;

use serde_json::{Value, json};
#[cfg(doc)]
use smarter_testbed::NODE_DUAL_IP6;
use smarter_testbed::World;

/// The pods' IPv6 subnet of the NAT contenders (a ULA; smarter-cni's default `subnet6`).
pub const SUBNET6: &str = "fd00:ac27::/64";
/// The pods' IPv6 gateway on the bridge (the subnet's `::1`).
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);

/// host-local's configuration for the reference chain on a dual-stack uplink: the IPv4 range
/// and the IPv6 one, a default route for each family.
pub fn reference_ipam(w: &World) -> Value {
    json!({
        "type": "host-local",
        "ranges": [[{"subnet": "172.39.0.0/16", "gateway": "172.39.0.1"}],
                   [{"subnet": SUBNET6, "gateway": GATEWAY6.to_string()}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dataDir": w.data_dir()
    })
}
