//! `BPF_PROG_TEST_RUN` tests of dual-stack pods' fragmented IPv6 and IPv6 hostPorts (root
//! only, nothing pinned or attached). Fragments: the RA guard drops a fragment that could be a
//! router message (link-local source) and lets a pod's ULA fragments beyond the link pass;
//! pod → pod fragments are redirected whole; NAT66 translates a first fragment by its ports
//! (the datagram's checksum, over all fragments, still holds) and later ones by address; the
//! reverse path delivers a reply's first fragment by conntrack and its later ones by the
//! fragment map; a later fragment before its first is the host's. hostPorts (`hostports6`):
//! from the wan to the node's global address, hairpin from a pod (the reply gets
//! `node address:hostPort` back) and the node's own connection on the loopback
//! (`smarter_local` → `smarter_local6`), with the wan flow's reply leaving through NAT66 as
//! `node address:hostPort`.

use std::net::Ipv6Addr;

use aya::maps::HashMap;
use smarter_common::{
    HostPortKey, Verdict,
    link::{link_local_of, nexthdr},
    maps, progs,
    v6::HostPort6Value,
};
use smarter_ebpf_tests::run::run;
use smarter_ebpf_tests::world::{count, world_with_uplink};
use smarter_ebpf_tests::world6::{
    PEER6, POD6, REMOTE6, UPLINK6, addrs, dual_stack, in_private_netns6,
};
use smarter_ebpf_tests::{
    GW_MAC, OK, PEER_MAC, POD_MAC, REDIRECT, REMOTE_MAC, SHOT, UPLINK_IF, root_or_skip,
};
use smarter_testbed::packet::{ALL_NODES, Ipv6, be16, inet_csum, udp6};

const ETH: usize = 14;
/// Bytes of the UDP datagram (header included) the first fragment carries.
const FIRST: usize = 48;

/// A fragment of a datagram of protocol `next`: `part` at byte `offset` (a multiple of 8),
/// fragment id `id`, `more` fragments following.
fn fragment(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    macs: ([u8; 6], [u8; 6]),
    (next, id, offset, more): (u8, u32, usize, bool),
    part: &[u8],
) -> Vec<u8> {
    let word = u16::try_from(offset).unwrap() | u16::from(more);
    let mut body = vec![next, 0];
    body.extend_from_slice(&word.to_be_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(part);
    Ipv6::new(src, dst, nexthdr::FRAGMENT).frame(macs.0, macs.1, &body)
}

/// The two fragments of UDP datagram `dgram` from `src` to `dst`.
fn split(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    macs: ([u8; 6], [u8; 6]),
    id: u32,
    dgram: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let first = fragment(src, dst, macs, (17, id, 0, true), &dgram[..FIRST]);
    let later = fragment(src, dst, macs, (17, id, FIRST, false), &dgram[FIRST..]);
    (first, later)
}

/// Whether the UDP checksum of the datagram made of `first`'s and `later`'s fragment payloads
/// holds for `first`'s addresses; the datagram's ports.
fn reassembled_ok(first: &[u8], later: &[u8]) -> (bool, u16, u16) {
    let (src, dst) = addrs(first);
    let mut dgram = first[ETH + 48..].to_vec();
    dgram.extend_from_slice(&later[ETH + 48..]);
    let mut over = src.octets().to_vec();
    over.extend_from_slice(&dst.octets());
    over.extend_from_slice(&u32::try_from(dgram.len()).unwrap().to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, 17]);
    over.extend_from_slice(&dgram);
    (inet_csum(&over) == 0, be16(&dgram, 0), be16(&dgram, 2))
}

/// A payload long enough to need two fragments here.
fn payload() -> Vec<u8> {
    (0..120u8).collect()
}

#[test]
fn fragments_pass_the_guard_and_nat66_both_ways() {
    if !root_or_skip("fragments_pass_the_guard_and_nat66_both_ways") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        let from_pod = (GW_MAC, POD_MAC);

        // A fragment from the pod's link-local address could be a router message.
        let ll = Ipv6Addr::from(link_local_of(POD_MAC));
        let dgram = udp6(ll, ALL_NODES, 1000, 2000, &payload());
        let (first, _) = split(ll, ALL_NODES.into(), from_pod, 1, &dgram);
        assert_eq!(run(&mut ebpf, progs::POD, &first).0, SHOT);
        assert_eq!(count(&ebpf, Verdict::DropRaGuard), 1);

        // Pod → pod: both fragments redirected whole into the peer.
        let dgram = udp6(POD6, PEER6, 1000, 2000, &payload());
        let (first, later) = split(POD6, PEER6, from_pod, 2, &dgram);
        for f in [&first, &later] {
            let (v, out) = run(&mut ebpf, progs::POD, f);
            assert_eq!(v, REDIRECT);
            assert_eq!(&out[0..6], &PEER_MAC);
            assert_eq!(&out[6..], &f[6..]);
        }
        assert_eq!(count(&ebpf, Verdict::RedirectPod), 2);

        // NAT66 out: the first fragment by its ports, the later one by address.
        let dgram = udp6(POD6, REMOTE6, 40000, 53, &payload());
        let (first, later) = split(POD6, REMOTE6, from_pod, 3, &dgram);
        let (v, first_out) = run(&mut ebpf, progs::POD, &first);
        assert_eq!(v, REDIRECT, "first fragment NATed");
        let (v, later_out) = run(&mut ebpf, progs::POD, &later);
        assert_eq!(v, REDIRECT, "later fragment NATed");
        for out in [&first_out, &later_out] {
            assert_eq!(addrs(out), (UPLINK6, REMOTE6));
            assert_eq!(&out[0..6], &REMOTE_MAC);
            assert_eq!(out[ETH + 7], first[ETH + 7] - 1, "hop limit");
        }
        assert_eq!(
            &later_out[ETH + 40..],
            &later[ETH + 40..],
            "payload untouched"
        );
        let (ok, port, _) = reassembled_ok(&first_out, &later_out);
        assert!(ok, "the datagram's checksum holds after NAT66");
        assert_eq!(count(&ebpf, Verdict::NatOut), 2);

        // The reply, fragmented: the first by conntrack, the later one by the fragment map.
        let from_wan = (GW_MAC, REMOTE_MAC);
        let back = udp6(REMOTE6, UPLINK6, 53, port, &payload());
        let (first, later) = split(REMOTE6, UPLINK6, from_wan, 0x0abc_def0, &back);
        // The later fragment before its first: nothing to follow, the host's (untouched).
        let (v, out) = run(&mut ebpf, progs::UPLINK, &later);
        assert_eq!((v, &out), (OK, &later));
        let (v, first_in) = run(&mut ebpf, progs::UPLINK, &first);
        assert_eq!(v, REDIRECT, "first fragment of the reply");
        let (v, later_in) = run(&mut ebpf, progs::UPLINK, &later);
        assert_eq!(v, REDIRECT, "later fragment of the reply");
        for out in [&first_in, &later_in] {
            assert_eq!(addrs(out), (REMOTE6, POD6));
            assert_eq!(&out[0..6], &POD_MAC);
        }
        let (ok, _, dport) = reassembled_ok(&first_in, &later_in);
        assert!(ok, "the reply's checksum holds after reverse NAT66");
        assert_eq!(dport, 40000);
        assert_eq!(count(&ebpf, Verdict::NatIn), 1);
        assert_eq!(count(&ebpf, Verdict::FragIn), 1);
        // Another datagram's later fragment (another id): the host's.
        let (_, stray) = split(REMOTE6, UPLINK6, from_wan, 7, &back);
        assert_eq!(run(&mut ebpf, progs::UPLINK, &stray).0, OK);
    });
}

/// Maps UDP `host_port` on every node IPv6 address to `pod`:`pod_port`, and puts [`UPLINK6`]
/// among the node's addresses.
fn host_port6(ebpf: &mut aya::Ebpf, host_port: u16, pod: Ipv6Addr, pod_port: u16) {
    let mut hp: HashMap<_, HostPortKey, HostPort6Value> =
        HashMap::try_from(ebpf.map_mut(maps::HOSTPORTS6).unwrap()).unwrap();
    let key = HostPortKey {
        port: host_port.to_be(),
        proto: 17,
        pad: 0,
        host_ip: 0,
    };
    let value = HostPort6Value {
        addr: pod.octets(),
        pod_ip: 1,
        pod_port: pod_port.to_be(),
        pad: 0,
    };
    hp.insert(key, value, 0).unwrap();
    let mut node: HashMap<_, [u8; 16], u32> =
        HashMap::try_from(ebpf.map_mut(maps::NODE_ADDRS6).unwrap()).unwrap();
    node.insert(UPLINK6.octets(), 1, 0).unwrap();
}

/// A UDP frame `src:sport → dst:dport` with `macs`.
fn udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let l4 = udp6(src, dst, sport, dport, &payload());
    Ipv6::new(src, dst, nexthdr::UDP).frame(macs.0, macs.1, &l4)
}

/// Asserts frame `f` is UDP `src:sport → dst:dport` with a valid checksum.
fn assert_udp(f: &[u8], src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, what: &str) {
    assert_eq!(addrs(f), (src, dst), "{what}: addresses");
    assert_eq!(
        (be16(f, ETH + 40), be16(f, ETH + 42)),
        (sport, dport),
        "{what}: ports"
    );
    let l4 = &f[ETH + 40..];
    let mut over = src.octets().to_vec();
    over.extend_from_slice(&dst.octets());
    over.extend_from_slice(&u32::try_from(l4.len()).unwrap().to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, 17]);
    over.extend_from_slice(l4);
    assert_eq!(inet_csum(&over), 0, "{what}: checksum");
}

#[test]
fn hostports_answer_on_the_node_ipv6_address() {
    if !root_or_skip("hostports_answer_on_the_node_ipv6_address") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        host_port6(&mut ebpf, 8080, POD6, 80);
        host_port6(&mut ebpf, 8081, PEER6, 81);
        let (from_wan, from_pod) = ((GW_MAC, REMOTE_MAC), (GW_MAC, POD_MAC));

        // From the wan: into the pod, and its reply leaves as node address:hostPort.
        let f = udp(REMOTE6, UPLINK6, 5555, 8080, from_wan);
        let (v, out) = run(&mut ebpf, progs::UPLINK, &f);
        assert_eq!(v, REDIRECT);
        assert_eq!(&out[0..6], &POD_MAC);
        assert_udp(&out, REMOTE6, 5555, POD6, 80, "wan → hostPort");
        assert_eq!(count(&ebpf, Verdict::HostportIn), 1);
        let (v, out) = run(
            &mut ebpf,
            progs::POD,
            &udp(POD6, REMOTE6, 80, 5555, from_pod),
        );
        assert_eq!(v, REDIRECT);
        assert_udp(&out, UPLINK6, 8080, REMOTE6, 5555, "its reply");
        // A port that is no hostPort: the host's.
        let f = udp(REMOTE6, UPLINK6, 5555, 9999, from_wan);
        assert_eq!(run(&mut ebpf, progs::UPLINK, &f), (OK, f));

        // Hairpin: a pod to the node's address:hostPort reaches the mapped pod directly.
        let f = udp(POD6, UPLINK6, 6666, 8081, from_pod);
        let (v, out) = run(&mut ebpf, progs::POD, &f);
        assert_eq!(v, REDIRECT);
        assert_eq!(&out[0..6], &PEER_MAC);
        assert_udp(&out, POD6, 6666, PEER6, 81, "hairpin");
        // A pod reaching its own hostPort: its reply comes back from node address:hostPort.
        let f = udp(POD6, UPLINK6, 6667, 8080, from_pod);
        let (v, out) = run(&mut ebpf, progs::POD, &f);
        assert_eq!(v, REDIRECT);
        assert_udp(&out, POD6, 6667, POD6, 80, "hairpin to itself");
        let (v, out) = run(&mut ebpf, progs::POD, &udp(POD6, POD6, 80, 6667, from_pod));
        assert_eq!(v, REDIRECT);
        assert_udp(&out, UPLINK6, 8080, POD6, 6667, "hairpin reply");
        assert_eq!(count(&ebpf, Verdict::HostportIn), 3);

        // The node itself, on the loopback: into the pod; the reply is the host's again, from
        // node address:hostPort.
        let f = udp(UPLINK6, UPLINK6, 7777, 8080, ([0; 6], [0; 6]));
        let (v, out) = run(&mut ebpf, progs::LOCAL, &f);
        assert_eq!(v, REDIRECT);
        assert_udp(&out, UPLINK6, 7777, POD6, 80, "node → hostPort");
        assert_eq!(
            out[ETH + 7],
            f[ETH + 7],
            "delivered, not forwarded: hop limit kept"
        );
        let (v, out) = run(
            &mut ebpf,
            progs::POD,
            &udp(POD6, UPLINK6, 80, 7777, from_pod),
        );
        assert_eq!(v, OK);
        assert_udp(&out, UPLINK6, 8080, UPLINK6, 7777, "node-local reply");
        assert_eq!(count(&ebpf, Verdict::HostportIn), 4);
    });
}
