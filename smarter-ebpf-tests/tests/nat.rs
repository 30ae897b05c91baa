//! `BPF_PROG_TEST_RUN` tests of SNAT and reverse NAT. Each runs on a thread in the node
//! namespace of a `smarter_testbed` world (`world::in_private_netns`), whose uplink `uplink0`
//! is 198.51.100.2/24 with a static neighbour for the remote, so the program's FIB lookup
//! succeeds; nothing outside that world is touched, and the world is removed afterwards.

use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{TestRun, TestRunOptions},
};
use smarter_common::{CtKey, CtValue, NetConfig, Verdict, maps, progs};
use smarter_ebpf_tests::run::{run, xorshift};
use smarter_ebpf_tests::world::{classifier, count, in_private_netns, world_with_uplink};
use smarter_ebpf_tests::{
    GW_MAC, HELLO, POD, POD_MAC, REDIRECT, REMOTE, REMOTE_MAC, UPLINK, UPLINK_IF, root_or_skip,
};
use smarter_testbed::packet::{
    Ipv4, be16, icmp4, id_seq, inet_csum, ipv4_ok, l4_ok, tcp, udp, with_l4_csum,
};

/// Ethernet + IPv4 (ttl 64) + `l4` from `src` to `dst`, with the L4 checksum at `csum_at`
/// (offset inside `l4`) computed (`pseudo`: over the pseudo header) unless `csum_at` is None.
fn packet(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    mut l4: Vec<u8>,
    csum_at: Option<usize>,
) -> Vec<u8> {
    if let Some(at) = csum_at {
        l4 = with_l4_csum(src, dst, proto, l4, at);
    }
    Ipv4::new(src, dst, proto)
        .frag(Ipv4::DF)
        .frame(GW_MAC, POD_MAC, &l4)
}

/// Whether the IPv4 header and the L4 checksum of `p` are valid (UDP 0 = none counts as valid).
fn checksums_ok(p: &[u8]) -> bool {
    // The offset only says where UDP's "no checksum" zero would be.
    ipv4_ok(p).1 && l4_ok(p, 6)
}

/// SNAT out, then the reply reverse-NATed, for one flow. Returns the NAT port.
fn roundtrip(ebpf: &mut Ebpf, name: &str, out: Vec<u8>, reply: impl Fn(u16) -> Vec<u8>) -> u16 {
    let (v, natted) = run(ebpf, progs::POD, &out);
    let all: Vec<_> = Verdict::ALL
        .iter()
        .map(|&x| (x.name(), count(ebpf, x)))
        .collect();
    assert_eq!(v, REDIRECT, "{name}: SNAT redirects to the uplink: {all:?}");
    assert_eq!(
        &natted[26..30],
        &UPLINK,
        "{name}: source is the uplink address"
    );
    assert_eq!(&natted[30..34], &out[30..34], "{name}: destination kept");
    assert_eq!(natted[22], 63, "{name}: TTL decremented");
    assert!(checksums_ok(&natted), "{name}: checksums after SNAT");
    assert_eq!(&natted[0..6], &REMOTE_MAC, "{name}: eth dst from the FIB");
    let proto = out[23];
    let nat_port = if proto == 1 {
        be16(&natted, 38)
    } else {
        be16(&natted, 34)
    };
    assert!(
        nat_port >= smarter_common::ct::NAT_PORT_MIN,
        "{name}: port {nat_port}"
    );
    // The same flow keeps its port.
    let (_, again) = run(ebpf, progs::POD, &out);
    assert_eq!(
        &again[34..],
        &natted[34..],
        "{name}: conntrack reuses the mapping"
    );

    let reply = reply(nat_port);
    assert!(checksums_ok(&reply), "{name}: the crafted reply is valid");
    let (v, back) = run(ebpf, progs::UPLINK, &reply);
    assert_eq!(v, REDIRECT, "{name}: reply redirected into the pod");
    assert_eq!(&back[30..34], &POD, "{name}: destination is the pod again");
    assert_eq!(&back[0..6], &POD_MAC, "{name}: eth dst is the pod MAC");
    assert!(checksums_ok(&back), "{name}: checksums after reverse NAT");
    nat_port
}

#[test]
fn snat_and_reverse_nat_rewrite_with_valid_checksums() {
    if !root_or_skip("snat_and_reverse_nat_rewrite_with_valid_checksums") {
        return;
    }
    in_private_netns(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);

        let udp_out = packet(POD, REMOTE, 17, udp(40000, 53, HELLO), Some(6));
        roundtrip(&mut ebpf, "udp", udp_out.clone(), |nat| {
            packet(REMOTE, UPLINK, 17, udp(53, nat, HELLO), Some(6))
        });

        // A router's "fragmentation needed" about that flow reaches the pod translated.
        let (_, natted) = run(&mut ebpf, progs::POD, &udp_out);
        // MTU 1280.
        let icmp = icmp4(3, 4, [0, 0, 0x05, 0x00], &natted[14..14 + 28]);
        let error = packet([198, 51, 100, 1], UPLINK, 1, icmp, Some(2));
        assert!(checksums_ok(&error));
        let (v, back) = run(&mut ebpf, progs::UPLINK, &error);
        assert_eq!(v, REDIRECT, "ICMP error delivered into the pod");
        assert_eq!(&back[30..34], &POD, "outer destination is the pod");
        let inner = &back[42..];
        assert_eq!(&inner[12..16], &POD, "inner source is the pod");
        assert_eq!(be16(inner, 20), 40000, "inner source port is the pod's");
        assert_eq!(&inner[16..20], &REMOTE);
        assert_eq!(inet_csum(&inner[..20]), 0, "inner IPv4 checksum");
        assert!(checksums_ok(&back), "outer IPv4 and ICMP checksums");
        assert_eq!(count(&ebpf, Verdict::IcmpErrorIn), 1);
        let (_, back) = run(
            &mut ebpf,
            progs::UPLINK,
            &packet(REMOTE, UPLINK, 17, udp(53, 1, HELLO), Some(6)),
        );
        assert_eq!(
            &back[30..34],
            &UPLINK,
            "no conntrack entry: host traffic untouched"
        );

        // UDP without checksum: it stays 0.
        let zero = packet(POD, REMOTE, 17, udp(40001, 53, HELLO), None);
        let (v, natted) = run(&mut ebpf, progs::POD, &zero);
        assert_eq!(v, REDIRECT);
        assert_eq!(&natted[40..42], &[0, 0], "UDP zero checksum preserved");
        assert!(checksums_ok(&natted));

        let syn = packet(POD, REMOTE, 6, tcp(40002, 80, 0x02, b"data!"), Some(16));
        let nat_tcp = roundtrip(&mut ebpf, "tcp", syn, |nat| {
            packet(REMOTE, UPLINK, 6, tcp(80, nat, 0x12, b"data!"), Some(16))
        });
        let echo = packet(
            POD,
            REMOTE,
            1,
            icmp4(8, 0, id_seq(0x4242, 1), b"ping payload"),
            Some(2),
        );
        roundtrip(&mut ebpf, "icmp echo", echo, |nat| {
            packet(
                REMOTE,
                UPLINK,
                1,
                icmp4(0, 0, id_seq(nat, 1), b"ping payload"),
                Some(2),
            )
        });

        let ct: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map(maps::CT_OUT).unwrap()).unwrap();
        let entries: Vec<_> = ct.iter().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 4, "udp, udp (no csum), tcp, icmp");
        let tcp = entries.iter().find(|(k, _)| k.proto == 6).unwrap();
        assert_eq!(u16::from_be(tcp.1.port), nat_tcp);
        assert_eq!(
            tcp.1.state,
            smarter_common::ct::CT_ESTABLISHED,
            "SYN then SYN-ACK"
        );
        assert!(tcp.1.last_seen > 0);
        assert_eq!(
            count(&ebpf, Verdict::NatOut),
            8,
            "3 udp + 1 udp + 2 tcp + 2 icmp"
        );

        // Cost of an established flow's SNAT (kernel-measured average, reported, not asserted).
        let est = packet(POD, REMOTE, 17, udp(40000, 53, HELLO), Some(6));
        let prog = classifier(&mut ebpf, progs::POD);
        let mut out = vec![0u8; est.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&est),
                data_out: Some(&mut out),
                repeat: 100_000,
                ..TestRunOptions::default()
            })
            .unwrap();
        eprintln!(
            "smarter_pod SNAT (established UDP flow): {:?} per packet",
            r.duration
        );
        assert_eq!(count(&ebpf, Verdict::NatIn), 3);
    });
}

#[test]
fn mutated_nat_packets_get_defined_verdicts() {
    if !root_or_skip("mutated_nat_packets_get_defined_verdicts") {
        return;
    }
    in_private_netns(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        let udp_out = packet(POD, REMOTE, 17, udp(40000, 53, HELLO), Some(6));
        let (_, natted) = run(&mut ebpf, progs::POD, &udp_out);
        let icmp = icmp4(3, 4, [0, 0, 0x05, 0x00], &natted[14..14 + 28]);
        let seeds = [
            udp_out,
            packet(POD, REMOTE, 6, tcp(40002, 80, 0x02, b"data!"), Some(16)),
            packet(
                POD,
                REMOTE,
                1,
                icmp4(8, 0, id_seq(7, 1), b"ping payload"),
                Some(2),
            ),
            packet(REMOTE, UPLINK, 17, udp(53, 61000, HELLO), Some(6)),
            packet([198, 51, 100, 1], UPLINK, 1, icmp, Some(2)),
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let (mut ran, mut refused) = (0u32, 0u32);
        for i in 0..2500 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + next() % 4) {
                let at = 14 + (next() as usize) % (p.len() - 14);
                p[at] = next() as u8;
            }
            if next().is_multiple_of(4) {
                p.truncate(14 + (next() as usize) % (p.len() - 14));
            }
            for prog in progs::ALL {
                let prog_ref = classifier(&mut ebpf, prog);
                let mut out = vec![0u8; p.len() + 256];
                let Ok(r) = prog_ref.test_run(TestRunOptions {
                    data_in: Some(&p),
                    data_out: Some(&mut out),
                    ..TestRunOptions::default()
                }) else {
                    refused += 1;
                    continue;
                };
                ran += 1;
                assert!(
                    [0, 2, 7].contains(&r.return_value),
                    "{prog}: {} for {p:02x?}",
                    r.return_value
                );
            }
        }
        eprintln!("mutation fuzz: {ran} runs, {refused} refused by the kernel");
        assert!(ran > 4000);
    });
}

#[test]
fn port_range_expiry_and_bridge_mac_come_from_the_config() {
    if !root_or_skip("port_range_expiry_and_bridge_mac_come_from_the_config") {
        return;
    }
    in_private_netns(|| {
        let uplink = nix::net::if_::if_nametoindex(UPLINK_IF).unwrap();
        let mut ebpf = world_with_uplink(uplink);
        let bridge_mac = [0x02, 0xbb, 0, 0, 0, 0x01];
        {
            let mut cfg: Array<_, NetConfig> =
                Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
            let mut c = cfg.get(&maps::CONFIG_INDEX, 0).unwrap();
            c.nat_port_min = 50000;
            c.nat_port_max = 50001;
            c.ct_timeout_s = [0, 0, 1, 0]; // UDP: 1 s
            c.bridge_mac = bridge_mac;
            cfg.set(maps::CONFIG_INDEX, c, 0).unwrap();
        }
        let mut ports = Vec::new();
        for sport in [40000, 40001, 40002] {
            let (v, out) = run(
                &mut ebpf,
                progs::POD,
                &packet(POD, REMOTE, 17, udp(sport, 53, HELLO), Some(6)),
            );
            ports.push((v, be16(&out, 34)));
        }
        assert_eq!(ports[0].0, REDIRECT);
        assert_eq!(ports[1].0, REDIRECT);
        let mut used = [ports[0].1, ports[1].1];
        used.sort_unstable();
        assert_eq!(
            used,
            [50000, 50001],
            "both ports of the range, no collision"
        );
        assert_eq!(ports[2].0, 2, "range exhausted for this remote: dropped");
        assert_eq!(count(&ebpf, Verdict::DropNatPorts), 1);

        // Reverse NAT uses the bridge MAC as source.
        let nat = ports[0].1;
        let (v, back) = run(
            &mut ebpf,
            progs::UPLINK,
            &packet(REMOTE, UPLINK, 17, udp(53, nat, HELLO), Some(6)),
        );
        assert_eq!(v, REDIRECT);
        assert_eq!(&back[6..12], &bridge_mac);

        // An expired flow is treated as new: its reverse entry is recreated (fresh last_seen).
        let mut ct_out: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map_mut(maps::CT_OUT).unwrap()).unwrap();
        let stale: Vec<_> = ct_out.iter().map(Result::unwrap).collect();
        for (k, mut v) in stale {
            v.last_seen = 1;
            ct_out.insert(k, v, 0).unwrap();
        }
        let mut ct_in: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map_mut(maps::CT_IN).unwrap()).unwrap();
        let stale: Vec<_> = ct_in.iter().map(Result::unwrap).collect();
        for (k, mut v) in stale {
            v.last_seen = 1;
            ct_in.insert(k, v, 0).unwrap();
        }
        let (v, _) = run(
            &mut ebpf,
            progs::POD,
            &packet(POD, REMOTE, 17, udp(40000, 53, HELLO), Some(6)),
        );
        assert_eq!(v, REDIRECT);
        let ct_in: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map(maps::CT_IN).unwrap()).unwrap();
        let pod_port = 40000u16.to_be();
        let fresh = ct_in
            .iter()
            .map(Result::unwrap)
            .find(|(_, v)| v.port == pod_port)
            .expect("reverse entry of the renewed flow");
        assert!(fresh.1.last_seen > 1, "recreated, not the stale one");
    });
}
