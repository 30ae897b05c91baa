//! `BPF_PROG_TEST_RUN` tests of what the kernel's masquerade carries and the programs used to
//! leak: tiny UDP, IP options, fragments both ways, protocols without ports, every ICMP class a
//! pod may send, outbound ICMP errors, and the uplink's egress backstop. Same private-namespace
//! setup as `tests/nat.rs`.

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use smarter_common::{EndpointKey, EndpointValue, Verdict, maps, progs};
use smarter_ebpf_tests::pktgen::{
    csum, dst, icmp_l4, ip_ok, ip4, l4_ok, port, run, src, tcp_l4, udp_l4, with_csum, xorshift,
};
use smarter_ebpf_tests::world::{count, in_private_netns, world_with_uplink};
use smarter_ebpf_tests::{OK, POD, POD_MAC, REDIRECT, REMOTE, SHOT, UPLINK, root_or_skip};

/// A second pod on the test run's device (ifindex 1).
const POD2: [u8; 4] = [172, 39, 0, 5];
const POD2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

fn world() -> Ebpf {
    let up0 = nix::net::if_::if_nametoindex("up0").unwrap();
    let mut ebpf = world_with_uplink(up0);
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
    assert_eq!(src(&out), UPLINK, "{name}: source is the uplink address");
    assert_eq!(dst(&out), dst(p), "{name}: destination kept");
    let (hl, ok) = ip_ok(&out);
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
        keepalive = with_csum(POD, REMOTE, 17, keepalive, 6);
        let out = natted(
            &mut ebpf,
            "1-byte udp",
            &ip4(POD_MAC, POD, REMOTE, 17, &[], 0x4000, 1, &keepalive),
        );
        assert!(l4_ok(&out, 6), "1-byte udp: UDP checksum");
        let nat_port = port(&out, 34);
        // Its reply, also 1 byte.
        let mut back = vec![0x11, 0x94, 0, 0, 0, 9, 0, 0, 0xff];
        back[2..4].copy_from_slice(&nat_port.to_be_bytes());
        let back = with_csum(REMOTE, UPLINK, 17, back, 6);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &ip4(POD_MAC, REMOTE, UPLINK, 17, &[], 0, 2, &back),
        );
        assert_eq!(v, REDIRECT, "1-byte reply into the pod");
        assert_eq!(dst(&inp), POD);
        assert!(l4_ok(&inp, 6));

        // IP options (router alert + NOPs), TCP and UDP, both ways.
        let opts = [0x94, 0x04, 0, 0, 1, 1, 1, 0];
        let l4 = with_csum(POD, REMOTE, 6, tcp_l4(40100, 443, 0x02), 16);
        let out = natted(
            &mut ebpf,
            "tcp with options",
            &ip4(POD_MAC, POD, REMOTE, 6, &opts, 0x4000, 3, &l4),
        );
        assert!(l4_ok(&out, 16), "tcp with options: TCP checksum");
        let l4 = with_csum(POD, REMOTE, 17, udp_l4(40101, 53), 6);
        let out = natted(
            &mut ebpf,
            "udp with options",
            &ip4(POD_MAC, POD, REMOTE, 17, &opts, 0, 4, &l4),
        );
        assert!(l4_ok(&out, 6));
        let nat_port = port(&out, 14 + 28);
        let mut reply = udp_l4(53, nat_port);
        reply = with_csum(REMOTE, UPLINK, 17, reply, 6);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &ip4(POD_MAC, REMOTE, UPLINK, 17, &opts, 0, 5, &reply),
        );
        assert_eq!(v, REDIRECT, "reply with options into the pod");
        assert_eq!(dst(&inp), POD);
        assert_eq!(port(&inp, 14 + 28 + 2), 40101, "pod port restored");
        assert!(ip_ok(&inp).1 && l4_ok(&inp, 6));

        // A fragmented datagram out: first fragment by its ports, later ones by address (in
        // either order).
        let whole = with_csum(POD, REMOTE, 17, udp_l4(40102, 5000), 6);
        let (first, rest) = whole.split_at(16);
        let later = natted(
            &mut ebpf,
            "later fragment first",
            &ip4(POD_MAC, POD, REMOTE, 17, &[], 0x0002, 77, rest),
        );
        assert_eq!(&later[34..], rest, "later fragment payload untouched");
        let out = natted(
            &mut ebpf,
            "first fragment",
            &ip4(POD_MAC, POD, REMOTE, 17, &[], 0x2000, 77, first),
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
        let l4 = with_csum(POD, REMOTE, 17, udp_l4(40200, 53), 6);
        let out = natted(
            &mut ebpf,
            "query",
            &ip4(POD_MAC, POD, REMOTE, 17, &[], 0, 9, &l4),
        );
        let nat_port = port(&out, 34);
        let whole = with_csum(REMOTE, UPLINK, 17, udp_l4(53, nat_port), 6);
        let (first, rest) = whole.split_at(16);
        // A later fragment before any first one: the host's (it may be the node's own).
        let (v, untouched) = run(
            &mut ebpf,
            progs::UPLINK,
            &ip4(POD_MAC, REMOTE, UPLINK, 17, &[], 0x0002, 0x4242, rest),
        );
        assert_eq!(v, OK, "unknown later fragment passes to the host");
        assert_eq!(dst(&untouched), UPLINK);
        let (v, inp) = run(
            &mut ebpf,
            progs::UPLINK,
            &ip4(POD_MAC, REMOTE, UPLINK, 17, &[], 0x2000, 0x1234, first),
        );
        assert_eq!(v, REDIRECT, "first fragment into the pod");
        assert_eq!((dst(&inp), port(&inp, 36)), (POD, 40200));
        for (i, frag) in [(1, 0x2001u16), (2, 0x0002)] {
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &ip4(POD_MAC, REMOTE, UPLINK, 17, &[], frag, 0x1234, rest),
            );
            assert_eq!(v, REDIRECT, "later fragment {i} follows");
            assert_eq!(dst(&inp), POD);
            assert!(ip_ok(&inp).1);
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
                &ip4(POD_MAC, POD, REMOTE, proto, &[], 0, 11, payload),
            );
            assert_eq!(&out[34..], payload, "{name}: payload untouched");
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &ip4(POD_MAC, REMOTE, UPLINK, proto, &[], 0, 12, payload),
            );
            assert_eq!(v, REDIRECT, "{name}: reply into the pod");
            assert_eq!(dst(&inp), POD, "{name}");
            // A second pod cannot share the address mapping to the same remote (as the kernel's
            // generic NAT: the tuple would clash).
            let (v, _) = run(
                &mut ebpf,
                progs::POD,
                &ip4(POD2_MAC, POD2, REMOTE, proto, &[], 0, 13, payload),
            );
            assert_eq!(v, SHOT, "{name}: second pod to the same remote");
        }
        // ICMP queries by identifier: echo, timestamp, information, address mask.
        for (kind, reply) in [(8u8, 0u8), (13, 14), (15, 16), (17, 18)] {
            let name = format!("icmp {kind}");
            let l4 = with_csum(POD, REMOTE, 1, icmp_l4(kind, 700 + u16::from(kind)), 2);
            let out = natted(
                &mut ebpf,
                &name,
                &ip4(POD_MAC, POD, REMOTE, 1, &[], 0, 14, &l4),
            );
            assert!(l4_ok(&out, 2), "{name}: ICMP checksum");
            let id = port(&out, 38);
            let back = with_csum(REMOTE, UPLINK, 1, icmp_l4(reply, id), 2);
            let (v, inp) = run(
                &mut ebpf,
                progs::UPLINK,
                &ip4(POD_MAC, REMOTE, UPLINK, 1, &[], 0, 15, &back),
            );
            assert_eq!(v, REDIRECT, "{name}: reply into the pod");
            assert_eq!(port(&inp, 38), 700 + u16::from(kind), "{name}: id restored");
            assert!(l4_ok(&inp, 2));
        }
        // ICMP a pod has no business sending off the node: dropped, never leaked (a router
        // advertisement, type 9, by the RA guard before it could be considered for NAT).
        let before = count(&ebpf, Verdict::DropUnnatable);
        let guarded = count(&ebpf, Verdict::DropRaGuard);
        for kind in [0u8, 9, 10, 42] {
            let l4 = with_csum(POD, REMOTE, 1, icmp_l4(kind, 1), 2);
            let (v, _) = run(
                &mut ebpf,
                progs::POD,
                &ip4(POD_MAC, POD, REMOTE, 1, &[], 0, 16, &l4),
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
                &ip4(POD_MAC, POD, REMOTE, proto, &[], 0, 17, &vec![0u8; len]),
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
        let l4 = with_csum(POD, REMOTE, 17, udp_l4(40300, 9999), 6);
        let out = natted(
            &mut ebpf,
            "udp out",
            &ip4(POD_MAC, POD, REMOTE, 17, &[], 0, 21, &l4),
        );
        let nat_port = port(&out, 34);
        // The pod answers a packet of this flow (remote:9999 → pod:40300) with "port
        // unreachable"; the quoted packet is what the pod received.
        let quoted_l4 = udp_l4(9999, 40300);
        let quoted = ip4(POD_MAC, REMOTE, POD, 17, &[], 0, 22, &quoted_l4[..8]);
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[14..]);
        let icmp = with_csum(POD, REMOTE, 1, icmp, 2);
        let out = natted(
            &mut ebpf,
            "port unreachable",
            &ip4(POD_MAC, POD, REMOTE, 1, &[], 0, 23, &icmp),
        );
        assert!(l4_ok(&out, 2), "ICMP checksum after translation");
        let inner = &out[34 + 8..];
        assert_eq!(&inner[16..20], &UPLINK, "quoted destination is the uplink");
        assert_eq!(port(inner, 22), nat_port, "quoted port is the NAT port");
        assert_eq!(csum(&inner[..20]), 0, "quoted IPv4 checksum");
        // About a flow the NAT does not know: dropped.
        let quoted = ip4(POD_MAC, REMOTE, POD, 17, &[], 0, 24, &udp_l4(1, 2)[..8]);
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[14..]);
        let icmp = with_csum(POD, REMOTE, 1, icmp, 2);
        let (v, _) = run(
            &mut ebpf,
            progs::POD,
            &ip4(POD_MAC, POD, REMOTE, 1, &[], 0, 25, &icmp),
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
            for (proto, l4) in [(17u8, udp_l4(1, 2)), (47, b"gre".to_vec())] {
                let (v, out) = run(
                    &mut ebpf,
                    progs::EGRESS,
                    &ip4(POD_MAC, s, REMOTE, proto, &[], 0, 31, &l4),
                );
                assert_eq!(v, want, "{name} proto {proto}");
                if v == OK {
                    assert_eq!(src(&out), s, "{name}: untouched");
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
            ip4(POD_MAC, POD, REMOTE, 17, &[], 0, 1, &udp_l4(40400, 53)),
            ip4(
                POD_MAC,
                POD,
                REMOTE,
                17,
                &[1, 1, 1, 0],
                0x2000,
                2,
                &udp_l4(40401, 53),
            ),
            ip4(
                POD_MAC,
                POD,
                REMOTE,
                17,
                &[],
                0x0003,
                3,
                b"later fragment bytes",
            ),
            ip4(
                POD_MAC,
                POD,
                REMOTE,
                6,
                &[],
                0x4000,
                4,
                &tcp_l4(40402, 80, 2),
            ),
            ip4(POD_MAC, POD, REMOTE, 1, &[], 0, 5, &icmp_l4(8, 9)),
            ip4(POD_MAC, POD, REMOTE, 47, &[], 0, 6, b"gre payload"),
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
                let prog_ref: &mut SchedClassifier =
                    ebpf.program_mut(prog).unwrap().try_into().unwrap();
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
