//! `BPF_PROG_TEST_RUN` tests of NAT66 behind IPv6 extension headers (root only, nothing
//! pinned or attached). The kernel's `ip6 masquerade` finds the upper-layer header behind
//! hop-by-hop, routing and destination options and fragment headers (`ipv6_skip_exthdr`) and
//! translates it; NAT66 walks the same chain: TCP, UDP and echo behind such headers leave
//! from the uplink's address and their replies (with headers of their own) reach the pod,
//! the headers untouched and the checksums valid, a first fragment behind a destination
//! options header by its ports. A chain longer than NAT66 walks, or a protocol without ports
//! (ESP), is dropped, never forwarded with the pod's address.

use smarter_common::{Verdict, ct::NAT_PORT_MIN, link::nexthdr, progs};
use smarter_ebpf_tests::run::run;
use smarter_ebpf_tests::world::{count, world_with_uplink};
use smarter_ebpf_tests::world6::{
    POD6, REMOTE6, UPLINK6, addrs, dual_stack, in_private_netns6, l4_ok6, upper_layer,
};
use smarter_ebpf_tests::{
    GW_MAC, HELLO, POD_MAC, REDIRECT, REMOTE_MAC, SHOT, UPLINK_IF, root_or_skip,
};
use smarter_testbed::packet::{Ipv6, be16, ext8, icmp6, id_seq, tcp, udp6, with_l4_csum};

const ETH: usize = 14;

/// A segment routing header with no segments left (the packet is at its final destination's
/// route already), then `next`.
fn routing(next: u8) -> Vec<u8> {
    vec![next, 0, 4, 0, 0, 0, 0, 0]
}

/// A frame from the pod: `exts` (each header's next field already chained), then `l4` of
/// protocol `first` when `exts` is empty.
fn from_pod(first: u8, exts: &[Vec<u8>], l4: &[u8]) -> Vec<u8> {
    Ipv6::new(POD6, REMOTE6, first).hop_limit(64).frame(
        GW_MAC,
        POD_MAC,
        &[exts.concat(), l4.to_vec()].concat(),
    )
}

/// A frame from the remote to the uplink's address.
fn from_wan(first: u8, exts: &[Vec<u8>], l4: &[u8]) -> Vec<u8> {
    Ipv6::new(REMOTE6, UPLINK6, first).hop_limit(64).frame(
        GW_MAC,
        REMOTE_MAC,
        &[exts.concat(), l4.to_vec()].concat(),
    )
}

/// Runs `out` through the pod's program and `reply(nat port)` in through the uplink; checks
/// the addresses, the untouched extension headers, the ports (`port_at`: the port's or echo
/// identifier's offset in the L4 header) and the checksums both ways.
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
        "{name}: the uplink's source"
    );
    let (at, proto) = upper_layer(out);
    assert_eq!(upper_layer(&natted), (at, proto), "{name}: the same chain");
    assert_eq!(
        natted[ETH + 40..at],
        out[ETH + 40..at],
        "{name}: the extension headers untouched"
    );
    assert!(l4_ok6(&natted), "{name}: L4 checksum after NAT66");
    let port = be16(&natted, at + port_at);
    assert_eq!(
        port,
        be16(out, at + port_at),
        "{name}: a free port in the range is kept"
    );
    let back = reply(port);
    assert!(l4_ok6(&back), "{name}: the reply's checksum");
    let (v, delivered) = run(ebpf, progs::UPLINK, &back);
    assert_eq!(v, REDIRECT, "{name}: reply delivered");
    assert_eq!(addrs(&delivered), (REMOTE6, POD6), "{name}: to the pod");
    assert_eq!(&delivered[0..6], &POD_MAC, "{name}: the pod's MAC");
    assert!(
        l4_ok6(&delivered),
        "{name}: L4 checksum after reverse NAT66"
    );
    let (back_at, _) = upper_layer(&back);
    assert_eq!(
        delivered[ETH + 40..back_at],
        back[ETH + 40..back_at],
        "{name}: the reply's extension headers untouched"
    );
}

#[test]
fn nat66_walks_extension_headers_both_ways() {
    if !root_or_skip("nat66_walks_extension_headers_both_ways") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);

        let udp = udp6(POD6, REMOTE6, NAT_PORT_MIN + 10, 53, HELLO);
        let out = from_pod(nexthdr::DEST_OPTS, &[ext8(nexthdr::UDP)], &udp);
        roundtrip(
            &mut ebpf,
            "udp behind destination options",
            &out,
            0,
            |port| {
                let l4 = udp6(REMOTE6, UPLINK6, 53, port, HELLO);
                let exts = [ext8(nexthdr::DEST_OPTS), ext8(nexthdr::UDP)];
                from_wan(nexthdr::HOP_BY_HOP, &exts, &l4)
            },
        );

        let syn = with_l4_csum(POD6, REMOTE6, 6, tcp(NAT_PORT_MIN + 11, 443, 0x02, &[]), 16);
        let exts = [ext8(nexthdr::ROUTING), routing(nexthdr::DEST_OPTS), ext8(6)];
        let out = from_pod(nexthdr::HOP_BY_HOP, &exts, &syn);
        roundtrip(&mut ebpf, "tcp behind three headers", &out, 0, |port| {
            let synack = with_l4_csum(REMOTE6, UPLINK6, 6, tcp(443, port, 0x12, &[]), 16);
            from_wan(nexthdr::DEST_OPTS, &[ext8(6)], &synack)
        });

        let ping = icmp6(POD6, REMOTE6, 128, &id_seq(NAT_PORT_MIN + 12, 1));
        let out = from_pod(nexthdr::DEST_OPTS, &[ext8(nexthdr::ICMPV6)], &ping);
        roundtrip(
            &mut ebpf,
            "echo behind destination options",
            &out,
            4,
            |id| {
                let pong = icmp6(REMOTE6, UPLINK6, 129, &id_seq(id, 1));
                from_wan(nexthdr::ICMPV6, &[], &pong)
            },
        );
        assert_eq!(count(&ebpf, Verdict::NatOut), 3);
        assert_eq!(count(&ebpf, Verdict::NatIn), 3);
    });
}

/// The fragment header behind a destination options header: the first fragment is
/// translated by its ports (the checksum, over the whole datagram, stays right for the new
/// source), a later one by address.
#[test]
fn a_fragment_header_behind_other_headers_is_walked() {
    if !root_or_skip("a_fragment_header_behind_other_headers_is_walked") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        let data: Vec<u8> = (0..120u8).collect();
        let dgram = udp6(POD6, REMOTE6, NAT_PORT_MIN + 13, 53, &data);
        let frag = |offset: usize, more: bool| {
            let word = u16::try_from(offset).unwrap() | u16::from(more);
            let mut f = vec![nexthdr::UDP, 0];
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            f
        };
        let first = from_pod(
            nexthdr::DEST_OPTS,
            &[ext8(nexthdr::FRAGMENT), frag(0, true)],
            &dgram[..48],
        );
        let later = from_pod(
            nexthdr::DEST_OPTS,
            &[ext8(nexthdr::FRAGMENT), frag(48, false)],
            &dgram[48..],
        );
        let (v, natted) = run(&mut ebpf, progs::POD, &first);
        assert_eq!(v, REDIRECT, "the first fragment");
        assert_eq!(addrs(&natted).0, UPLINK6);
        let l4 = ETH + 40 + 16;
        assert_eq!(be16(&natted, l4), NAT_PORT_MIN + 13, "its port, kept");
        assert_ne!(
            be16(&natted, l4 + 6),
            be16(&first, l4 + 6),
            "checksum fixed"
        );
        let (v, natted) = run(&mut ebpf, progs::POD, &later);
        assert_eq!(v, REDIRECT, "the later fragment");
        assert_eq!(addrs(&natted).0, UPLINK6);
        assert_eq!(
            natted[ETH + 40..],
            later[ETH + 40..],
            "only the address changed"
        );
        assert_eq!(count(&ebpf, Verdict::NatOut), 2);
    });
}

#[test]
fn what_nat66_cannot_walk_is_dropped_never_leaked() {
    if !root_or_skip("what_nat66_cannot_walk_is_dropped_never_leaked") {
        return;
    }
    in_private_netns6(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        dual_stack(&mut ebpf, &[uplink, 1]);
        let udp = udp6(POD6, REMOTE6, NAT_PORT_MIN + 14, 53, HELLO);
        // Three option headers and a first fragment pass the guard; one more header behind
        // them is more than NAT66 walks.
        let long = from_pod(
            nexthdr::DEST_OPTS,
            &[
                ext8(nexthdr::ROUTING),
                routing(nexthdr::HOP_BY_HOP),
                ext8(nexthdr::FRAGMENT),
                vec![nexthdr::DEST_OPTS, 0, 0, 1, 0, 0, 0, 9],
                ext8(nexthdr::UDP),
            ],
            &udp,
        );
        assert_eq!(run(&mut ebpf, progs::POD, &long).0, SHOT, "a long chain");
        // ESP has no ports to translate by (the kernel's masquerade would pass it with the
        // address alone; NAT66 translates TCP, UDP and echo only, as its IPv4 NAT).
        let esp = from_pod(50, &[], &[0u8; 24]);
        assert_eq!(run(&mut ebpf, progs::POD, &esp).0, SHOT, "ESP");
        assert_eq!(count(&ebpf, Verdict::DropUnnatable), 2);
        // A header cut short.
        let cut = from_pod(nexthdr::DEST_OPTS, &[], &[nexthdr::UDP]);
        assert_eq!(run(&mut ebpf, progs::POD, &cut).0, SHOT, "truncated");
        assert_eq!(count(&ebpf, Verdict::NatOut), 0, "nothing left NATed");
    });
}
