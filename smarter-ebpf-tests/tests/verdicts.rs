//! `BPF_PROG_TEST_RUN` tests of the pod and uplink programs' verdicts on crafted packets (root
//! only, nothing pinned or attached). The test run's device is the loopback (ifindex 1), so the
//! sending pod's endpoint is registered on ifindex 1.

use aya::{Ebpf, maps::PerCpuArray};
use smarter_common::{Verdict, VerdictStats, maps, progs};
use smarter_ebpf_tests::run::{run, try_run};
use smarter_ebpf_tests::world::world_with_uplink;
use smarter_ebpf_tests::{
    GW_MAC, OK, PEER, PEER_MAC, POD, POD_MAC, REDIRECT, REMOTE as WAN, SHOT, root_or_skip,
};
use smarter_testbed::packet::{BROADCAST, ETH_P_ARP, Ipv4, Ipv6, arp, eth, udp};

/// The object loaded with both programs, endpoints POD (ifindex 1) and PEER (ifindex 4242),
/// the 172.39.0.0/16 network and a deny range 10.0.0.0/8, no uplink (no SNAT).
fn world() -> Ebpf {
    world_with_uplink(0)
}

/// Ethernet/IPv4/UDP from `src` (MAC `smac`) to `dst`, IPv4 header `ihl` words (NOP options).
fn udp4(smac: [u8; 6], src: [u8; 4], dst: [u8; 4], ihl: u8, frag: u16) -> Vec<u8> {
    let nops = vec![1u8; usize::from(ihl - 5) * 4];
    Ipv4::new(src, dst, 17)
        .options(&nops)
        .frag(frag)
        .frame(GW_MAC, smac, &udp(40000, 53, &[0; 18]))
}

/// An ARP request from `smac`: `spa` is at `sha`, who has the gateway?
fn arp_request(smac: [u8; 6], sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
    let arp = arp(1, sha, spa, [0; 6], [172, 39, 0, 1]);
    eth(BROADCAST, smac, ETH_P_ARP, &arp)
}

fn verdicts(ebpf: &Ebpf) -> Vec<u64> {
    let v: PerCpuArray<_, VerdictStats> =
        PerCpuArray::try_from(ebpf.map(maps::VERDICTS).unwrap()).unwrap();
    Verdict::ALL
        .iter()
        .map(|&x| {
            v.get(&(x as u32), 0)
                .unwrap()
                .iter()
                .map(|s| s.packets)
                .sum()
        })
        .collect()
}

/// An IPv6 packet from `mac` (source fe80::2, hop limit 64) to `dst` with an all-zero UDP
/// header.
fn ipv6(mac: [u8; 6], dst: [u8; 16]) -> Vec<u8> {
    let src = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    Ipv6::new(src, dst, 17)
        .hop_limit(64)
        .frame(GW_MAC, mac, &[0; 8])
}

#[test]
fn pod_verdicts_on_crafted_packets() {
    if !root_or_skip("pod_verdicts_on_crafted_packets") {
        return;
    }
    let mut ebpf = world();
    let cases: Vec<(&str, Vec<u8>, u32, Verdict)> = vec![
        (
            "own → wan",
            udp4(POD_MAC, POD, WAN, 5, 0),
            OK,
            Verdict::PassHost,
        ),
        (
            "own → gateway",
            udp4(POD_MAC, POD, [172, 39, 0, 1], 5, 0),
            OK,
            Verdict::PassHost,
        ),
        (
            "own → uplink addr",
            udp4(POD_MAC, POD, [198, 51, 100, 2], 5, 0),
            OK,
            Verdict::PassHost,
        ),
        (
            "spoofed ip",
            udp4(POD_MAC, [172, 39, 0, 9], WAN, 5, 0),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "peer's ip",
            udp4(POD_MAC, PEER, WAN, 5, 0),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "spoofed mac",
            udp4(PEER_MAC, POD, WAN, 5, 0),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "deny",
            udp4(POD_MAC, POD, [10, 1, 2, 3], 5, 0),
            SHOT,
            Verdict::DropDeny,
        ),
        (
            "pod → pod",
            udp4(POD_MAC, POD, PEER, 5, 0),
            REDIRECT,
            Verdict::RedirectPod,
        ),
        (
            "multicast",
            udp4(POD_MAC, POD, [224, 0, 0, 251], 5, 0),
            OK,
            Verdict::PassL2,
        ),
        (
            "subnet broadcast",
            udp4(POD_MAC, POD, [172, 39, 255, 255], 5, 0),
            OK,
            Verdict::PassL2,
        ),
        // No uplink is known in this world: what would be NATed goes to the host stack (whose
        // uplink egress backstop stops it) — options and fragments alike.
        (
            "ip options",
            udp4(POD_MAC, POD, WAN, 6, 0),
            OK,
            Verdict::PassHost,
        ),
        (
            "fragment",
            udp4(POD_MAC, POD, WAN, 5, 0x2000),
            OK,
            Verdict::PassHost,
        ),
        (
            "later fragment",
            udp4(POD_MAC, POD, WAN, 5, 0x0010),
            OK,
            Verdict::PassHost,
        ),
        (
            "arp",
            arp_request(POD_MAC, POD_MAC, POD),
            OK,
            Verdict::PassL2,
        ),
        (
            "arp probe",
            arp_request(POD_MAC, POD_MAC, [0; 4]),
            OK,
            Verdict::PassL2,
        ),
        (
            "arp spoofed ip",
            arp_request(POD_MAC, POD_MAC, PEER),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "arp spoofed sha",
            arp_request(POD_MAC, PEER_MAC, POD),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "arp spoofed mac",
            arp_request(PEER_MAC, PEER_MAC, POD),
            SHOT,
            Verdict::DropSpoof,
        ),
        (
            "truncated arp",
            arp_request(POD_MAC, POD_MAC, POD)[..30].to_vec(),
            SHOT,
            Verdict::DropMalformed,
        ),
        (
            "ihl 4",
            {
                let mut p = udp4(POD_MAC, POD, WAN, 5, 0);
                p[14] = 0x44;
                p
            },
            SHOT,
            Verdict::DropMalformed,
        ),
        (
            "ipv6 link-local",
            ipv6(
                POD_MAC,
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            OK,
            Verdict::PassL2,
        ),
        (
            "ipv6 multicast (neighbour discovery)",
            ipv6(
                POD_MAC,
                [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1],
            ),
            OK,
            Verdict::PassL2,
        ),
        (
            "ipv6 global",
            ipv6(
                POD_MAC,
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            SHOT,
            Verdict::DropIpv6,
        ),
    ];
    for (name, packet, want, verdict) in cases {
        let before = verdicts(&ebpf);
        let (got, out) = run(&mut ebpf, progs::POD, &packet);
        assert_eq!(got, want, "{name}: return value");
        let after = verdicts(&ebpf);
        assert_eq!(
            after[verdict as usize],
            before[verdict as usize] + 1,
            "{name}: counter"
        );
        if verdict == Verdict::RedirectPod {
            assert_eq!(&out[..6], &PEER_MAC, "{name}: eth dst set to the peer");
            assert_eq!(&out[6..], &packet[6..], "{name}: nothing else changed");
        } else if got != SHOT {
            assert_eq!(out, packet, "{name}: not modified");
        }
    }
}

#[test]
fn uplink_drops_pod_subnet_and_passes_host_traffic() {
    if !root_or_skip("uplink_drops_pod_subnet_and_passes_host_traffic") {
        return;
    }
    let mut ebpf = world();
    let to_pod = udp4(GW_MAC, WAN, POD, 5, 0);
    assert_eq!(run(&mut ebpf, progs::UPLINK, &to_pod).0, SHOT);
    let to_node = udp4(GW_MAC, WAN, [198, 51, 100, 2], 5, 0);
    assert_eq!(run(&mut ebpf, progs::UPLINK, &to_node).0, OK);
    let mut truncated_arp = to_pod[..20].to_vec();
    truncated_arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(run(&mut ebpf, progs::UPLINK, &truncated_arp).0, OK);
    assert_eq!(verdicts(&ebpf)[Verdict::DropNodelocal as usize], 1);
}

#[test]
fn random_packets_get_defined_verdicts() {
    if !root_or_skip("random_packets_get_defined_verdicts") {
        return;
    }
    let mut ebpf = world();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let template = udp4(POD_MAC, POD, WAN, 5, 0);
    let (mut ran, mut refused) = (0, 0);
    for i in 0..3000 {
        let len = 14 + (next() % 120) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half of them keep a plausible prefix so the deeper parsers are exercised too.
        if i % 2 == 0 {
            let keep = (next() % template.len() as u64) as usize;
            let keep = keep.min(p.len());
            p[..keep].copy_from_slice(&template[..keep]);
        }
        for prog in progs::ALL {
            let Some((v, _)) = try_run(&mut ebpf, prog, &p) else {
                refused += 1;
                continue;
            };
            ran += 1;
            assert!(
                [OK, SHOT, REDIRECT].contains(&v),
                "{prog}: verdict {v} for {p:02x?}"
            );
        }
    }
    eprintln!("fuzz: {ran} runs, {refused} inputs refused by the kernel");
    assert!(ran > 4000, "most random packets reach the programs");
}
