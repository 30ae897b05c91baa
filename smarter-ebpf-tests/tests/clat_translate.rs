//! `BPF_PROG_TEST_RUN` tests of the CLAT (IPv4 ↔ IPv6 on an IPv6-only uplink, RFC 7915): the
//! test run's device (the loopback, ifindex 1) plays the uplink, with a `clat` entry. Out:
//! `smarter_egress` turns what the pod program NATed to 192.0.0.1 into IPv6 from the CLAT
//! address to the NAT64 prefix (UDP, ICMP echo, a fragment) with valid checksums. In:
//! `smarter_uplink` turns replies (UDP, a fragment) and an ICMPv6 packet too big about one of
//! the pod's flows into IPv4 and delivers them into the pod, checksums valid, the quoted packet
//! translated back to the pod's own.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{Ebpf, maps::HashMap};
use smarter_common::{
    ClatValue, CtKey, CtValue, Verdict,
    clat::{CLAT_V4, WELL_KNOWN_PREF64},
    ct::CT_NEW,
    maps, progs,
};
use smarter_ebpf_tests::run::run;
use smarter_ebpf_tests::world::{count, in_private_netns, world_with_uplink};
use smarter_ebpf_tests::{GW_MAC, HELLO, POD, POD_MAC, REDIRECT, root_or_skip};
use smarter_testbed::packet::{
    Ipv4, Ipv6, be16, icmp4, id_seq, inet_csum, ipv4_ok, l4_ok, udp, with_l4_csum,
};

/// The node's CLAT address.
const CLAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0x1111, 0x2222, 0x3333, 0x4444);
/// The IPv4 server and its address in the NAT64 prefix.
const SERVER: [u8; 4] = [203, 0, 113, 1];
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xcb00, 0x7101);
const POD_PORT: u16 = 40000;
const NAT_PORT: u16 = 61000;
/// The test run's device, the loopback.
const DEV: u32 = 1;

fn ne(o: [u8; 4]) -> u32 {
    u32::from_ne_bytes(o)
}

/// The object with the CLAT on the test device and one UDP flow pod:40000 → server:53 NATed to
/// 192.0.0.1:61000.
fn clat_world() -> Ebpf {
    let mut ebpf = world_with_uplink(0);
    let mut clat: HashMap<_, u32, ClatValue> =
        HashMap::try_from(ebpf.map_mut(maps::CLAT).unwrap()).unwrap();
    let value = ClatValue {
        src6: CLAT6.octets(),
        pref64: WELL_KNOWN_PREF64,
        v4: CLAT_V4,
    };
    clat.insert(DEV, value, 0).unwrap();
    let mut node_addrs: HashMap<_, u32, u32> =
        HashMap::try_from(ebpf.map_mut(maps::NODE_ADDRS).unwrap()).unwrap();
    node_addrs.insert(CLAT_V4, DEV, 0).unwrap();
    let flow = |m: &str, key: CtKey, value: CtValue, ebpf: &mut Ebpf| {
        let mut ct: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map_mut(m).unwrap()).unwrap();
        ct.insert(key, value, 0).unwrap();
    };
    let now = 1;
    let in_key = CtKey::wire_side(ne(SERVER), 53u16.to_be(), NAT_PORT.to_be(), 17);
    let pod_key = in_key.to_pod_side(ne(POD), POD_PORT.to_be());
    flow(
        maps::CT_IN,
        in_key,
        CtValue::new(now, ne(POD), POD_PORT.to_be(), CT_NEW),
        &mut ebpf,
    );
    flow(
        maps::CT_OUT,
        pod_key,
        CtValue::new(now, CLAT_V4, NAT_PORT.to_be(), CT_NEW),
        &mut ebpf,
    );
    ebpf
}

/// Whether the IPv6 packet at 14.. has a valid L4 checksum (at `at` inside the L4 header,
/// which starts at `l4`), over the IPv6 pseudo header with next header `next`.
fn l4_ok6(f: &[u8], l4: usize, next: u8) -> bool {
    let mut over = f[22..54].to_vec();
    over.extend_from_slice(&u32::try_from(f.len() - l4).unwrap().to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, next]);
    over.extend_from_slice(&f[l4..]);
    inet_csum(&over) == 0
}

/// An IPv4 frame as the pod program leaves it: NATed to 192.0.0.1, TTL 63.
fn natted(proto: u8, l4: Vec<u8>, frag: u16) -> Vec<u8> {
    Ipv4::new(CLAT_V4.to_ne_bytes(), SERVER, proto)
        .ttl(63)
        .frag(frag)
        .frame(GW_MAC, POD_MAC, &l4)
}

#[test]
fn out_becomes_ipv6_with_valid_checksums() {
    if !root_or_skip("out_becomes_ipv6_with_valid_checksums") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = clat_world();
        let src = Ipv4Addr::from(CLAT_V4.to_ne_bytes());
        let l4 = with_l4_csum(src, Ipv4Addr::from(SERVER), 17, udp(NAT_PORT, 53, HELLO), 6);
        let (v, out) = run(&mut ebpf, progs::EGRESS, &natted(17, l4, Ipv4::DF));
        assert_eq!(v, REDIRECT, "out through the neighbour lookup");
        assert_eq!(be16(&out, 12), 0x86dd, "an IPv6 frame");
        assert_eq!(out[14] >> 4, 6);
        assert_eq!(out[20], 17, "next header UDP");
        assert_eq!(out[21], 63, "hop limit from the TTL");
        assert_eq!(out[22..38], CLAT6.octets(), "from the CLAT address");
        assert_eq!(
            out[38..54],
            SERVER6.octets(),
            "to the NAT64 prefix + the server"
        );
        assert_eq!(
            usize::from(be16(&out, 18)),
            8 + HELLO.len(),
            "payload length"
        );
        assert_eq!(&out[62..], HELLO);
        assert!(
            l4_ok6(&out, 54, 17),
            "UDP checksum over the IPv6 pseudo header"
        );
        assert_eq!(count(&ebpf, Verdict::ClatOut), 1);

        // ICMP echo → ICMPv6 echo request, whose checksum covers the pseudo header.
        let echo = icmp4(8, 0, id_seq(NAT_PORT, 7), b"ping through the CLAT");
        let echo = with_l4_csum(src, Ipv4Addr::from(SERVER), 1, echo, 2);
        let (_, out) = run(&mut ebpf, progs::EGRESS, &natted(1, echo, Ipv4::DF));
        assert_eq!((out[20], out[54]), (58, 128), "ICMPv6 echo request");
        assert!(l4_ok6(&out, 54, 58), "ICMPv6 checksum");

        // A first fragment (MF) gets a fragment header with the IPv4 id.
        let l4 = with_l4_csum(src, Ipv4Addr::from(SERVER), 17, udp(NAT_PORT, 53, HELLO), 6);
        let frag = Ipv4::new(CLAT_V4.to_ne_bytes(), SERVER, 17)
            .ttl(63)
            .id(0xbeef)
            .frag(0x2000)
            .frame(GW_MAC, POD_MAC, &l4);
        let (_, out) = run(&mut ebpf, progs::EGRESS, &frag);
        assert_eq!(out[20], 44, "a fragment header");
        assert_eq!(out[54], 17, "then UDP");
        assert_eq!(be16(&out, 56), 1, "offset 0, more fragments");
        assert_eq!(&out[58..62], &[0, 0, 0xbe, 0xef], "the IPv4 id");
        assert_eq!(usize::from(be16(&out, 18)), 8 + 8 + HELLO.len());

        // Not NATed for the CLAT (a pod address): the backstop, never translated.
        let leak = Ipv4::new(POD, SERVER, 17).frame(GW_MAC, POD_MAC, &udp(1, 2, HELLO));
        let (v, _) = run(&mut ebpf, progs::EGRESS, &leak);
        assert_eq!(v, smarter_ebpf_tests::SHOT);
    });
}

#[test]
fn replies_and_packet_too_big_come_back_into_the_pod() {
    if !root_or_skip("replies_and_packet_too_big_come_back_into_the_pod") {
        return;
    }
    in_private_netns(|| {
        let mut ebpf = clat_world();
        let reply = with_l4_csum(SERVER6, CLAT6, 17, udp(53, NAT_PORT, HELLO), 6);
        let frame = Ipv6::new(SERVER6, CLAT6, 17)
            .hop_limit(60)
            .frame(GW_MAC, GW_MAC, &reply);
        let (v, back) = run(&mut ebpf, progs::UPLINK, &frame);
        assert_eq!(v, REDIRECT, "into the pod");
        assert_eq!(be16(&back, 12), 0x0800);
        assert_eq!(&back[0..6], &POD_MAC);
        assert_eq!(&back[26..30], &SERVER, "from the server's IPv4 address");
        assert_eq!(&back[30..34], &POD, "to the pod");
        assert_eq!(be16(&back, 36), POD_PORT);
        assert_eq!(back[22], 59, "TTL from the hop limit, decremented");
        assert!(
            ipv4_ok(&back).1 && l4_ok(&back, 6),
            "IPv4 and UDP checksums"
        );
        assert_eq!(count(&ebpf, Verdict::ClatIn), 1);
        assert_eq!(count(&ebpf, Verdict::NatIn), 1);

        // A first fragment: IPv4 with MF and the low half of the fragment id.
        let mut fragged = vec![17, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
        fragged.extend_from_slice(&reply);
        let frame = Ipv6::new(SERVER6, CLAT6, 44).frame(GW_MAC, GW_MAC, &fragged);
        let (v, back) = run(&mut ebpf, progs::UPLINK, &frame);
        assert_eq!(v, REDIRECT);
        assert_eq!(be16(&back, 18), 0x5678, "IPv4 id");
        assert_eq!(be16(&back, 20), 0x2000, "more fragments, offset 0");
        assert!(ipv4_ok(&back).1);
        assert_eq!(&back[30..34], &POD);

        // Packet too big (1280) quoting the flow's IPv6 packet: fragmentation needed (1260)
        // quoting the pod's own IPv4 packet.
        let sent = with_l4_csum(CLAT6, SERVER6, 17, udp(NAT_PORT, 53, HELLO), 6);
        let quoted = Ipv6::new(CLAT6, SERVER6, 17).hop_limit(63).packet(&sent);
        let mut body = 1280u32.to_be_bytes().to_vec();
        body.extend_from_slice(&quoted);
        let router: Ipv6Addr = "2001:db8:64::1".parse().unwrap();
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&body);
        let icmp = with_l4_csum(router, CLAT6, 58, icmp, 2);
        let frame = Ipv6::new(router, CLAT6, 58).frame(GW_MAC, GW_MAC, &icmp);
        let (v, back) = run(&mut ebpf, progs::UPLINK, &frame);
        assert_eq!(v, REDIRECT, "the error reaches the pod");
        assert_eq!(
            (back[23], back[34], back[35]),
            (1, 3, 4),
            "ICMP frag needed"
        );
        assert_eq!(be16(&back, 40), 1260, "next-hop MTU 20 bytes less");
        assert_eq!(&back[30..34], &POD);
        let inner = &back[42..];
        assert_eq!(&inner[12..16], &POD, "quoted source: the pod");
        assert_eq!(be16(inner, 20), POD_PORT, "quoted source port: the pod's");
        assert_eq!(&inner[16..20], &SERVER, "quoted destination: the server");
        assert_eq!(inet_csum(&inner[..20]), 0, "quoted IPv4 header checksum");
        assert!(ipv4_ok(&back).1, "outer IPv4 checksum");
        assert_eq!(inet_csum(&back[34..]), 0, "ICMP checksum");
        assert_eq!(
            usize::from(be16(&back, 16)),
            back.len() - 14,
            "IPv4 total length"
        );
        assert_eq!(count(&ebpf, Verdict::IcmpErrorIn), 1);

        // Not from the NAT64 prefix: host traffic, untouched.
        let other: Ipv6Addr = "2001:db8:99::1".parse().unwrap();
        let frame = Ipv6::new(other, CLAT6, 17).frame(GW_MAC, GW_MAC, &udp(53, NAT_PORT, HELLO));
        let (v, back) = run(&mut ebpf, progs::UPLINK, &frame);
        assert_eq!((v, back), (smarter_ebpf_tests::OK, frame));
    });
}
