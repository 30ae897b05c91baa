//! `BPF_PROG_TEST_RUN` tests of what the kernel's masquerade carries and the programs used to
//! leak: tiny UDP, IP options, fragments both ways, protocols without ports, every ICMP class a
//! pod may send, outbound ICMP errors, and the uplink's egress backstop. Same private-namespace
//! setup as `tests/nat.rs`.

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{TestRun, TestRunOptions},
};
use smarter_common::{EndpointKey, EndpointValue, Verdict, maps, progs};
use smarter_ebpf_tests::run::{run, xorshift};
use smarter_ebpf_tests::world::{classifier, count, in_private_netns, world_with_uplink};
use smarter_ebpf_tests::{
    GW_MAC, HELLO, OK, POD, POD_MAC, REDIRECT, REMOTE, SHOT, UPLINK, UPLINK_IF, root_or_skip,
};
use smarter_testbed::packet::{
    Ipv4, be16, icmp4, id_seq, inet_csum, ipv4_dst, ipv4_ok, ipv4_src, l4_ok, tcp, udp,
    with_l4_csum,
};

/// A second pod on the test run's device (ifindex 1).
const POD2: [u8; 4] = [172, 39, 0, 5];
const POD2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

fn world() -> Ebpf {
    let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
    let mut ebpf = world_with_uplink(uplink);
    let mut eps: HashMap<_, EndpointKey, EndpointValue> =
        HashMap::try_from(ebpf.map_mut(maps::ENDPOINTS).unwrap()).unwrap();
    let value = EndpointValue {
        ifindex: 1,
        mac: POD2_MAC,
        ..EndpointValue::default()
    };
    eps.insert(EndpointKey::from_octets(POD2), value, 0)
        .unwrap();
    ebpf
}

/// Sends `p` out of the pod and checks it left NATed to the uplink with a valid IPv4 header.
fn natted(ebpf: &mut Ebpf, name: &str, p: &[u8]) -> Vec<u8> {
    let (v, out) = run(ebpf, progs::POD, p);
    assert_eq!(v, REDIRECT, "{name}: redirected out of the uplink");
    assert_eq!(
        ipv4_src(&out),
        UPLINK,
        "{name}: source is the uplink address"
    );
    assert_eq!(ipv4_dst(&out), ipv4_dst(p), "{name}: destination kept");
    let (hl, ok) = ipv4_ok(&out);
    assert!(ok, "{name}: IPv4 checksum");
    assert_eq!(hl, usize::from(p[14] & 0x0f) * 4, "{name}: options kept");
    assert_eq!(
        &out[34..14 + hl],
        &p[34..14 + hl],
        "{name}: option bytes kept"
    );
    out
}

#[test]
fn tiny_udp_options_and_fragments_are_natted() {
    if !root_or_skip("tiny_udp_options_and_fragments_are_natted") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        // A 1-byte NAT-T keepalive (9-byte UDP datagram).
        let mut keepalive = vec![0x11, 0x94, 0x11, 0x94, 0, 9, 0, 0, 0xff];
        keepalive = with_l4_csum(POD, REMOTE, 17, keepalive, 6);
        let out = natted(
            &mut ebpf,
            "1-byte udp",
            &Ipv4::new(POD, REMOTE, 17)
                .frag(Ipv4::DF)
                .frame(GW_MAC, POD_MAC, &keepalive),
        );
        assert!(l4_ok(&out, 6), "1-byte udp: UDP checksum");
        let nat_port = be16(&out, 34);
        // Its reply, also 1 byte.
        let mut back = vec![0x11, 0x94, 0, 0, 0, 9, 0, 0, 0xff];
        back[2..4].copy_from_slice(&nat_port.to_be_bytes());
        let back = with_l4_csum(REMOTE, UPLINK, 17, back, 6);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &Ipv4::new(REMOTE, UPLINK, 17)
                .id(2)
                .frame(GW_MAC, POD_MAC, &back),
        );
        assert_eq!(v, REDIRECT, "1-byte reply into the pod");
        assert_eq!(ipv4_dst(&inp), POD);
        assert!(l4_ok(&inp, 6));

        // IP options (router alert + NOPs), TCP and UDP, both ways.
        let opts = [0x94, 0x04, 0, 0, 1, 1, 1, 0];
        let l4 = with_l4_csum(POD, REMOTE, 6, tcp(40100, 443, 0x02, b"data!"), 16);
        let out = natted(
            &mut ebpf,
            "tcp with options",
            &Ipv4::new(POD, REMOTE, 6)
                .options(&opts)
                .frag(Ipv4::DF)
                .id(3)
                .frame(GW_MAC, POD_MAC, &l4),
        );
        assert!(l4_ok(&out, 16), "tcp with options: TCP checksum");
        let l4 = with_l4_csum(POD, REMOTE, 17, udp(40101, 53, HELLO), 6);
        let out = natted(
            &mut ebpf,
            "udp with options",
            &Ipv4::new(POD, REMOTE, 17)
                .options(&opts)
                .id(4)
                .frame(GW_MAC, POD_MAC, &l4),
        );
        assert!(l4_ok(&out, 6));
        let nat_port = be16(&out, 14 + 28);
        let mut reply = udp(53, nat_port, HELLO);
        reply = with_l4_csum(REMOTE, UPLINK, 17, reply, 6);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &Ipv4::new(REMOTE, UPLINK, 17)
                .options(&opts)
                .id(5)
                .frame(GW_MAC, POD_MAC, &reply),
        );
        assert_eq!(v, REDIRECT, "reply with options into the pod");
        assert_eq!(ipv4_dst(&inp), POD);
        assert_eq!(be16(&inp, 14 + 28 + 2), 40101, "pod port restored");
        assert!(ipv4_ok(&inp).1 && l4_ok(&inp, 6));

        // A fragmented datagram out: first fragment by its ports, later ones by address (in
        // either order).
        let whole = with_l4_csum(POD, REMOTE, 17, udp(40102, 5000, HELLO), 6);
        let (first, rest) = whole.split_at(16);
        let later = natted(
            &mut ebpf,
            "later fragment first",
            &Ipv4::new(POD, REMOTE, 17)
                .frag(0x0002)
                .id(77)
                .frame(GW_MAC, POD_MAC, rest),
        );
        assert_eq!(&later[34..], rest, "later fragment payload untouched");
        let out = natted(
            &mut ebpf,
            "first fragment",
            &Ipv4::new(POD, REMOTE, 17)
                .frag(Ipv4::MF)
                .id(77)
                .frame(GW_MAC, POD_MAC, first),
        );
        let mut rejoined = out[..34].to_vec();
        rejoined.extend_from_slice(&out[34..]);
        rejoined.extend_from_slice(rest);
        rejoined[16..18].copy_from_slice(&((20 + whole.len()) as u16).to_be_bytes());
        rejoined[20..22].copy_from_slice(&[0, 0]);
        assert!(l4_ok(&rejoined, 6), "reassembled datagram's UDP checksum");
    });
}

#[test]
fn fragmented_replies_follow_their_first_fragment() {
    if !root_or_skip("fragmented_replies_follow_their_first_fragment") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        let l4 = with_l4_csum(POD, REMOTE, 17, udp(40200, 53, HELLO), 6);
        let out = natted(
            &mut ebpf,
            "query",
            &Ipv4::new(POD, REMOTE, 17).id(9).frame(GW_MAC, POD_MAC, &l4),
        );
        let nat_port = be16(&out, 34);
        let whole = with_l4_csum(REMOTE, UPLINK, 17, udp(53, nat_port, HELLO), 6);
        let (first, rest) = whole.split_at(16);
        // A later fragment before any first one: the host's (it may be the node's own).
        let (v, untouched) = run(
            &mut ebpf,
            progs::UPLINK,
            &Ipv4::new(REMOTE, UPLINK, 17)
                .frag(0x0002)
                .id(0x4242)
                .frame(GW_MAC, POD_MAC, rest),
        );
        assert_eq!(v, OK, "unknown later fragment passes to the host");
        assert_eq!(ipv4_dst(&untouched), UPLINK);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &Ipv4::new(REMOTE, UPLINK, 17)
                .frag(Ipv4::MF)
                .id(0x1234)
                .frame(GW_MAC, POD_MAC, first),
        );
        assert_eq!(v, REDIRECT, "first fragment into the pod");
        assert_eq!((ipv4_dst(&inp), be16(&inp, 36)), (POD, 40200));
        for (i, frag) in [(1, 0x2001u16), (2, 0x0002)] {
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &Ipv4::new(REMOTE, UPLINK, 17)
                    .frag(frag)
                    .id(0x1234)
                    .frame(GW_MAC, POD_MAC, rest),
            );
            assert_eq!(v, REDIRECT, "later fragment {i} follows");
            assert_eq!(ipv4_dst(&inp), POD);
            assert!(ipv4_ok(&inp).1);
            assert_eq!(&inp[34..], rest);
            assert_eq!(count(&ebpf, Verdict::FragIn), i);
        }
    });
}

#[test]
fn portless_protocols_and_icmp_classes() {
    if !root_or_skip("portless_protocols_and_icmp_classes") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        // GRE, ESP, SCTP and an unassigned number: by address, replies come back.
        for proto in [47u8, 50, 132, 253] {
            let payload = b"no ports here, just bytes";
            let name = format!("proto {proto}");
            let out = natted(
                &mut ebpf,
                &name,
                &Ipv4::new(POD, REMOTE, proto)
                    .id(11)
                    .frame(GW_MAC, POD_MAC, payload),
            );
            assert_eq!(&out[34..], payload, "{name}: payload untouched");
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &Ipv4::new(REMOTE, UPLINK, proto)
                    .id(12)
                    .frame(GW_MAC, POD_MAC, payload),
            );
            assert_eq!(v, REDIRECT, "{name}: reply into the pod");
            assert_eq!(ipv4_dst(&inp), POD, "{name}");
            // A second pod cannot share the address mapping to the same remote (as the kernel's
            // generic NAT: the tuple would clash).
            let (v, _) = run(
                &mut ebpf,
                progs::POD,
                &Ipv4::new(POD2, REMOTE, proto)
                    .id(13)
                    .frame(GW_MAC, POD2_MAC, payload),
            );
            assert_eq!(v, SHOT, "{name}: second pod to the same remote");
        }
        // ICMP queries by identifier: echo, timestamp, information, address mask.
        for (kind, reply) in [(8u8, 0u8), (13, 14), (15, 16), (17, 18)] {
            let name = format!("icmp {kind}");
            let l4 = with_l4_csum(
                POD,
                REMOTE,
                1,
                icmp4(kind, 0, id_seq(700 + u16::from(kind), 1), b"ping payload"),
                2,
            );
            let out = natted(
                &mut ebpf,
                &name,
                &Ipv4::new(POD, REMOTE, 1).id(14).frame(GW_MAC, POD_MAC, &l4),
            );
            assert!(l4_ok(&out, 2), "{name}: ICMP checksum");
            let id = be16(&out, 38);
            let back = with_l4_csum(
                REMOTE,
                UPLINK,
                1,
                icmp4(reply, 0, id_seq(id, 1), b"ping payload"),
                2,
            );
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &Ipv4::new(REMOTE, UPLINK, 1)
                    .id(15)
                    .frame(GW_MAC, POD_MAC, &back),
            );
            assert_eq!(v, REDIRECT, "{name}: reply into the pod");
            assert_eq!(be16(&inp, 38), 700 + u16::from(kind), "{name}: id restored");
            assert!(l4_ok(&inp, 2));
        }
        // ICMP a pod has no business sending off the node: dropped, never leaked (a router
        // advertisement, type 9, by the RA guard before it could be considered for NAT).
        let before = count(&ebpf, Verdict::DropUnnatable);
        let guarded = count(&ebpf, Verdict::DropRaGuard);
        for kind in [0u8, 9, 10, 42] {
            let l4 = with_l4_csum(
                POD,
                REMOTE,
                1,
                icmp4(kind, 0, id_seq(1, 1), b"ping payload"),
                2,
            );
            let (v, _) = run(
                &mut ebpf,
                progs::POD,
                &Ipv4::new(POD, REMOTE, 1).id(16).frame(GW_MAC, POD_MAC, &l4),
            );
            assert_eq!(v, SHOT, "icmp {kind} from a pod");
        }
        assert_eq!(count(&ebpf, Verdict::DropUnnatable), before + 3);
        assert_eq!(count(&ebpf, Verdict::DropRaGuard), guarded + 1);
        // Truncated L4 headers: dropped as malformed.
        for (proto, len) in [(6u8, 12usize), (17, 6), (1, 4)] {
            let (v, _) = run(
                &mut ebpf,
                progs::POD,
                &Ipv4::new(POD, REMOTE, proto)
                    .id(17)
                    .frame(GW_MAC, POD_MAC, &vec![0u8; len]),
            );
            assert_eq!(v, SHOT, "truncated proto {proto}");
        }
    });
}

#[test]
fn icmp_errors_from_a_pod_are_translated() {
    if !root_or_skip("icmp_errors_from_a_pod_are_translated") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        let l4 = with_l4_csum(POD, REMOTE, 17, udp(40300, 9999, HELLO), 6);
        let out = natted(
            &mut ebpf,
            "udp out",
            &Ipv4::new(POD, REMOTE, 17)
                .id(21)
                .frame(GW_MAC, POD_MAC, &l4),
        );
        let nat_port = be16(&out, 34);
        // The pod answers a packet of this flow (remote:9999 → pod:40300) with "port
        // unreachable"; the quoted packet is what the pod received.
        let quoted_l4 = udp(9999, 40300, HELLO);
        let quoted = Ipv4::new(REMOTE, POD, 17)
            .id(22)
            .frame(GW_MAC, POD_MAC, &quoted_l4[..8]);
        let icmp = icmp4(3, 3, [0; 4], &quoted[14..]);
        let out = natted(
            &mut ebpf,
            "port unreachable",
            &Ipv4::new(POD, REMOTE, 1)
                .id(23)
                .frame(GW_MAC, POD_MAC, &icmp),
        );
        assert!(l4_ok(&out, 2), "ICMP checksum after translation");
        let inner = &out[34 + 8..];
        assert_eq!(&inner[16..20], &UPLINK, "quoted destination is the uplink");
        assert_eq!(be16(inner, 22), nat_port, "quoted port is the NAT port");
        assert_eq!(inet_csum(&inner[..20]), 0, "quoted IPv4 checksum");
        // About a flow the NAT does not know: dropped.
        let quoted =
            Ipv4::new(REMOTE, POD, 17)
                .id(24)
                .frame(GW_MAC, POD_MAC, &udp(1, 2, HELLO)[..8]);
        let icmp = icmp4(3, 3, [0; 4], &quoted[14..]);
        let (v, _) = run(
            &mut ebpf,
            progs::POD,
            &Ipv4::new(POD, REMOTE, 1)
                .id(25)
                .frame(GW_MAC, POD_MAC, &icmp),
        );
        assert_eq!(v, SHOT, "error about an unknown flow");
    });
}

#[test]
fn egress_backstop_drops_pod_sources() {
    if !root_or_skip("egress_backstop_drops_pod_sources") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        let before = count(&ebpf, Verdict::DropLeak);
        for (name, s, want) in [
            ("pod source", POD, SHOT),
            ("gateway source", [172, 39, 0, 1], SHOT),
            ("uplink source", UPLINK, OK),
            ("other source", [192, 0, 2, 9], OK),
        ] {
            for (proto, l4) in [(17u8, udp(1, 2, HELLO)), (47, b"gre".to_vec())] {
                let (v, out) = run(
                    &mut ebpf,
                    progs::EGRESS,
                    &Ipv4::new(s, REMOTE, proto)
                        .id(31)
                        .frame(GW_MAC, POD_MAC, &l4),
                );
                assert_eq!(v, want, "{name} proto {proto}");
                if v == OK {
                    assert_eq!(ipv4_src(&out), s, "{name}: untouched");
                }
            }
        }
        assert_eq!(count(&ebpf, Verdict::DropLeak), before + 4);
    });
}

/// The leak invariant over mutated packets: whatever the pod program does with a packet for the
/// outside, it is either dropped, handed to the host stack (whose uplink egress runs the
/// backstop), or leaves with the uplink's address; the backstop itself never lets a pod source
/// through.
#[test]
fn mutated_packets_never_leave_with_a_pod_source() {
    if !root_or_skip("mutated_packets_never_leave_with_a_pod_source") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = world();
        let seeds = [
            Ipv4::new(POD, REMOTE, 17).frame(GW_MAC, POD_MAC, &udp(40400, 53, HELLO)),
            Ipv4::new(POD, REMOTE, 17)
                .options(&[1, 1, 1, 0])
                .frag(Ipv4::MF)
                .id(2)
                .frame(GW_MAC, POD_MAC, &udp(40401, 53, HELLO)),
            Ipv4::new(POD, REMOTE, 17).frag(0x0003).id(3).frame(
                GW_MAC,
                POD_MAC,
                b"later fragment bytes",
            ),
            Ipv4::new(POD, REMOTE, 6).frag(Ipv4::DF).id(4).frame(
                GW_MAC,
                POD_MAC,
                &tcp(40402, 80, 2, b"data!"),
            ),
            Ipv4::new(POD, REMOTE, 1).id(5).frame(
                GW_MAC,
                POD_MAC,
                &icmp4(8, 0, id_seq(9, 1), b"ping payload"),
            ),
            Ipv4::new(POD, REMOTE, 47)
                .id(6)
                .frame(GW_MAC, POD_MAC, b"gre payload"),
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let (mut left, mut ran) = (0u32, 0u32);
        for i in 0..3000 {
            let mut p = seeds[i % seeds.len()].clone();
            // Mutate the IPv4 header and what follows, keeping the pod's own source (the
            // anti-spoofing check would drop anything else) and an outside destination.
            for _ in 0..(1 + next() % 3) {
                let at = 14 + (next() as usize) % (p.len() - 14);
                if !(26..34).contains(&at) {
                    p[at] = next() as u8;
                }
            }
            for prog in [progs::POD, progs::EGRESS] {
                let prog_ref = classifier(&mut ebpf, prog);
                let mut out = vec![0u8; p.len() + 256];
                let Ok(r) = prog_ref.test_run(TestRunOptions {
                    data_in: Some(&p),
                    data_out: Some(&mut out),
                    ..TestRunOptions::default()
                }) else {
                    continue;
                };
                ran += 1;
                out.truncate(r.data_size_out as usize);
                let ipv4 = out.len() >= 34 && out[12..14] == [8, 0] && out[14] >> 4 == 4;
                let pod_src = ipv4 && out[26] == 172 && out[27] == 39;
                match (prog, r.return_value) {
                    (_, SHOT) => {}
                    (p, REDIRECT) if p == progs::POD => {
                        left += 1;
                        assert!(!pod_src, "redirected out with a pod source: {out:02x?}");
                    }
                    (p, OK) if p == progs::POD => {}
                    (p, OK) if p == progs::EGRESS => {
                        assert!(!pod_src, "backstop passed a pod source: {out:02x?}");
                    }
                    (p, v) => panic!("{p}: unexpected action {v}"),
                }
            }
        }
        eprintln!("leak invariant: {ran} runs, {left} left NATed");
        assert!(ran > 4000 && left > 500, "{ran} runs, {left} NATed");
    });
}
