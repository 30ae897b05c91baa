//! `BPF_PROG_TEST_RUN` tests of NAT66 on a layer-3 uplink (a raw-IP modem, a TUN; root only,
//! nothing pinned or attached): when the route lookup picks an interface the `uplinks` map
//! flags `UPLINK_F_L3`, a pod's NATed UDP, TCP and ICMPv6 echo are redirected out of it with
//! no next-hop MACs written (the kernel strips the Ethernet header on the way to such a
//! device); `smarter_l3_in`, given the raw IPv6 reply, pushes an Ethernet header and hands
//! it to `smarter_uplink6`, which delivers it into the pod; IPv6 that is not the datapath's
//! stays untouched, IPv6 to the pods' subnet is dropped.
//!
//! `BPF_PROG_TEST_RUN` always builds an Ethernet frame (it takes the protocol from bytes 12
//! and 13 of the data and leaves the data at its start), so the raw IPv6 packets here come
//! from a remote whose address puts `0x86dd` in those bytes (the third group of the source):
//! the program then sees exactly what a layer-3 device gives it, an IPv6 header at offset 0
//! with the IPv6 protocol.

use std::{net::Ipv6Addr, process::Command};

use aya::maps::HashMap;
use smarter_common::{UplinkValue, Verdict, link::nexthdr, maps, progs, uplink::UPLINK_F_L3};
use smarter_ebpf_tests::run::run;
use smarter_ebpf_tests::world::{count, world_with_uplink};
use smarter_ebpf_tests::world6::{
    POD6, REMOTE6, UPLINK6, addrs, dual_stack, in_private_netns6, l4_ok6,
};
use smarter_ebpf_tests::{
    GW_MAC, HELLO, OK, POD_MAC, REDIRECT, REMOTE_MAC, SHOT, UPLINK_IF, root_or_skip,
};
use smarter_testbed::packet::{ETH_HLEN as ETH, with_l4_csum};
use smarter_testbed::packet::{ETH_P_IPV6, Ipv6, be16, icmp6, id_seq, tcp, udp6};

/// A remote host beyond the uplink whose address carries `0x86dd` at bytes 4 and 5 (see the
/// module's note), routed through [`REMOTE6`].
const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x86dd, 0, 0, 0, 0, 7);

/// Flags the world's uplink `ifindex` as a layer-3 device.
fn make_l3(ebpf: &mut aya::Ebpf, ifindex: u32) {
    let mut ups: HashMap<_, u32, UplinkValue> =
        HashMap::try_from(ebpf.map_mut(maps::UPLINKS).unwrap()).unwrap();
    let mut up = ups.get(&ifindex, 0).unwrap();
    up.flags |= UPLINK_F_L3;
    ups.insert(ifindex, up, 0).unwrap();
}

/// NATs `out` (L4 port or echo identifier at `port_at`) out of the layer-3 uplink, then runs
/// `reply(port)` (a raw IPv6 packet) through `smarter_l3_in` and checks it reaches the pod.
fn roundtrip(
    ebpf: &mut aya::Ebpf,
    name: &str,
    out: &[u8],
    port_at: usize,
    reply: impl Fn(u16) -> Vec<u8>,
) {
    let (v, natted) = run(ebpf, progs::POD, out);
    assert_eq!(v, REDIRECT, "{name}: NATed out");
    assert_eq!(
        addrs(&natted),
        (UPLINK6, FAR6),
        "{name}: source is the uplink's"
    );
    assert_eq!(
        &natted[0..12],
        &out[0..12],
        "{name}: no next-hop MACs on a layer-3 device (the header goes)"
    );
    assert_ne!(&natted[0..6], &REMOTE_MAC, "{name}: not the Ethernet way");
    assert_eq!(natted[ETH + 7], out[ETH + 7] - 1, "{name}: hop limit");
    assert!(l4_ok6(&natted), "{name}: L4 checksum after NAT66");
    let port = be16(&natted, ETH + 40 + port_at);
    let back = reply(port);
    assert_eq!(back[0] >> 4, 6, "{name}: a raw IPv6 packet");
    let (v, delivered) = run(ebpf, progs::L3_IN, &back);
    assert_eq!(v, REDIRECT, "{name}: reply delivered");
    assert_eq!(
        delivered.len(),
        back.len() + ETH,
        "{name}: Ethernet header pushed"
    );
    assert_eq!(be16(&delivered, 12), ETH_P_IPV6, "{name}: its type");
    assert_eq!(addrs(&delivered), (FAR6, POD6), "{name}: reply to the pod");
    assert_eq!(&delivered[0..6], &POD_MAC, "{name}: pod's MAC");
    assert!(
        l4_ok6(&delivered),
        "{name}: L4 checksum after reverse NAT66"
    );
}

#[test]
fn nat66_works_both_ways_on_a_layer3_uplink() {
    if !root_or_skip("nat66_works_both_ways_on_a_layer3_uplink") {
        return;
    }
    in_private_netns6(|| {
        let route = Command::new("ip")
            .args(["-6", "route", "add", "2001:db8:86dd::/64", "via"])
            .arg(REMOTE6.to_string())
            .args(["dev", UPLINK_IF])
            .status()
            .unwrap();
        assert!(route.success(), "route to FAR6");
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        make_l3(&mut ebpf, uplink);
        // The test run's device (ifindex 1) plays the uplink for the replies.
        dual_stack(&mut ebpf, &[uplink, 1]);
        let wan = |next: u8, l4: Vec<u8>| Ipv6::new(FAR6, UPLINK6, next).packet(&l4);

        let from_pod =
            |next: u8, l4: Vec<u8>| Ipv6::new(POD6, FAR6, next).frame(GW_MAC, POD_MAC, &l4);
        let out = from_pod(nexthdr::UDP, udp6(POD6, FAR6, 40000, 53, HELLO));
        roundtrip(&mut ebpf, "udp", &out, 0, |port| {
            wan(nexthdr::UDP, udp6(FAR6, UPLINK6, 53, port, HELLO))
        });
        let syn = with_l4_csum(POD6, FAR6, 6, tcp(40001, 443, 0x02, &[]), 16);
        roundtrip(&mut ebpf, "tcp", &from_pod(6, syn), 0, |port| {
            wan(
                6,
                with_l4_csum(FAR6, UPLINK6, 6, tcp(443, port, 0x12, &[]), 16),
            )
        });
        // An echo with a payload: `BPF_PROG_TEST_RUN` wants a whole IPv6 header after the
        // 14 bytes it takes for Ethernet, so a raw reply must be at least 54 bytes.
        let echo = |id: u16| [id_seq(id, 1).as_slice(), HELLO].concat();
        let ping = icmp6(POD6, FAR6, 128, &echo(0x4242));
        roundtrip(
            &mut ebpf,
            "ping",
            &from_pod(nexthdr::ICMPV6, ping),
            4,
            |id| wan(nexthdr::ICMPV6, icmp6(FAR6, UPLINK6, 129, &echo(id))),
        );
        assert_eq!(count(&ebpf, Verdict::NatOut), 3);
        assert_eq!(count(&ebpf, Verdict::NatIn), 3);

        // No conntrack entry: the node's own traffic, passed (the pushed header is below
        // what the host stack reads) and uncounted.
        let stray = wan(nexthdr::UDP, udp6(FAR6, UPLINK6, 53, 1, HELLO));
        assert_eq!(run(&mut ebpf, progs::L3_IN, &stray).0, OK);
        // To an address that is not the datapath's: untouched.
        let other: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        let foreign = Ipv6::new(FAR6, other, nexthdr::UDP).packet(&udp6(FAR6, other, 53, 1, HELLO));
        let (v, back) = run(&mut ebpf, progs::L3_IN, &foreign);
        assert_eq!((v, back), (OK, foreign));
        assert_eq!(count(&ebpf, Verdict::NatIn), 3);
        // To the pods' subnet from outside: node-local only.
        let inbound =
            Ipv6::new(FAR6, POD6, nexthdr::UDP).packet(&udp6(FAR6, POD6, 53, 40000, HELLO));
        assert_eq!(run(&mut ebpf, progs::L3_IN, &inbound).0, SHOT);
        assert_eq!(count(&ebpf, Verdict::DropNodelocal), 1);
    });
}
