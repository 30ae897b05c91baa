//! hostPort elements, conflicts and the listing round trip (no root, no `nft`).

use std::net::Ipv4Addr;

use serde_json::json;

use super::{check, dnat_rules, element, normalized, overlap};
use crate::datapath::nftables::error::NftablesError;
use crate::datapath::nftables::parse;
use crate::datapath::types::HostPortSpec;

const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const POD: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 3);

fn hp(protocol: u8, host_port: u16, host_ip: Option<Ipv4Addr>) -> HostPortSpec {
    HostPortSpec {
        host_port,
        container_port: 80,
        protocol,
        host_ip,
    }
}

#[test]
fn elements_go_to_the_map_of_their_kind() {
    assert_eq!(
        element("add", "t", &hp(6, 8080, None), POD).unwrap(),
        "add element inet t hostport_tcp { 8080 : 172.39.0.2 . 80 }\n"
    );
    assert_eq!(
        element("delete", "t", &hp(17, 1883, Some(LAN)), POD).unwrap(),
        "delete element inet t hostip_udp { 192.168.77.1 . 1883 : 172.39.0.2 . 80 }\n"
    );
    assert_eq!(
        element("add", "t", &hp(6, 1, Some(LAN)), POD).unwrap(),
        "add element inet t hostip_tcp { 192.168.77.1 . 1 : 172.39.0.2 . 80 }\n"
    );
    assert!(matches!(
        element("add", "t", &hp(132, 1, None), POD),
        Err(NftablesError::Invalid { .. })
    ));
}

#[test]
fn unspecified_host_ip_is_every_address() {
    let any = hp(6, 80, Some(Ipv4Addr::UNSPECIFIED));
    assert_eq!(normalized(&any), hp(6, 80, None));
    assert_eq!(normalized(&hp(6, 80, Some(LAN))), hp(6, 80, Some(LAN)));
}

#[test]
fn overlap_follows_address_and_protocol() {
    assert!(overlap(&hp(6, 80, None), &hp(6, 80, None)));
    assert!(overlap(&hp(6, 80, None), &hp(6, 80, Some(LAN))));
    assert!(overlap(&hp(6, 80, Some(LAN)), &hp(6, 80, None)));
    assert!(overlap(&hp(6, 80, Some(LAN)), &hp(6, 80, Some(LAN))));
    assert!(!overlap(&hp(6, 80, Some(LAN)), &hp(6, 80, Some(WAN))));
    assert!(!overlap(&hp(6, 80, None), &hp(17, 80, None)));
    assert!(!overlap(&hp(6, 80, None), &hp(6, 81, None)));
}

#[test]
fn conflicts_name_the_holder() {
    let mapped = [(hp(6, 1883, Some(LAN)), OTHER), (hp(17, 53, None), OTHER)];
    // Another address of the same port, or the pod's own mapping: free.
    check(POD, &[hp(6, 1883, Some(WAN))], &mapped).unwrap();
    check(OTHER, &[hp(6, 1883, None)], &mapped).unwrap();
    for wanted in [
        hp(6, 1883, None),
        hp(6, 1883, Some(LAN)),
        hp(17, 53, Some(WAN)),
    ] {
        let err = check(POD, &[wanted], &mapped).unwrap_err();
        assert!(
            matches!(&err, NftablesError::HostPortTaken { owner, .. } if owner == "172.39.0.3:80"),
            "{wanted:?}: {err:?}"
        );
    }
    let twice = [hp(6, 8080, Some(LAN)), hp(6, 8080, None)];
    assert!(matches!(
        check(POD, &twice, &[]),
        Err(NftablesError::Invalid {
            what: "hostPort list",
            ..
        })
    ));
    check(POD, &[hp(6, 8080, Some(LAN)), hp(6, 8080, Some(WAN))], &[]).unwrap();
    assert!(check(POD, &[hp(1, 8080, None)], &[]).is_err());
}

#[test]
fn address_keyed_maps_are_looked_up_first() {
    assert_eq!(
        dnat_rules("fib daddr type local"),
        [
            "fib daddr type local dnat ip to ip daddr . tcp dport map @hostip_tcp",
            "fib daddr type local dnat ip to ip daddr . udp dport map @hostip_udp",
            "fib daddr type local dnat ip to tcp dport map @hostport_tcp",
            "fib daddr type local dnat ip to udp dport map @hostport_udp",
        ]
    );
}

#[test]
fn listings_round_trip_host_ip() {
    // Captured from nftables 1.0.6 (`nft -j list table inet ...`) after adding the elements
    // `element` writes.
    let inet = json!({"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"map": {"family": "inet", "name": "hostip_tcp", "table": "t", "type": ["ipv4_addr", "inet_service"],
                 "handle": 2, "map": "ipv4_addr . inet_service",
                 "elem": [[{"concat": ["192.168.77.1", 1883]}, {"concat": ["172.39.0.2", 80]}]]}},
        {"map": {"family": "inet", "name": "hostport_tcp", "table": "t", "type": "inet_service", "handle": 3,
                 "map": "ipv4_addr . inet_service", "elem": [[8080, {"concat": ["172.39.0.3", 80]}]]}}]});
    assert_eq!(
        parse::host_ports(&inet, "hostip_tcp", 6).unwrap(),
        vec![(hp(6, 1883, Some(LAN)), POD)]
    );
    assert_eq!(
        parse::host_ports(&inet, "hostport_tcp", 6).unwrap(),
        vec![(hp(6, 8080, None), OTHER)]
    );
    let bad = json!({"nftables": [{"map": {"name": "hostip_udp",
        "elem": [[{"concat": ["192.168.77.1"]}, {"concat": ["172.39.0.2", 80]}]]}}]});
    assert!(matches!(
        parse::host_ports(&bad, "hostip_udp", 17),
        Err(NftablesError::Parse { .. })
    ));
}
