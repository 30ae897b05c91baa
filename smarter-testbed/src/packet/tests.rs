use super::*;

#[test]
fn rfc1071_example_and_odd_length() {
    // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
    assert_eq!(
        inet_csum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
    assert_eq!(inet_csum(&[0xff]), !0xff00);
    // A buffer carrying its own checksum sums to zero.
    let mut b = vec![
        0x45, 0x00, 0x00, 0x1c, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let c = inet_csum(&b);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(inet_csum(&b), 0);
}

#[test]
fn ipv4_header_as_the_textbook_example() {
    // 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7 (Wikipedia, "IPv4 header checksum").
    let p = Ipv4::new([192, 168, 0, 1], [192, 168, 0, 199], 17)
        .id(0)
        .frag(Ipv4::DF)
        .packet(&[0; 0x73 - 20]);
    assert_eq!(
        p[..20],
        [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7
        ]
    );
}

#[test]
fn ipv4_frame_with_options_reads_back_and_checksums_hold() {
    let (src, dst) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let l4 = with_l4_csum(src, dst, 17, udp(1000, 53, b"abc"), 6);
    assert_eq!(be16(&l4, 4), 11, "UDP length");
    let f = Ipv4::new(src, dst, 17)
        .options(&[1, 1, 1, 0])
        .frag(Ipv4::MF | 3)
        .id(7)
        .ttl(9)
        .frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], &l4);
    assert!(is_ipv4(&f));
    assert_eq!(ipv4_ok(&f), (24, true));
    assert!(l4_ok(&f, 6));
    assert_eq!((ipv4_src(&f), ipv4_dst(&f)), (src, dst));
    assert_eq!(be16(&f, 12), ETH_P_IP);
    assert_eq!(be16(&f, 16), 24 + 11, "total length");
    assert_eq!((be16(&f, 18), be16(&f, 20), f[22]), (7, 0x2003, 9));
    assert_eq!(
        be16(&f, ETH_HLEN + 24),
        1000,
        "source port after the options"
    );
    let mut bad = f.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(!l4_ok(&bad, 6), "a changed payload breaks the UDP checksum");
    bad[ETH_HLEN + 8] ^= 1;
    assert!(!ipv4_ok(&bad).1, "a changed TTL breaks the header checksum");
    // No UDP checksum counts as valid.
    let f = Ipv4::new(src, dst, 17).frame([0; 6], [0; 6], &udp(1, 2, b"x"));
    assert!(l4_ok(&f, 6));
}

#[test]
#[should_panic(expected = "whole words")]
fn ipv4_options_are_whole_words() {
    let _ = Ipv4::new([0; 4], [0; 4], 0).options(&[1, 1]);
}

#[test]
fn tcp_and_icmp_carry_valid_checksums() {
    let (src, dst) = ([172, 39, 0, 3], [198, 51, 100, 7]);
    let t = with_l4_csum(src, dst, 6, tcp(40000, 80, 0x02, b"data!"), 16);
    assert_eq!((t.len(), t[12], t[13]), (25, 0x50, 0x02));
    let f = Ipv4::new(src, dst, 6).frame([0; 6], [0; 6], &t);
    assert!(l4_ok(&f, 16));
    let m = icmp4(8, 0, id_seq(0x4242, 1), b"ping");
    assert_eq!(m[4..8], [0x42, 0x42, 0, 1]);
    assert_eq!(inet_csum(&m), 0);
    // A checksum filled in again over a valid one stays the same.
    assert_eq!(with_l4_csum(src, dst, 1, m.clone(), 2), m);
    let f = Ipv4::new(src, dst, 1).frame([0; 6], [0; 6], &m);
    assert!(l4_ok(&f, 2));
}

#[test]
fn arp_message_layout() {
    let a = arp(
        2,
        [2, 0, 0, 0, 0, 9],
        [172, 39, 0, 9],
        BROADCAST,
        [172, 39, 0, 1],
    );
    assert_eq!(a.len(), 28);
    assert_eq!(a[..8], [0, 1, 8, 0, 6, 4, 0, 2]);
    assert_eq!(a[14..18], [172, 39, 0, 9]);
    assert_eq!(a[24..], [172, 39, 0, 1]);
}

/// Whether the ICMPv6 or UDP message `m` from `src` to `dst` sums to zero with its pseudo
/// header.
fn csum6_ok(src: [u8; 16], dst: [u8; 16], next: u8, m: &[u8]) -> bool {
    let mut over = src.to_vec();
    over.extend_from_slice(&dst);
    over.extend_from_slice(&(m.len() as u32).to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, next]);
    over.extend_from_slice(m);
    inet_csum(&over) == 0
}

#[test]
fn ipv6_neighbour_discovery_and_udp() {
    let me: [u8; 16] = "fe80::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let ra = ra_body(
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        None,
    );
    assert_eq!(ra.len(), 44);
    let with_source = ra_body(ALL_NODES, Some([2, 0, 0, 0, 0, 2]));
    assert_eq!(with_source.len(), 52);
    assert_eq!(
        with_source[12..14],
        [1, 1],
        "source link-layer address option first"
    );
    let m = icmp6(me, ALL_NODES, 134, &ra);
    assert!(csum6_ok(me, ALL_NODES, 58, &m));
    let u = udp6(me, ALL_NODES, 546, 547, &[7, 0, 0, 1]);
    assert!(csum6_ok(me, ALL_NODES, 17, &u));
    assert_eq!(be16(&u, 4), 12);
    let na = nd_body(0x20, me, &nd_opt(2, [2, 0, 0, 0, 0, 2]));
    assert_eq!((na.len(), na[0], na[20]), (28, 0x20, 2));
    assert_eq!(redirect_body(me, ALL_NODES, [0; 6]).len(), 44);
    let f = Ipv6::new(me, ALL_NODES, 0).hop_limit(1).frame(
        eth_dst6(ALL_NODES, [9; 6]),
        [2; 6],
        &ext8(58),
    );
    assert_eq!(f[..6], [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(be16(&f, 12), ETH_P_IPV6);
    assert_eq!((be16(&f, 18), f[20], f[21]), (8, 0, 1));
    assert_eq!(f[ETH_HLEN + 40..], [58, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(eth_dst6(me, [9; 6]), [9; 6], "unicast keeps its MAC");
}

#[test]
#[should_panic(expected = "two families")]
fn a_pseudo_header_has_one_family() {
    let _ = with_l4_csum([10, 0, 0, 1], ALL_NODES, 17, udp(1, 2, b""), 6);
}
