use super::*;

const TAYGA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0x64, 0, 0, 0, 0);
const OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0);

/// A PREF64 option: `lifetime` seconds (scaled by 8), prefix length code `plc`, `prefix`.
fn option(lifetime: u16, plc: u16, prefix: Ipv6Addr) -> Vec<u8> {
    let mut o = vec![ND_OPT_PREF64, 2];
    o.extend_from_slice(&((lifetime / 8) << 3 | plc).to_be_bytes());
    o.extend_from_slice(&prefix.octets()[..12]);
    o
}

/// An `RTM_NEWNDUSEROPT` message as the kernel sends it: header, `nduseroptmsg`, the options,
/// then the `NDUSEROPT_SRCADDR` attribute.
fn message(ifindex: i32, icmp_type: u8, opts: &[u8]) -> Vec<u8> {
    let mut body = vec![AF_INET6, 0];
    body.extend_from_slice(&u16::try_from(opts.len()).unwrap().to_ne_bytes());
    body.extend_from_slice(&ifindex.to_ne_bytes());
    body.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(opts);
    body.extend_from_slice(&20u16.to_ne_bytes());
    body.extend_from_slice(&1u16.to_ne_bytes());
    body.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    let mut m = u32::try_from(16 + body.len())
        .unwrap()
        .to_ne_bytes()
        .to_vec();
    m.extend_from_slice(&RTM_NEWNDUSEROPT.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(&body);
    m
}

#[test]
fn the_pref64_option_is_parsed() {
    assert_eq!(
        parse_pref64_option(&option(600, 0, TAYGA)),
        Some(RaPref64::Prefix {
            prefix: TAYGA,
            lifetime: Duration::from_secs(600)
        })
    );
    // The lifetime is in units of 8 seconds; the last 32 bits are never carried.
    let mut o = option(65528, 0, Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6));
    assert_eq!(
        parse_pref64_option(&o),
        Some(RaPref64::Prefix {
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 0, 0),
            lifetime: Duration::from_secs(65528)
        })
    );
    o[1] = 3;
    assert_eq!(parse_pref64_option(&o), None);
    assert_eq!(
        parse_pref64_option(&option(600, 1, TAYGA)),
        Some(RaPref64::Unsupported { plc: 1 })
    );
    assert_eq!(parse_pref64_option(&option(600, 0, TAYGA)[..12]), None);
    let mut rdnss = option(600, 0, TAYGA);
    rdnss[0] = 25;
    assert_eq!(parse_pref64_option(&rdnss), None);
}

#[test]
fn netlink_messages_give_the_options_with_their_interface() {
    let mut opts = vec![25, 3, 0, 0, 0, 0, 0, 0];
    opts.extend_from_slice(&[0; 16]);
    opts.extend(option(600, 0, TAYGA));
    let mut datagram = message(7, ND_ROUTER_ADVERT, &opts);
    datagram.extend(message(8, ND_ROUTER_ADVERT, &option(0, 0, OTHER)));
    // Not a router advertisement: skipped.
    datagram.extend(message(9, 137, &option(600, 0, OTHER)));
    assert_eq!(
        ra_pref64s(&datagram),
        [
            (
                7,
                RaPref64::Prefix {
                    prefix: TAYGA,
                    lifetime: Duration::from_secs(600)
                }
            ),
            (
                8,
                RaPref64::Prefix {
                    prefix: OTHER,
                    lifetime: Duration::ZERO
                }
            ),
        ]
    );
    // Truncated or malformed: nothing, and no panic.
    for cut in 0..datagram.len() {
        let _ = ra_pref64s(&datagram[..cut]);
    }
    let mut zero_len = message(7, ND_ROUTER_ADVERT, &option(600, 0, TAYGA));
    zero_len[16 + 16 + 1] = 0;
    assert!(ra_pref64s(&zero_len).is_empty());
}

#[test]
fn the_ipv4only_answers_give_the_prefix() {
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    assert_eq!(
        from_ipv4only_answers(&[a("2001:db8:64:64::c000:aa")]),
        Some(TAYGA)
    );
    assert_eq!(
        from_ipv4only_answers(&[a("2001:db8::1"), a("64:ff9b::192.0.0.171")]),
        Some(a("64:ff9b::"))
    );
    assert_eq!(from_ipv4only_answers(&[a("2001:db8::c000:ac")]), None);
    assert_eq!(from_ipv4only_answers(&[]), None);
}

#[test]
fn the_router_wins_over_the_resolvers() {
    assert_eq!(choose(None, None), None);
    assert_eq!(
        choose(None, Some(OTHER)),
        Some(Pref64Record {
            prefix: OTHER,
            source: Pref64Source::Dns
        })
    );
    assert_eq!(
        choose(Some(TAYGA), Some(OTHER)),
        Some(Pref64Record {
            prefix: TAYGA,
            source: Pref64Source::Ra
        })
    );
}

#[test]
fn ra_prefixes_are_per_interface_expire_and_are_withdrawn() {
    let t0 = Instant::now();
    let mut d = Discovery::default();
    let ra = |p, secs| RaPref64::Prefix {
        prefix: p,
        lifetime: Duration::from_secs(secs),
    };
    assert!(d.on_ra(3, ra(TAYGA, 600), t0));
    // The same again only refreshes the lifetime.
    assert!(!d.on_ra(3, ra(TAYGA, 600), t0 + Duration::from_secs(100)));
    assert!(!d.on_ra(3, RaPref64::Unsupported { plc: 2 }, t0));
    assert_eq!(d.current(3, t0).map(|r| r.source), Some(Pref64Source::Ra));
    // Another interface's router says nothing for this CLAT.
    assert_eq!(d.current(4, t0), None);
    assert_eq!(
        d.next_deadline(t0),
        Some(t0 + Duration::from_secs(700)),
        "the RA expiry wakes the agent"
    );
    assert_eq!(d.current(3, t0 + Duration::from_secs(700)), None, "expired");
    assert!(d.on_ra(3, ra(TAYGA, 0), t0), "withdrawn");
    assert_eq!(d.current(3, t0), None);
    assert!(!d.on_ra(3, ra(TAYGA, 0), t0));
}

#[test]
fn the_resolvers_are_asked_without_an_ra_prefix_with_backoff() {
    let t0 = Instant::now();
    let mut d = Discovery::default();
    assert!(d.dns_due(3, t0));
    // Failures: not again before 30 s, then doubling.
    assert!(!d.dns_answered(None, t0));
    assert!(!d.dns_due(3, t0 + Duration::from_secs(29)));
    assert!(d.dns_due(3, t0 + Duration::from_secs(30)));
    assert!(!d.dns_answered(None, t0 + Duration::from_secs(30)));
    assert!(!d.dns_due(3, t0 + Duration::from_secs(89)));
    assert!(d.dns_due(3, t0 + Duration::from_secs(90)));
    assert_eq!(dns_backoff(1), Duration::from_secs(30));
    assert_eq!(dns_backoff(3), Duration::from_secs(120));
    assert_eq!(dns_backoff(50), Duration::from_secs(600));
    // An answer: in force, asked again after its TTL (at least a minute).
    let t1 = t0 + Duration::from_secs(90);
    assert!(d.dns_answered(Some((OTHER, Duration::from_secs(5))), t1));
    assert_eq!(
        d.current(3, t1),
        Some(Pref64Record {
            prefix: OTHER,
            source: Pref64Source::Dns
        })
    );
    assert!(!d.dns_due(3, t1 + Duration::from_secs(59)));
    assert!(d.dns_due(3, t1 + Duration::from_secs(60)));
    // A failed refresh keeps the prefix.
    assert!(!d.dns_answered(None, t1 + Duration::from_secs(60)));
    assert_eq!(d.current(3, t1).map(|r| r.prefix), Some(OTHER));
    // With a router's prefix the resolvers are not asked.
    d.on_ra(
        3,
        RaPref64::Prefix {
            prefix: TAYGA,
            lifetime: Duration::from_secs(600),
        },
        t1,
    );
    assert!(!d.dns_due(3, t1 + Duration::from_secs(300)));
    assert_eq!(d.current(3, t1).map(|r| r.prefix), Some(TAYGA));
}
