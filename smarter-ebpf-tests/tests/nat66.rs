//! `BPF_PROG_TEST_RUN` tests of dual-stack pods' IPv6 (root only, nothing pinned or attached):
//! `smarter_pod` hands IPv6 to `smarter_pod6` by tail call; the source must be the pod's own
//! ULA, link-local or `::`; pod → pod ULA is redirected with the peer's MAC; the gateway and
//! unheld subnet addresses pass; NAT66 (`smarter_nat66`) rewrites UDP, TCP and ICMPv6 echo to
//! the uplink's global address with valid checksums and a decremented hop limit, and
//! `smarter_uplink` (by `smarter_uplink6`) translates the replies back, ICMPv6 errors about a
//! flow (packet too big) included (`smarter_icmp6in`); the backstop drops ULA
//! sources on an external interface; with the tail-call slots empty, the link-local-only rules
//! of a single-stack network hold.

use std::net::Ipv6Addr;

use smarter_common::{
    Verdict,
    ct::{NAT_PORT_MAX, NAT_PORT_MIN},
    link::{ICMPV6_NEIGHBOUR_ADVERT as NA, ICMPV6_NEIGHBOUR_SOLICIT as NS, link_local_of, nexthdr},
    progs,
};
use smarter_ebpf_tests::run::{run, run_gso};
use smarter_ebpf_tests::world::{count, world_with_uplink};
use smarter_ebpf_tests::world6::{
    GATEWAY6, PEER6, POD6, REMOTE6, UPLINK6, addrs, dual_stack, in_private_netns6, l4_ok6,
};
use smarter_ebpf_tests::{
    ALL_NODES_MAC, GW_MAC, HELLO, OK, PEER_MAC, POD_MAC, REDIRECT, REMOTE_MAC, SHOT, UPLINK_IF,
    root_or_skip,
};
use smarter_testbed::packet::{
    ALL_NODES, Ipv6, be16, icmp6, id_seq, nd_body, nd_opt, tcp, udp6, with_l4_csum,
};

const ETH: usize = 14;
const SNODE: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 4);

/// A UDP frame from `src`:`sport` to `dst`:`dport`, from the pod's MAC.
fn udp_frame(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    Ipv6::new(src, dst, nexthdr::UDP).frame(GW_MAC, POD_MAC, &udp6(src, dst, sport, dport, HELLO))
}

#[test]
fn pod6_checks_sources_and_delivers_on_the_node() {
    if !root_or_skip("pod6_checks_sources_and_delivers_on_the_node") {
        return;
    }
    let mut ebpf = world_with_uplink(0);
    dual_stack(&mut ebpf, &[]);
    let other: Ipv6Addr = "fd00:ac27::99".parse().unwrap();
    // Spoofed sources: an address nobody holds, the peer's, a global one.
    for src in [other, PEER6, UPLINK6] {
        let (v, _) = run(&mut ebpf, progs::POD, &udp_frame(src, GATEWAY6, 1000, 53));
        assert_eq!(v, SHOT, "source {src}");
    }
    assert_eq!(count(&ebpf, Verdict::DropSpoof), 3);
    // Another MAC with the pod's own address.
    let mut wrong_mac = udp_frame(POD6, GATEWAY6, 1000, 53);
    wrong_mac[6..12].copy_from_slice(&PEER_MAC);
    assert_eq!(run(&mut ebpf, progs::POD, &wrong_mac).0, SHOT);
    assert_eq!(count(&ebpf, Verdict::DropSpoof), 4);

    // The gateway is the host's; an address of the subnet nobody holds is the bridge's.
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(POD6, GATEWAY6, 1000, 53)).0,
        OK
    );
    assert_eq!(count(&ebpf, Verdict::PassHost), 1);
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(POD6, other, 1000, 53)).0,
        OK
    );
    let ll = Ipv6Addr::from(link_local_of(POD_MAC));
    let mcast = udp_frame(ll, ALL_NODES.into(), 1000, 53);
    assert_eq!(run(&mut ebpf, progs::POD, &mcast).0, OK);
    assert_eq!(count(&ebpf, Verdict::PassL2), 2);
    // A link-local source never leaves the link.
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(ll, UPLINK6, 1000, 53)).0,
        SHOT
    );
    assert_eq!(count(&ebpf, Verdict::DropIpv6), 1);

    // Pod → pod: redirected into the peer, its MAC written, nothing else changed.
    let to_peer = udp_frame(POD6, PEER6, 1000, 53);
    let (v, out) = run(&mut ebpf, progs::POD, &to_peer);
    assert_eq!(v, REDIRECT);
    assert_eq!(&out[0..6], &PEER_MAC);
    assert_eq!(&out[6..], &to_peer[6..]);
    assert_eq!(count(&ebpf, Verdict::RedirectPod), 1);

    // Neighbour discovery from the pod's ULA for the peer's, and an advertisement of its own
    // ULA, pass; advertising the peer's is a spoof.
    let ns = icmp6(POD6, SNODE, NS, &nd_body(0, PEER6, &nd_opt(1, POD_MAC)));
    let frame = Ipv6::new(POD6, SNODE, nexthdr::ICMPV6)
        .hop_limit(255)
        .frame(ALL_NODES_MAC, POD_MAC, &ns);
    assert_eq!(run(&mut ebpf, progs::POD, &frame).0, OK, "NS from the ULA");
    for (target, want) in [(POD6, OK), (PEER6, SHOT)] {
        let na = icmp6(POD6, PEER6, NA, &nd_body(0x60, target, &nd_opt(2, POD_MAC)));
        let frame = Ipv6::new(POD6, PEER6, nexthdr::ICMPV6)
            .hop_limit(255)
            .frame(PEER_MAC, POD_MAC, &na);
        let (v, _) = run(&mut ebpf, progs::POD, &frame);
        let want = if want == OK { REDIRECT } else { SHOT };
        assert_eq!(v, want, "NA for {target}");
    }
}

#[test]
fn without_the_ipv6_programs_ipv6_stays_link_local() {
    if !root_or_skip("without_the_ipv6_programs_ipv6_stays_link_local") {
        return;
    }
    // Slots empty (an upgrade in progress, or never filled): the single-stack rules.
    let mut ebpf = world_with_uplink(0);
    let ll = Ipv6Addr::from(link_local_of(POD_MAC));
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(POD6, GATEWAY6, 1, 2)).0,
        SHOT
    );
    assert_eq!(count(&ebpf, Verdict::DropSpoof), 1);
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(ll, GATEWAY6, 1, 2)).0,
        SHOT
    );
    assert_eq!(count(&ebpf, Verdict::DropIpv6), 1);
    // Slots filled, but the network has no IPv6: the same.
    smarter_ebpf_tests::world6::fill_tails(&mut ebpf);
    assert_eq!(
        run(&mut ebpf, progs::POD, &udp_frame(POD6, GATEWAY6, 1, 2)).0,
        SHOT
    );
    assert_eq!(count(&ebpf, Verdict::DropSpoof), 2);
}

/// NATs `out` (from [`POD6`], L4 port or echo identifier at `port_at` in the L4 header) and
/// checks it leaves from [`UPLINK6`] with `port` kept, the hop limit decremented and valid
/// checksums; then runs `reply(port)` in through the uplink and checks it reaches the pod.
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
        (UPLINK6, REMOTE6),
        "{name}: source is the uplink's"
    );
    assert_eq!(&natted[0..6], &REMOTE_MAC, "{name}: next hop's MAC");
    assert_eq!(natted[ETH + 7], out[ETH + 7] - 1, "{name}: hop limit");
    assert!(l4_ok6(&natted), "{name}: L4 checksum after NAT66");
    let (port, own) = (
        be16(&natted, ETH + 40 + port_at),
        be16(out, ETH + 40 + port_at),
    );
    if (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&own) {
        assert_eq!(
            port, own,
            "{name}: the pod's port kept (free, in the range)"
        );
    } else {
        assert!(
            (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&port),
            "{name}: port {port}"
        );
    }
    let back = reply(port);
    assert!(l4_ok6(&back), "{name}: reply checksum");
    let (v, delivered) = run(ebpf, progs::UPLINK, &back);
    assert_eq!(v, REDIRECT, "{name}: reply delivered");
    assert_eq!(
        addrs(&delivered),
        (REMOTE6, POD6),
        "{name}: reply to the pod"
    );
    assert_eq!(&delivered[0..6], &POD_MAC, "{name}: pod's MAC");
    assert!(
        l4_ok6(&delivered),
        "{name}: L4 checksum after reverse NAT66"
    );
}

#[test]
fn nat66_rewrites_both_ways_with_valid_checksums() {
    if !root_or_skip("nat66_rewrites_both_ways_with_valid_checksums") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        // The test run's device (ifindex 1) plays the uplink for the replies.
        dual_stack(&mut ebpf, &[uplink, 1]);
        let wan = |src: Ipv6Addr, next: u8, l4: Vec<u8>| {
            Ipv6::new(src, UPLINK6, next).frame(GW_MAC, REMOTE_MAC, &l4)
        };

        let out = udp_frame(POD6, REMOTE6, 40000, 53);
        roundtrip(&mut ebpf, "udp", &out, 0, |port| {
            wan(
                REMOTE6,
                nexthdr::UDP,
                udp6(REMOTE6, UPLINK6, 53, port, HELLO),
            )
        });
        let out = udp_frame(POD6, REMOTE6, NAT_PORT_MIN + 7, 53);
        roundtrip(&mut ebpf, "udp in the range", &out, 0, |port| {
            wan(
                REMOTE6,
                nexthdr::UDP,
                udp6(REMOTE6, UPLINK6, 53, port, HELLO),
            )
        });
        let syn = with_l4_csum(POD6, REMOTE6, 6, tcp(40001, 443, 0x02, &[]), 16);
        let out = Ipv6::new(POD6, REMOTE6, 6).frame(GW_MAC, POD_MAC, &syn);
        roundtrip(&mut ebpf, "tcp", &out, 0, |port| {
            let synack = with_l4_csum(REMOTE6, UPLINK6, 6, tcp(443, port, 0x12, &[]), 16);
            wan(REMOTE6, 6, synack)
        });
        let ping = icmp6(POD6, REMOTE6, 128, &id_seq(0x4242, 1));
        let out = Ipv6::new(POD6, REMOTE6, nexthdr::ICMPV6).frame(GW_MAC, POD_MAC, &ping);
        roundtrip(&mut ebpf, "ping", &out, 4, |id| {
            let pong = icmp6(REMOTE6, UPLINK6, 129, &id_seq(id, 1));
            wan(REMOTE6, nexthdr::ICMPV6, pong)
        });
        assert_eq!(count(&ebpf, Verdict::NatOut), 4);
        assert_eq!(count(&ebpf, Verdict::NatIn), 4);
        // The same flow again keeps its mapping.
        let in_range = udp_frame(POD6, REMOTE6, NAT_PORT_MIN + 7, 53);
        let (_, again) = run(&mut ebpf, progs::POD, &in_range);
        assert_eq!(be16(&again, ETH + 40), NAT_PORT_MIN + 7);

        // No conntrack entry: the node's own traffic, untouched.
        let stray = wan(REMOTE6, nexthdr::UDP, udp6(REMOTE6, UPLINK6, 53, 1, HELLO));
        let (v, back) = run(&mut ebpf, progs::UPLINK, &stray);
        assert_eq!((v, back), (OK, stray));
        // To the pods' subnet from outside: node-local only.
        let inbound = Ipv6::new(REMOTE6, POD6, nexthdr::UDP).frame(
            GW_MAC,
            REMOTE_MAC,
            &udp6(REMOTE6, POD6, 53, 40000, HELLO),
        );
        assert_eq!(run(&mut ebpf, progs::UPLINK, &inbound).0, SHOT);
        assert_eq!(count(&ebpf, Verdict::DropNodelocal), 1);
        // The backstop: a ULA source never leaves an external interface.
        let leak = udp_frame(POD6, REMOTE6, 40000, 53);
        assert_eq!(run(&mut ebpf, progs::EGRESS, &leak).0, SHOT);
        assert_eq!(count(&ebpf, Verdict::DropLeak6), 1);
    });
}

/// A pod's TCP super-packet (TSO: two 1428-byte segments in one skb, 2956 bytes of IPv6) is
/// checked against the uplink's 1500-byte MTU one segment at a time, as the kernel forwards
/// it, and NATed; the same bytes without GSO are too big and the host's (which answers packet
/// too big). Checking the whole super-packet sent a pod's bulk TCP to the host stack, which
/// dropped it: the stream crawled on retransmitted small segments.
#[test]
fn a_pods_tso_super_packet_is_natted_by_its_segment_size() {
    if !root_or_skip("a_pods_tso_super_packet_is_natted_by_its_segment_size") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        let data = vec![0x5a; 2 * 1428];
        let seg = with_l4_csum(POD6, REMOTE6, 6, tcp(40002, 443, 0x18, &data), 16);
        let out = Ipv6::new(POD6, REMOTE6, 6).frame(GW_MAC, POD_MAC, &seg);
        assert_eq!(
            run(&mut ebpf, progs::POD, &out).0,
            OK,
            "one 2956-byte packet"
        );
        assert_eq!(count(&ebpf, Verdict::PassHost), 1);
        assert_eq!(count(&ebpf, Verdict::NatOut), 0);
        let (v, natted) = run_gso(&mut ebpf, progs::POD, &out, 2, 1428);
        assert_eq!(v, REDIRECT, "two segments of 1488 bytes");
        assert_eq!(addrs(&natted), (UPLINK6, REMOTE6));
        assert_eq!(count(&ebpf, Verdict::NatOut), 1);
        assert_eq!(count(&ebpf, Verdict::PassHost), 1);
    });
}

/// A pod's own ICMPv6 error about a packet of one of its NATed flows (a UDP reply that
/// reached it after its socket closed, quoted in a destination unreachable) leaves NATed as
/// the kernel's masquerade sends it: outer source and quoted destination the flow's NAT66
/// address, quoted destination port its NAT port, the ICMPv6 checksum valid. An error quoting
/// no flow of the pod is not translatable.
#[test]
fn a_pods_icmpv6_errors_are_natted_by_the_flow_they_quote() {
    if !root_or_skip("a_pods_icmpv6_errors_are_natted_by_the_flow_they_quote") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        let (v, natted) = run(&mut ebpf, progs::POD, &udp_frame(POD6, REMOTE6, 40005, 53));
        assert_eq!(v, REDIRECT, "the flow");
        let nat_port = be16(&natted, ETH + 40);
        let error_about = |pod_port: u16| {
            let reply = Ipv6::new(REMOTE6, POD6, nexthdr::UDP)
                .packet(&udp6(REMOTE6, POD6, 53, pod_port, HELLO));
            let mut body = vec![0u8; 4];
            body.extend_from_slice(&reply);
            let err = icmp6(POD6, REMOTE6, 1, &body);
            Ipv6::new(POD6, REMOTE6, nexthdr::ICMPV6).frame(GW_MAC, POD_MAC, &err)
        };
        let (v, sent) = run(&mut ebpf, progs::POD, &error_about(40005));
        assert_eq!(v, REDIRECT, "the pod's error leaves");
        assert_eq!(addrs(&sent), (UPLINK6, REMOTE6), "from the NAT66 address");
        let quoted = ETH + 40 + 8;
        let quoted_dst: [u8; 16] = sent[quoted + 24..quoted + 40].try_into().unwrap();
        assert_eq!(
            Ipv6Addr::from(quoted_dst),
            UPLINK6,
            "quoted as it left NATed"
        );
        assert_eq!(be16(&sent, quoted + 40 + 2), nat_port, "quoted NAT port");
        assert!(l4_ok6(&sent), "ICMPv6 checksum after the rewrite");
        assert_eq!(count(&ebpf, Verdict::NatOut), 2);
        assert_eq!(run(&mut ebpf, progs::POD, &error_about(40006)).0, SHOT);
        assert_eq!(count(&ebpf, Verdict::DropUnnatable), 1, "no such flow");
    });
}
