//! `BPF_PROG_TEST_RUN` tests of what a pod may say on the link (root only, nothing pinned or
//! attached): the RA guard (router advertisements, redirects, DHCPv6 server messages, and what
//! could hide one), neighbour discovery that claims only the pod's own link-local address and
//! MAC, the source MAC of every frame, and the ethertypes pods have no use for; then the same
//! messages mutated at random: no router message or foreign claim ever passes.

use smarter_common::link::link_local_of;
use smarter_common::{
    Verdict,
    link::{ICMPV6_NEIGHBOUR_ADVERT as NA, ICMPV6_NEIGHBOUR_SOLICIT as NS, nexthdr},
    progs,
};
use smarter_ebpf_tests::run::{run, try_run, xorshift};
use smarter_ebpf_tests::world::{count, world_with_uplink};
use smarter_ebpf_tests::{
    ALL_NODES_MAC, GW_MAC, OK, PEER, PEER_MAC, POD, POD_MAC, REDIRECT, SHOT, root_or_skip,
};
use smarter_testbed::packet::{
    ALL_NODES, BROADCAST, Ipv4, Ipv6, eth, ext8, icmp4, icmp6, id_seq, nd_body, nd_opt, ra_body,
    udp,
};

const GATEWAY: [u8; 4] = [172, 39, 0, 1];
const UNSPECIFIED: [u8; 16] = [0; 16];
/// The node's link-local address on the bridge (any link-local address will do).
const NODE_LL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const BAD_PREFIX: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const ICMP6_ROUTER_SOLICIT: u8 = 133;
const ICMP6_ROUTER_ADVERT: u8 = 134;
const ICMP6_REDIRECT: u8 = 137;
const MLD2_REPORT: u8 = 143;

/// An ICMPv6 message right after the IPv6 header.
fn icmp(smac: [u8; 6], src: [u8; 16], dst: [u8; 16], kind: u8, body: &[u8]) -> Vec<u8> {
    Ipv6::new(src, dst, nexthdr::ICMPV6).frame(ALL_NODES_MAC, smac, &icmp6(src, dst, kind, body))
}

/// An ICMPv6 message behind the extension headers `exts` (first header type `first`).
fn behind(first: u8, exts: &[u8], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = exts.to_vec();
    payload.extend_from_slice(&icmp6(link_local_of(POD_MAC), ALL_NODES, kind, body));
    Ipv6::new(link_local_of(POD_MAC), ALL_NODES, first).frame(ALL_NODES_MAC, POD_MAC, &payload)
}

/// UDP over IPv6 from the pod's link-local address (4 bytes of data, no checksum).
fn udp6(dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    Ipv6::new(link_local_of(POD_MAC), dst, nexthdr::UDP).frame(
        ALL_NODES_MAC,
        POD_MAC,
        &udp(sport, dport, &[1, 2, 3, 4]),
    )
}

/// A frame of `ethertype` from `smac` with 46 bytes of payload.
fn ether(smac: [u8; 6], ethertype: u16) -> Vec<u8> {
    eth(BROADCAST, smac, ethertype, &[0x5a; 46])
}

/// What the pod may and may not send, with the verdict each gets.
fn cases() -> Vec<(&'static str, Vec<u8>, Verdict)> {
    let own = link_local_of(POD_MAC);
    let peer = link_local_of(PEER_MAC);
    let na = |smac, src, target, tlla: &[u8]| {
        icmp(smac, src, ALL_NODES, NA, &nd_body(0x20, target, tlla))
    };
    let ns = |src, target, opts: &[u8]| icmp(POD_MAC, src, NODE_LL, NS, &nd_body(0, target, opts));
    let own_tlla = nd_opt(2, POD_MAC);
    let nonce = [14u8, 1, 1, 2, 3, 4, 5, 6];
    let mut nonce_then_peer = nonce.to_vec();
    nonce_then_peer.extend_from_slice(&nd_opt(2, PEER_MAC));
    let three = [own_tlla.clone(), nonce.to_vec(), nonce.to_vec()].concat();
    let frag_first = [nexthdr::ICMPV6, 0, 0, 1, 0, 0, 0, 7];
    let icmp_v4 = |dst: [u8; 4], kind| {
        let m = icmp4(kind, 0, id_seq(1, 1), b"ping payload");
        Ipv4::new(POD, dst, 1).frame(GW_MAC, POD_MAC, &m)
    };
    vec![
        // The RA guard.
        (
            "router advertisement",
            icmp(
                POD_MAC,
                own,
                ALL_NODES,
                ICMP6_ROUTER_ADVERT,
                &ra_body(BAD_PREFIX, None),
            ),
            Verdict::DropRaGuard,
        ),
        (
            "router advertisement behind a hop-by-hop header",
            behind(
                0,
                &ext8(nexthdr::ICMPV6),
                ICMP6_ROUTER_ADVERT,
                &ra_body(BAD_PREFIX, None),
            ),
            Verdict::DropRaGuard,
        ),
        (
            "router advertisement behind destination options and a routing header",
            behind(
                nexthdr::DEST_OPTS,
                &[ext8(nexthdr::ROUTING), ext8(nexthdr::ICMPV6)].concat(),
                ICMP6_ROUTER_ADVERT,
                &ra_body(BAD_PREFIX, None),
            ),
            Verdict::DropRaGuard,
        ),
        (
            "router advertisement in a fragment",
            behind(
                nexthdr::FRAGMENT,
                &frag_first,
                ICMP6_ROUTER_ADVERT,
                &ra_body(BAD_PREFIX, None),
            ),
            Verdict::DropRaGuard,
        ),
        (
            "four extension headers",
            behind(
                0,
                &[
                    ext8(nexthdr::DEST_OPTS),
                    ext8(nexthdr::ROUTING),
                    ext8(nexthdr::DEST_OPTS),
                    ext8(nexthdr::ICMPV6),
                ]
                .concat(),
                128,
                &[0, 1, 0, 1],
            ),
            Verdict::DropRaGuard,
        ),
        (
            "redirect",
            icmp(POD_MAC, own, peer, ICMP6_REDIRECT, &[0; 36]),
            Verdict::DropRaGuard,
        ),
        (
            "DHCPv6 reply (547 → 546)",
            udp6(peer, 547, 546),
            Verdict::DropRaGuard,
        ),
        (
            "DHCPv6 client (546 → 547)",
            udp6(ALL_NODES, 546, 547),
            Verdict::PassL2,
        ),
        (
            "ICMP redirect to the gateway",
            icmp_v4(GATEWAY, 5),
            Verdict::DropRaGuard,
        ),
        (
            "ICMP redirect to a pod",
            icmp_v4(PEER, 5),
            Verdict::DropRaGuard,
        ),
        (
            "ICMP router advertisement",
            icmp_v4([224, 0, 0, 1], 9),
            Verdict::DropRaGuard,
        ),
        (
            "ICMP echo to the gateway",
            icmp_v4(GATEWAY, 8),
            Verdict::PassHost,
        ),
        // Neighbour discovery: only its own address and MAC.
        (
            "advertisement of itself",
            na(POD_MAC, own, own, &own_tlla),
            Verdict::PassL2,
        ),
        (
            "advertisement of another pod's address",
            na(POD_MAC, own, peer, &own_tlla),
            Verdict::DropSpoof,
        ),
        (
            "advertisement of another pod's address from it",
            na(POD_MAC, peer, peer, &own_tlla),
            Verdict::DropSpoof,
        ),
        (
            "advertisement with another pod's MAC as target link-layer address",
            na(POD_MAC, own, own, &nd_opt(2, PEER_MAC)),
            Verdict::DropSpoof,
        ),
        (
            "advertisement with another pod's MAC behind a nonce",
            na(POD_MAC, own, own, &nonce_then_peer),
            Verdict::DropSpoof,
        ),
        (
            "advertisement with three options",
            na(POD_MAC, own, own, &three),
            Verdict::DropSpoof,
        ),
        (
            "advertisement from another pod's MAC",
            na(PEER_MAC, own, own, &nd_opt(2, PEER_MAC)),
            Verdict::DropSpoof,
        ),
        (
            "solicitation of the node",
            ns(own, NODE_LL, &nd_opt(1, POD_MAC)),
            Verdict::PassL2,
        ),
        (
            "duplicate address detection",
            ns(UNSPECIFIED, own, &nonce),
            Verdict::PassL2,
        ),
        (
            "duplicate address detection of another pod's address",
            ns(UNSPECIFIED, peer, &nonce),
            Verdict::DropSpoof,
        ),
        (
            "solicitation with another pod's MAC",
            ns(own, NODE_LL, &nd_opt(1, PEER_MAC)),
            Verdict::DropSpoof,
        ),
        (
            "solicitation from another pod's address",
            icmp(
                POD_MAC,
                peer,
                NODE_LL,
                NS,
                &nd_body(0, NODE_LL, &nd_opt(1, POD_MAC)),
            ),
            Verdict::DropSpoof,
        ),
        (
            "solicitation behind a hop-by-hop header",
            behind(0, &ext8(nexthdr::ICMPV6), NS, &nd_body(0, NODE_LL, &[])),
            Verdict::DropSpoof,
        ),
        (
            "router solicitation",
            icmp(
                POD_MAC,
                own,
                ALL_NODES,
                ICMP6_ROUTER_SOLICIT,
                &[[0; 4].to_vec(), nd_opt(1, POD_MAC)].concat(),
            ),
            Verdict::PassL2,
        ),
        (
            "router solicitation with another pod's MAC",
            icmp(
                POD_MAC,
                own,
                ALL_NODES,
                ICMP6_ROUTER_SOLICIT,
                &[[0; 4].to_vec(), nd_opt(1, PEER_MAC)].concat(),
            ),
            Verdict::DropSpoof,
        ),
        (
            "MLD report from ::",
            {
                let mut payload = ext8(nexthdr::ICMPV6);
                payload.extend_from_slice(&icmp6(UNSPECIFIED, ALL_NODES, MLD2_REPORT, &[0; 4]));
                Ipv6::new(UNSPECIFIED, ALL_NODES, 0).frame(ALL_NODES_MAC, POD_MAC, &payload)
            },
            Verdict::PassL2,
        ),
        // Sources and MACs.
        (
            "IPv6 from a global address",
            {
                let mut p = udp6(ALL_NODES, 5353, 5353);
                p[22..38].copy_from_slice(&BAD_PREFIX);
                p
            },
            Verdict::DropSpoof,
        ),
        (
            "IPv6 with another pod's MAC",
            {
                let mut p = udp6(peer, 5353, 5353);
                p[6..12].copy_from_slice(&PEER_MAC);
                p
            },
            Verdict::DropSpoof,
        ),
        (
            "truncated UDP over IPv6",
            udp6(peer, 1, 2)[..56].to_vec(),
            Verdict::DropMalformed,
        ),
        (
            "ethertype 0x88b5",
            ether(POD_MAC, 0x88b5),
            Verdict::DropEthertype,
        ),
        (
            "ethertype 0x88b5 with another pod's MAC",
            ether(PEER_MAC, 0x88b5),
            Verdict::DropEthertype,
        ),
        ("LLDP", ether(POD_MAC, 0x88cc), Verdict::DropEthertype),
        (
            "an 802.3 length field",
            ether(POD_MAC, 46),
            Verdict::DropEthertype,
        ),
        (
            "a VLAN tag in the data",
            ether(POD_MAC, 0x8100),
            Verdict::DropEthertype,
        ),
    ]
}

#[test]
fn router_messages_and_foreign_claims_are_dropped() {
    if !root_or_skip("router_messages_and_foreign_claims_are_dropped") {
        return;
    }
    let mut ebpf = world_with_uplink(0);
    for (name, packet, verdict) in cases() {
        let before = count(&ebpf, verdict);
        let (got, out) = run(&mut ebpf, progs::POD, &packet);
        let want = if verdict.is_drop() { SHOT } else { OK };
        assert_eq!(got, want, "{name}: action");
        assert_eq!(
            count(&ebpf, verdict),
            before + 1,
            "{name}: {}",
            verdict.name()
        );
        if got == OK {
            assert_eq!(out, packet, "{name}: not modified");
        }
    }
}

/// Why the kernel of the node or of another pod would take `p` (which the pod program let
/// through) as a router's message or as a claim of what is not the pod's: `None` when it
/// would not. Written from the receivers' side: extension headers are walked as the kernel
/// walks them, to any length, and every neighbour discovery option is read.
fn violation(p: &[u8]) -> Option<String> {
    if p.len() < 14 {
        return None;
    }
    if p[6..12] != POD_MAC {
        return Some("a foreign source MAC".into());
    }
    match u16::from_be_bytes([p[12], p[13]]) {
        0x0800 if p.len() >= 34 && p[14] >> 4 == 4 && p[14] & 0x0f >= 5 => {
            if p[26..30] != POD {
                return Some("a foreign IPv4 source".into());
            }
            // The kernel reads an ICMP message of at least 8 bytes inside the total length.
            let l4 = 14 + usize::from(p[14] & 0x0f) * 4;
            let end = 14 + usize::from(u16::from_be_bytes([p[16], p[17]]));
            let first = u16::from_be_bytes([p[20], p[21]]) & 0x1fff == 0;
            let whole = l4 + 8 <= end && end <= p.len();
            let router = p[23] == 1 && first && whole && (p[l4] == 5 || p[l4] == 9);
            router.then(|| "an ICMP router message".into())
        }
        0x0800 => None,
        0x0806 if p.len() >= 42 => {
            let foreign_spa = p[28..32] != POD && p[28..32] != [0; 4];
            (p[22..28] != POD_MAC || foreign_spa).then(|| "a foreign ARP sender".into())
        }
        0x0806 => None,
        0x86dd => ipv6_violation(p),
        other => Some(format!("ethertype {other:#06x}")),
    }
}

fn ipv6_violation(p: &[u8]) -> Option<String> {
    if p.len() < 54 || p[14] >> 4 != 6 {
        return None;
    }
    let end = 54 + usize::from(u16::from_be_bytes([p[18], p[19]]));
    if end > p.len() {
        return None; // truncated: the kernel drops it
    }
    let src: [u8; 16] = p[22..38].try_into().unwrap();
    let own = link_local_of(POD_MAC);
    if src != UNSPECIFIED && !(src[0] == 0xfe && src[1] & 0xc0 == 0x80) {
        return Some("an IPv6 source beyond the link".into());
    }
    let (mut next, mut off) = (p[20], 54);
    loop {
        match next {
            0 | 43 | 60 if off + 2 <= end => {
                next = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            44 => return Some("a fragment (could carry a router advertisement)".into()),
            58 if off + 4 <= end => break,
            17 if off + 4 <= end => {
                let dport = u16::from_be_bytes([p[off + 2], p[off + 3]]);
                return (dport == 546).then(|| "a DHCPv6 server message".into());
            }
            _ => return None,
        }
    }
    let kind = p[off];
    if kind == ICMP6_ROUTER_ADVERT || kind == ICMP6_REDIRECT {
        return Some(format!("ICMPv6 type {kind}"));
    }
    let fixed = match kind {
        ICMP6_ROUTER_SOLICIT => 8,
        NS | NA => 24,
        _ => return None,
    };
    if off + fixed > end {
        return None;
    }
    if src != UNSPECIFIED && src != own {
        return Some("neighbour discovery from a foreign address".into());
    }
    if (kind == NA || (kind == NS && src == UNSPECIFIED)) && p[off + 8..off + 24] != own {
        return Some("neighbour discovery claiming a foreign address".into());
    }
    let mut o = off + fixed;
    while o + 2 <= end {
        let len = usize::from(p[o + 1]) * 8;
        if len == 0 || o + len > end {
            return None; // the kernel drops malformed options
        }
        if (p[o] == 1 || p[o] == 2) && len == 8 && p[o + 2..o + 8] != POD_MAC {
            return Some("a foreign link-layer address option".into());
        }
        o += len;
    }
    None
}

/// The pod's router messages and link claims, mutated at random: whatever the program passes
/// is neither a router's message nor a claim of another's address or MAC.
#[test]
fn mutated_router_messages_and_claims_never_pass() {
    if !root_or_skip("mutated_router_messages_and_claims_never_pass") {
        return;
    }
    let mut ebpf = world_with_uplink(0);
    let seeds: Vec<Vec<u8>> = cases().into_iter().map(|(_, p, _)| p).collect();
    for seed in &seeds {
        assert!(
            try_run(&mut ebpf, progs::POD, seed)
                .is_none_or(|(v, p)| v == SHOT || violation(&p).is_none()),
            "a seed itself passes as a violation: {seed:02x?}"
        );
    }
    let mut next = xorshift(0x05ee_d1a5_70dd_ba11_u64);
    let (mut ran, mut passed) = (0u32, 0u32);
    for i in 0..6000 {
        let mut p = seeds[i % seeds.len()].clone();
        for _ in 0..(1 + next() % 3) {
            let at = 6 + (next() as usize) % (p.len() - 6);
            p[at] = match next() % 4 {
                // Values that matter to the parsers: header and message types, lengths.
                0 => [0, 1, 2, 5, 9, 43, 44, 58, 60, 133, 134, 135, 136, 137][next() as usize % 14],
                _ => next() as u8,
            };
        }
        let Some((v, out)) = try_run(&mut ebpf, progs::POD, &p) else {
            continue;
        };
        ran += 1;
        match v {
            SHOT => {}
            OK | REDIRECT => {
                passed += 1;
                if let Some(why) = violation(&out) {
                    panic!("passed {why}: {out:02x?}");
                }
            }
            other => panic!("unexpected action {other}"),
        }
    }
    eprintln!("router-message invariant: {ran} runs, {passed} passed");
    assert!(ran > 5000 && passed > 200, "{ran} runs, {passed} passed");
}
