//! Unit tests of script generation and listing parsing (no root, no `nft`).

use std::net::Ipv4Addr;

use serde_json::json;

use super::config::NftablesConfig;
use super::error::NftablesError;
use super::script::{
    Doomed, attach_script, detach_script, ensure_script, probe_script, table_name,
};
use super::traffic::Counted;
use super::{l2, parse};
use crate::datapath::types::{HostPortSpec, PodLink, TrafficDir};

fn default_config() -> NftablesConfig {
    NftablesConfig {
        network: "smartnet".into(),
        bridge: "smartnet0".into(),
        subnet: "172.39.0.0/16".parse().unwrap(),
        gateway: Ipv4Addr::new(172, 39, 0, 1),
        v6: None,
        uplinks: Vec::new(),
        deny: vec![
            "203.0.113.0/24".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ],
        nat_ports: (61000, 64999),
    }
}

fn ep(last: u8, ifname: &str) -> PodLink {
    PodLink {
        ip: Ipv4Addr::new(172, 39, 0, last),
        ip6: None,
        mac: [2, 0, 0, 0, 0, last],
        host_ifname: ifname.into(),
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;

#[test]
fn default_ruleset_snapshot() {
    let expected = r#"add table inet smarter_smartnet
add set inet smarter_smartnet deny { type ipv4_addr; flags interval; auto-merge; }
flush set inet smarter_smartnet deny
add element inet smarter_smartnet deny { 203.0.113.0/24, 10.0.0.0/8 }
add map inet smarter_smartnet hostip_tcp { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
add map inet smarter_smartnet hostip_udp { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
add map inet smarter_smartnet hostport_tcp { type inet_service : ipv4_addr . inet_service; }
add map inet smarter_smartnet hostport_udp { type inet_service : ipv4_addr . inet_service; }
add set inet smarter_smartnet traffic_out { type ipv4_addr . ifname; flags dynamic; size 65535; }
add set inet smarter_smartnet traffic_in { type ipv4_addr . ifname; flags dynamic; size 65535; }
add counter inet smarter_smartnet drop_deny
add counter inet smarter_smartnet drop_nodelocal
add counter inet smarter_smartnet nat_masquerade
add counter inet smarter_smartnet drop_leak
add counter inet smarter_smartnet drop_ipv6
add chain inet smarter_smartnet prerouting { type nat hook prerouting priority dstnat; policy accept; }
flush chain inet smarter_smartnet prerouting
add rule inet smarter_smartnet prerouting fib daddr type local dnat ip to ip daddr . tcp dport map @hostip_tcp
add rule inet smarter_smartnet prerouting fib daddr type local dnat ip to ip daddr . udp dport map @hostip_udp
add rule inet smarter_smartnet prerouting fib daddr type local dnat ip to tcp dport map @hostport_tcp
add rule inet smarter_smartnet prerouting fib daddr type local dnat ip to udp dport map @hostport_udp
add chain inet smarter_smartnet output { type nat hook output priority -100; policy accept; }
flush chain inet smarter_smartnet output
add rule inet smarter_smartnet output ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ip daddr . tcp dport map @hostip_tcp
add rule inet smarter_smartnet output ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ip daddr . udp dport map @hostip_udp
add rule inet smarter_smartnet output ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to tcp dport map @hostport_tcp
add rule inet smarter_smartnet output ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to udp dport map @hostport_udp
add chain inet smarter_smartnet postrouting { type nat hook postrouting priority srcnat; policy accept; }
flush chain inet smarter_smartnet postrouting
add rule inet smarter_smartnet postrouting ip saddr 172.39.0.0/16 ip daddr 172.39.0.0/16 oifname "smartnet0" ct status dnat masquerade
add rule inet smarter_smartnet postrouting ip saddr 172.39.0.0/16 oifname != "smartnet0" meta l4proto { tcp, udp } counter name nat_masquerade masquerade to :61000-64999
add rule inet smarter_smartnet postrouting ip saddr 172.39.0.0/16 oifname != "smartnet0" counter name nat_masquerade masquerade
add chain inet smarter_smartnet backstop { type filter hook postrouting priority 300; policy accept; }
flush chain inet smarter_smartnet backstop
add rule inet smarter_smartnet backstop oifname != { "smartnet0", "lo" } ip saddr 172.39.0.0/16 counter name drop_leak drop
add rule inet smarter_smartnet backstop iifname "smartnet0" oifname != { "smartnet0", "lo" } ct direction original ct original ip saddr 172.39.0.0/16 update @traffic_out { ct original ip saddr . oifname counter }
add rule inet smarter_smartnet backstop iifname "smartnet0" oifname != { "smartnet0", "lo" } ct direction reply ct reply ip saddr 172.39.0.0/16 update @traffic_out { ct reply ip saddr . oifname counter }
add chain inet smarter_smartnet pod_in
flush chain inet smarter_smartnet pod_in
add rule inet smarter_smartnet pod_in update @traffic_in { ip daddr . iifname counter }
add rule inet smarter_smartnet pod_in accept
add chain inet smarter_smartnet forward { type filter hook forward priority filter; policy accept; }
flush chain inet smarter_smartnet forward
add rule inet smarter_smartnet forward iifname "smartnet0" oifname != "smartnet0" meta nfproto ipv6 counter name drop_ipv6 drop
add rule inet smarter_smartnet forward iifname "smartnet0" ip daddr @deny counter name drop_deny drop
add rule inet smarter_smartnet forward iifname != "smartnet0" oifname "smartnet0" ip daddr 172.39.0.0/16 ct status dnat goto pod_in
add rule inet smarter_smartnet forward iifname != "smartnet0" oifname "smartnet0" ip daddr 172.39.0.0/16 ct state established,related goto pod_in
add rule inet smarter_smartnet forward iifname != "smartnet0" oifname "smartnet0" ip daddr 172.39.0.0/16 counter name drop_nodelocal drop
"#;
    let script = ensure_script(&default_config()).unwrap();
    let (inet, bridge) = script
        .split_once("add table bridge smarter_smartnet\n")
        .expect("a bridge table");
    assert_eq!(inet, expected);
    assert_eq!(
        bridge,
        format!(
            "{}\n",
            l2::bridge_script("smarter_smartnet", false)[1..].join("\n")
        )
    );
}

#[test]
fn bridge_table_snapshot() {
    let expected = r#"add table bridge t
add set bridge t ports { type ifname; }
add set bridge t endpoints { type ifname . ipv4_addr . ether_addr; }
add set bridge t macs { typeof iifname . @ll,48,48; }
add set bridge t link_locals { typeof iifname . @nh,64,128; }
add counter bridge t drop_spoof_ip
add counter bridge t drop_spoof_arp
add counter bridge t drop_spoof_l2
add counter bridge t drop_spoof_ip6
add counter bridge t drop_ra_guard
add counter bridge t drop_ethertype
add chain bridge t prerouting { type filter hook prerouting priority -300; policy accept; }
flush chain bridge t prerouting
add rule bridge t prerouting iifname != @ports accept
add rule bridge t prerouting ether type ip iifname . ip saddr . ether saddr != @endpoints counter name drop_spoof_ip drop
add rule bridge t prerouting ip frag-off & 0x1fff 0 icmp type { 5, 9 } counter name drop_ra_guard drop
add rule bridge t prerouting ether type ip accept
add rule bridge t prerouting ether type arp iifname . arp saddr ip . arp saddr ether != @endpoints counter name drop_spoof_arp drop
add rule bridge t prerouting ether type arp iifname . arp saddr ip . ether saddr != @endpoints counter name drop_spoof_arp drop
add rule bridge t prerouting ether type arp accept
add rule bridge t prerouting ether type != ip6 counter name drop_ethertype drop
add rule bridge t prerouting iifname . @ll,48,48 != @macs counter name drop_spoof_l2 drop
add rule bridge t prerouting ip6 saddr != { ::, fe80::/10 } counter name drop_spoof_ip6 drop
add rule bridge t prerouting ip6 saddr { ::, fe80::/10 } exthdr frag exists counter name drop_ra_guard drop
add rule bridge t prerouting ip6 daddr { fe80::/10, ff00::/8 } exthdr frag exists counter name drop_ra_guard drop
add rule bridge t prerouting icmpv6 type { 134, 137 } counter name drop_ra_guard drop
add rule bridge t prerouting udp dport 546 counter name drop_ra_guard drop
add rule bridge t prerouting icmpv6 type { 133, 135, 136 } ip6 nexthdr != 58 counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type { 133, 135, 136 } ip6 saddr != :: iifname . @nh,64,128 != @link_locals counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type 136 iifname . @th,64,128 != @link_locals counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type 135 ip6 saddr :: iifname . @th,64,128 != @link_locals counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type 133 ip6 length > 24 counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type 133 @th,64,8 { 1, 2 } iifname . @th,80,48 != @macs counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type 133 @th,128,8 { 1, 2 } iifname . @th,144,48 != @macs counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type { 135, 136 } ip6 length > 40 counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type { 135, 136 } @th,192,8 { 1, 2 } iifname . @th,208,48 != @macs counter name drop_spoof_ip6 drop
add rule bridge t prerouting icmpv6 type { 135, 136 } @th,256,8 { 1, 2 } iifname . @th,272,48 != @macs counter name drop_spoof_ip6 drop"#;
    assert_eq!(l2::bridge_script("t", false).join("\n"), expected);
}

#[test]
fn uplink_and_port_range_variants() {
    let mut cfg = default_config();
    cfg.uplinks = vec!["wwan0".into()];
    cfg.nat_ports = (0, 0);
    cfg.deny.clear();
    cfg.subnet = "10.88.3.7/24".parse().unwrap();
    let s = ensure_script(&cfg).unwrap();
    assert!(s.contains(
        "postrouting ip saddr 10.88.3.0/24 oifname { \"wwan0\" } counter name nat_masquerade masquerade\n"
    ));
    assert!(!s.contains("masquerade to"), "{s}");
    assert!(
        !s.contains("add element"),
        "an empty deny list adds no elements: {s}"
    );
    assert!(
        s.contains("flush set inet smarter_smartnet deny\n"),
        "old deny ranges go away"
    );
    for bad in [(0, 10), (10, 0), (2000, 1000)] {
        cfg.nat_ports = bad;
        assert!(
            matches!(ensure_script(&cfg), Err(NftablesError::Invalid { .. })),
            "{bad:?}"
        );
    }
    cfg.nat_ports = (0, 0);
    cfg.uplinks = vec!["bad\"name".into()];
    assert!(matches!(
        ensure_script(&cfg),
        Err(NftablesError::Invalid {
            what: "interface name",
            ..
        })
    ));
}

#[test]
fn table_names_are_sanitized_and_distinct() {
    assert_eq!(table_name("smartnet"), "smarter_smartnet");
    let dashed = table_name("my-net");
    assert!(dashed.starts_with("smarter_my_net_") && dashed.len() == "smarter_my_net_".len() + 8);
    assert_ne!(dashed, table_name("my_net"));
    assert_ne!(dashed, table_name("my.net"));
    assert!(table_name(&"x".repeat(300)).len() < 100);
}

#[test]
fn attach_script_replaces_stale_elements_in_one_batch() {
    let new = ep(2, "smv00000000000b");
    let stale = ep(2, "smv00000000000a");
    let ports = [HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: TCP,
        host_ip: None,
    }];
    let old_port = (
        HostPortSpec {
            host_port: 5353,
            container_port: 53,
            protocol: UDP,
            host_ip: None,
        },
        new.ip,
    );
    let older = ep(7, "smv000000000007");
    let links = [l2::mac_key(&stale)];
    let left = Counted {
        pod: new.ip.into(),
        ifname: "wwan0".into(),
        dir: TrafficDir::In,
        packets: 3,
        bytes: 180,
    };
    let stale_eps = [stale];
    let doomed = Doomed {
        endpoints: &stale_eps,
        ports: &[old_port],
        ports6: &[],
        traffic: &[left],
    };
    let s = attach_script("smarter_n", &new, &ports, doomed, &links, &[older]).unwrap();
    let ll2 = "0xfe80000000000000000000fffe000002";
    assert_eq!(
        s,
        format!(
            "delete element bridge smarter_n macs {{ \"smv00000000000a\" . 0x020000000002 }}\n\
             delete element bridge smarter_n link_locals {{ \"smv00000000000a\" . {ll2} }}\n\
             delete element bridge smarter_n endpoints {{ \"smv00000000000a\" . 172.39.0.2 . 02:00:00:00:00:02 }}\n\
             delete element bridge smarter_n ports {{ \"smv00000000000a\" }}\n\
             delete element inet smarter_n hostport_udp {{ 5353 : 172.39.0.2 . 53 }}\n\
             delete element inet smarter_n traffic_in {{ 172.39.0.2 . \"wwan0\" }}\n\
             add element bridge smarter_n macs {{ \"smv000000000007\" . 0x020000000007 }}\n\
             add element bridge smarter_n link_locals {{ \"smv000000000007\" . 0xfe80000000000000000000fffe000007 }}\n\
             add element bridge smarter_n ports {{ \"smv00000000000b\" }}\n\
             add element bridge smarter_n endpoints {{ \"smv00000000000b\" . 172.39.0.2 . 02:00:00:00:00:02 }}\n\
             add element bridge smarter_n macs {{ \"smv00000000000b\" . 0x020000000002 }}\n\
             add element bridge smarter_n link_locals {{ \"smv00000000000b\" . {ll2} }}\n\
             add element inet smarter_n hostport_tcp {{ 8080 : 172.39.0.2 . 80 }}\n"
        )
    );
    let sctp = [HostPortSpec {
        host_port: 1,
        container_port: 1,
        protocol: 132,
        host_ip: None,
    }];
    let none = Doomed::default();
    assert!(attach_script("t", &new, &sctp, none, &[], &[]).is_err());
    assert!(attach_script("t", &ep(3, "a b"), &[], none, &[], &[]).is_err());
}

#[test]
fn detach_script_deletes_each_port_once() {
    let a = ep(2, "smv1");
    let mut b = ep(2, "smv1");
    b.mac[0] = 0x0a;
    let links = [l2::mac_key(&a), l2::mac_key(&a)];
    let eps = [a.clone(), a, b];
    let doomed = Doomed {
        endpoints: &eps,
        ..Doomed::default()
    };
    let s = detach_script("t", doomed, &links).unwrap();
    assert_eq!(s.matches("delete element bridge t ports").count(), 1, "{s}");
    assert_eq!(
        s.matches("delete element bridge t endpoints").count(),
        3,
        "{s}"
    );
    // Link elements are deleted once, and only those present (`b`'s MAC has none).
    assert_eq!(s.matches("delete element bridge t macs").count(), 1, "{s}");
    assert_eq!(
        s.matches("delete element bridge t link_locals").count(),
        1,
        "{s}"
    );
    assert!(
        detach_script("t", Doomed::default(), &[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn probe_deletes_what_it_creates() {
    let s = probe_script("smarter_probe_1_0");
    assert!(s.contains("add table inet smarter_probe_1_0\n"));
    assert!(
        s.ends_with("delete table inet smarter_probe_1_0\ndelete table bridge smarter_probe_1_0\n")
    );
}

#[test]
fn parses_listings() {
    // Captured from nftables 1.0.6 (`nft -j list table ...`).
    let bridge = json!({"nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"counter": {"family": "bridge", "name": "drop_spoof_ip", "table": "t", "handle": 3, "packets": 4, "bytes": 336}},
        {"set": {"family": "bridge", "name": "ports", "table": "t", "type": "ifname", "handle": 1, "elem": ["smv0123456789ab"]}},
        {"set": {"family": "bridge", "name": "endpoints", "table": "t", "type": ["ifname", "ipv4_addr", "ether_addr"], "handle": 2,
                 "elem": [{"concat": ["smv0123456789ab", "172.39.0.2", "02:00:00:00:00:02"]}]}}]});
    let inet = json!({"nftables": [
        {"map": {"family": "inet", "name": "hostport_tcp", "table": "t", "type": "inet_service", "handle": 2,
                 "map": "ipv4_addr . inet_service", "elem": [[8080, {"concat": ["172.39.0.2", 80]}]]}},
        {"map": {"family": "inet", "name": "hostport_udp", "table": "t", "type": "inet_service", "handle": 3,
                 "map": "ipv4_addr . inet_service"}}]});
    assert_eq!(
        parse::endpoints(&bridge, "endpoints", "endpoints6").unwrap(),
        vec![ep(2, "smv0123456789ab")]
    );
    assert_eq!(
        parse::names(&bridge, "ports"),
        vec!["smv0123456789ab".to_owned()]
    );
    assert_eq!(
        parse::counters(&bridge),
        vec![("drop_spoof_ip".to_owned(), 4, 336)]
    );
    let hp = HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: TCP,
        host_ip: None,
    };
    assert_eq!(
        parse::host_ports(&inet, "hostport_tcp", TCP).unwrap(),
        vec![(hp, Ipv4Addr::new(172, 39, 0, 2))]
    );
    assert!(
        parse::host_ports(&inet, "hostport_udp", UDP)
            .unwrap()
            .is_empty()
    );
    // The link sets, as nftables 1.0.6 lists them (48-bit numbers, 128-bit hex strings).
    let links = json!({"nftables": [
        {"set": {"family": "bridge", "name": "macs", "table": "t", "type": ["ifname", "integer"], "handle": 4,
                 "elem": [{"concat": ["smv0123456789ab", 2199023255554_u64]}, {"concat": ["smv1", "0x0a0000000002"]}]}},
        {"set": {"family": "bridge", "name": "link_locals", "table": "t", "type": ["ifname", "integer"], "handle": 5,
                 "elem": [{"concat": ["smv0123456789ab", "0xfe800000000000000000000000000002"]}]}}]});
    assert_eq!(
        parse::link_macs(&links, "macs").unwrap(),
        vec![
            l2::mac_key(&ep(2, "smv0123456789ab")),
            ("smv1".to_owned(), 0x0a00_0000_0002)
        ]
    );
    assert_eq!(
        parse::link_local_ifnames(&links, "link_locals"),
        vec!["smv0123456789ab".to_owned()]
    );
    let bad = json!({"nftables": [{"set": {"name": "endpoints", "elem": [{"concat": ["x", "1.2.3.4"]}]}}]});
    assert!(matches!(
        parse::endpoints(&bad, "endpoints", "endpoints6"),
        Err(NftablesError::Parse { .. })
    ));
    let tables =
        json!({"nftables": [{"table": {"family": "inet", "name": "smarter_a", "handle": 1}}]});
    assert_eq!(
        parse::tables(&tables),
        vec![("inet".to_owned(), "smarter_a".to_owned())]
    );
}
