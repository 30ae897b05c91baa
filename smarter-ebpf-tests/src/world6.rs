//! The dual-stack half of [`crate::world`]: the pods' ULA subnet and gateway in the config,
//! the two pods' IPv6 endpoints, the tail-called programs in their slots, and the uplink's
//! global IPv6 address (NAT66) in a private namespace whose FIB knows a remote host.

use std::net::Ipv6Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, ProgramArray},
};
use smarter_common::{
    EndpointValue, NetConfig, maps, progs,
    v6::{Endpoint6Key, Uplink6Value},
};

use crate::{PEER_MAC, POD_MAC, REMOTE_MAC, UPLINK_IF};

/// The pods' IPv6 subnet, `fd00:ac27::/64`.
pub const SUBNET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 0);
/// The bridge's IPv6 address, the pods' gateway.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);
/// [`crate::POD`]'s ULA (ifindex 1).
pub const POD6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 3);
/// [`crate::PEER`]'s ULA (ifindex 4242).
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 4);
/// The uplink's global address, the NAT66 address.
pub const UPLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// A remote host beyond the uplink (a static neighbour in [`in_private_netns6`]).
pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);

/// Puts the tail-called programs of `ebpf` into their slots (loading them first).
///
/// # Panics
/// When a program is missing or the array update fails.
pub fn fill_tails(ebpf: &mut Ebpf) {
    let mut fds = Vec::new();
    for (name, slot) in progs::TAILS {
        let prog = crate::world::classifier(ebpf, name);
        fds.push((slot, prog.fd().unwrap().try_clone().unwrap()));
    }
    let mut tails = ProgramArray::try_from(ebpf.map_mut(maps::TAILS).unwrap()).unwrap();
    for (slot, fd) in &fds {
        tails.set(*slot, fd, 0).unwrap();
    }
}

/// Makes the network of `ebpf` ([`crate::world::world_with_uplink`]) dual-stack: subnet and
/// gateway, [`POD6`] and [`PEER6`], the tails; `uplink6`: the NAT66 address of these ifindexes.
///
/// # Panics
/// When a map update fails.
pub fn dual_stack(ebpf: &mut Ebpf, uplink6: &[u32]) {
    let mut cfg: Array<_, NetConfig> =
        Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
    let mut net = cfg.get(&maps::CONFIG_INDEX, 0).unwrap();
    net.subnet6 = SUBNET6.octets();
    net.gateway6 = GATEWAY6.octets();
    net.prefix6_len = 64;
    cfg.set(maps::CONFIG_INDEX, net, 0).unwrap();
    let mut eps: HashMap<_, Endpoint6Key, EndpointValue> =
        HashMap::try_from(ebpf.map_mut(maps::ENDPOINTS6).unwrap()).unwrap();
    for (ip, ifindex, mac) in [(POD6, 1, POD_MAC), (PEER6, 4242, PEER_MAC)] {
        let value = EndpointValue {
            ifindex,
            mac,
            ..EndpointValue::default()
        };
        eps.insert(Endpoint6Key { addr: ip.octets() }, value, 0)
            .unwrap();
    }
    let mut ups: HashMap<_, u32, Uplink6Value> =
        HashMap::try_from(ebpf.map_mut(maps::UPLINKS6).unwrap()).unwrap();
    for ifindex in uplink6 {
        let value = Uplink6Value {
            addr: UPLINK6.octets(),
        };
        ups.insert(ifindex, value, 0).unwrap();
    }
    fill_tails(ebpf);
}

/// As [`crate::world::in_private_netns`], with [`UPLINK6`]/64 on the uplink, [`REMOTE6`] a
/// static neighbour, and IPv6 forwarding on the loopback (the test run's device, the route
/// lookup's input).
///
/// # Panics
/// As [`crate::world::in_private_netns`].
pub fn in_private_netns6(f: impl FnOnce() + Send) {
    let w = smarter_testbed::World::new("ebpf_tests6").expect("namespace world");
    let node = w.node();
    node.ip(&format!("-6 addr add {UPLINK6}/64 dev {UPLINK_IF} nodad"));
    node.ip(&format!(
        "-6 neigh replace {REMOTE6} lladdr {} dev {UPLINK_IF}",
        smarter_testbed::mac_text(REMOTE_MAC)
    ));
    node.exec(&["sysctl", "-qw", "net.ipv6.conf.lo.forwarding=1"])
        .expect("forwarding");
    node.run(f);
}

/// The IPv6 source and destination of Ethernet frame `f`.
///
/// # Panics
/// When `f` is shorter than the two headers.
#[must_use]
pub fn addrs(f: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    const ETH: usize = smarter_testbed::packet::ETH_HLEN;
    let s: [u8; 16] = f[ETH + 8..ETH + 24].try_into().unwrap();
    let d: [u8; 16] = f[ETH + 24..ETH + 40].try_into().unwrap();
    (s.into(), d.into())
}

/// Where the upper-layer header of IPv6 frame `f` starts and its protocol, behind any
/// hop-by-hop, routing and destination options headers.
///
/// # Panics
/// When `f` is shorter than its headers say.
#[must_use]
pub fn upper_layer(f: &[u8]) -> (usize, u8) {
    const ETH: usize = smarter_testbed::packet::ETH_HLEN;
    let (mut at, mut next) = (ETH + 40, f[ETH + 6]);
    while matches!(next, 0 | 43 | 60) {
        next = f[at];
        at += (usize::from(f[at + 1]) + 1) * 8;
    }
    (at, next)
}

/// Whether the L4 checksum of the IPv6 frame `f` (behind any extension headers,
/// [`upper_layer`]) holds over its pseudo header.
///
/// # Panics
/// As [`addrs`].
#[must_use]
pub fn l4_ok6(f: &[u8]) -> bool {
    let (src, dst) = addrs(f);
    let (at, next) = upper_layer(f);
    let l4 = &f[at..];
    let mut over = src.octets().to_vec();
    over.extend_from_slice(&dst.octets());
    over.extend_from_slice(&u32::try_from(l4.len()).unwrap().to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, next]);
    over.extend_from_slice(l4);
    smarter_testbed::inet_csum(&over) == 0
}
