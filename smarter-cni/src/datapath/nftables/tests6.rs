//! Unit tests of the dual-stack scripts and listings (no root, no `nft`): what `v6` adds to
//! the IPv4 ruleset, the IPv6 elements of an endpoint and its hostPorts, and their round trip.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::json;

use super::config::NftablesConfig;
use super::script::{Doomed, attach_script, detach_script, ensure_script};
use super::{hostports, l2, parse};
use crate::datapath::types::{HostPortSpec, PodLink, V6Config};

fn config(v6: bool) -> NftablesConfig {
    NftablesConfig {
        network: "smartnet".into(),
        bridge: "smartnet0".into(),
        subnet: "172.39.0.0/16".parse().unwrap(),
        gateway: Ipv4Addr::new(172, 39, 0, 1),
        v6: v6.then(|| V6Config {
            subnet: "fd00:ac27::/64".parse().unwrap(),
            gateway: "fd00:ac27::1".parse().unwrap(),
        }),
        uplinks: vec!["uplink0".into()],
        deny: Vec::new(),
        nat_ports: (61000, 64999),
    }
}

fn ula(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, last)
}

fn ep6(last: u8, ifname: &str) -> PodLink {
    PodLink {
        ip: Ipv4Addr::new(172, 39, 0, last),
        ip6: Some(ula(last.into())),
        mac: [2, 0, 0, 0, 0, last],
        host_ifname: ifname.into(),
    }
}

fn web(host_ip: Option<Ipv4Addr>) -> HostPortSpec {
    HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: 6,
        host_ip,
    }
}

#[test]
fn v6_adds_exactly_the_ip6_rules() {
    let v4 = ensure_script(&config(false)).unwrap();
    let v6 = ensure_script(&config(true)).unwrap();
    let v4_lines: Vec<&str> = v4.lines().collect();
    // Every IPv4 line is kept, in order, except those v6 rewrites: the one that dropped all of
    // the pods' IPv6, and the bridge rules that allowed link-local addresses only.
    let b = "bridge smarter_smartnet";
    let rewritten = [
        "add rule inet smarter_smartnet forward iifname \"smartnet0\" oifname != \"smartnet0\" meta nfproto ipv6 counter name drop_ipv6 drop".to_owned(),
        format!("add rule {b} prerouting ip6 saddr != {{ ::, fe80::/10 }} counter name drop_spoof_ip6 drop"),
        format!("add rule {b} prerouting icmpv6 type {{ 133, 135, 136 }} ip6 saddr != :: iifname . @nh,64,128 != @link_locals counter name drop_spoof_ip6 drop"),
        format!("add rule {b} prerouting icmpv6 type 136 iifname . @th,64,128 != @link_locals counter name drop_spoof_ip6 drop"),
        format!("add rule {b} prerouting icmpv6 type 135 ip6 saddr :: iifname . @th,64,128 != @link_locals counter name drop_spoof_ip6 drop"),
    ];
    let gone: Vec<&str> = v4_lines
        .iter()
        .copied()
        .filter(|l| !v6.lines().any(|m| m == *l))
        .collect();
    assert_eq!(gone, rewritten);
    let mut kept = v6.lines().filter(|l| v4_lines.contains(l));
    for line in v4_lines.iter().filter(|l| !gone.contains(l)) {
        assert_eq!(kept.next(), Some(*line));
    }
    let added: Vec<&str> = v6.lines().filter(|l| !v4_lines.contains(l)).collect();
    let i = "inet smarter_smartnet";
    let out = "oifname { \"uplink0\" }";
    let expected = [
        format!("add map {i} hostport6_tcp {{ type inet_service : ipv6_addr . inet_service; }}"),
        format!("add map {i} hostport6_udp {{ type inet_service : ipv6_addr . inet_service; }}"),
        format!(
            "add set {i} traffic6_out {{ type ipv6_addr . ifname; flags dynamic; size 65535; }}"
        ),
        format!(
            "add set {i} traffic6_in {{ type ipv6_addr . ifname; flags dynamic; size 65535; }}"
        ),
        format!(
            "add rule {i} prerouting fib daddr type local dnat ip6 to tcp dport map @hostport6_tcp"
        ),
        format!(
            "add rule {i} prerouting fib daddr type local dnat ip6 to udp dport map @hostport6_udp"
        ),
        format!(
            "add rule {i} output ip6 daddr != ::1 fib daddr type local dnat ip6 to tcp dport map @hostport6_tcp"
        ),
        format!(
            "add rule {i} output ip6 daddr != ::1 fib daddr type local dnat ip6 to udp dport map @hostport6_udp"
        ),
        format!(
            "add rule {i} postrouting ip6 saddr fd00:ac27::/64 ip6 daddr fd00:ac27::/64 oifname \"smartnet0\" ct status dnat masquerade"
        ),
        format!(
            "add rule {i} postrouting ip6 saddr fd00:ac27::/64 {out} meta l4proto {{ tcp, udp }} counter name nat_masquerade masquerade to :61000-64999"
        ),
        format!(
            "add rule {i} postrouting ip6 saddr fd00:ac27::/64 {out} counter name nat_masquerade masquerade"
        ),
        format!(
            "add rule {i} backstop oifname != {{ \"smartnet0\", \"lo\" }} ip6 saddr fd00:ac27::/64 counter name drop_leak drop"
        ),
        format!(
            "add rule {i} backstop iifname \"smartnet0\" oifname != {{ \"smartnet0\", \"lo\" }} ct direction original ct original ip6 saddr fd00:ac27::/64 update @traffic6_out {{ ct original ip6 saddr . oifname counter }}"
        ),
        format!(
            "add rule {i} backstop iifname \"smartnet0\" oifname != {{ \"smartnet0\", \"lo\" }} ct direction reply ct reply ip6 saddr fd00:ac27::/64 update @traffic6_out {{ ct reply ip6 saddr . oifname counter }}"
        ),
        format!("add rule {i} pod_in update @traffic6_in {{ ip6 daddr . iifname counter }}"),
        format!(
            "add rule {i} forward iifname \"smartnet0\" oifname != \"smartnet0\" ip6 saddr != fd00:ac27::/64 counter name drop_ipv6 drop"
        ),
        format!(
            "add rule {i} forward iifname != \"smartnet0\" oifname \"smartnet0\" ip6 daddr fd00:ac27::/64 ct status dnat goto pod_in"
        ),
        format!(
            "add rule {i} forward iifname != \"smartnet0\" oifname \"smartnet0\" ip6 daddr fd00:ac27::/64 ct state established,related goto pod_in"
        ),
        format!(
            "add rule {i} forward iifname != \"smartnet0\" oifname \"smartnet0\" ip6 daddr fd00:ac27::/64 counter name drop_nodelocal drop"
        ),
        format!("add set {b} endpoints6 {{ typeof iifname . @nh,64,128; }}"),
        format!(
            "add rule {b} prerouting ip6 saddr != {{ ::, fe80::/10 }} iifname . @nh,64,128 != @endpoints6 counter name drop_spoof_ip6 drop"
        ),
        format!(
            "add rule {b} prerouting icmpv6 type {{ 133, 135, 136 }} ip6 saddr != :: iifname . @nh,64,128 != @link_locals iifname . @nh,64,128 != @endpoints6 counter name drop_spoof_ip6 drop"
        ),
        format!(
            "add rule {b} prerouting icmpv6 type 136 iifname . @th,64,128 != @link_locals iifname . @th,64,128 != @endpoints6 counter name drop_spoof_ip6 drop"
        ),
        format!(
            "add rule {b} prerouting icmpv6 type 135 ip6 saddr :: iifname . @th,64,128 != @link_locals iifname . @th,64,128 != @endpoints6 counter name drop_spoof_ip6 drop"
        ),
    ];
    assert_eq!(added, expected);
    // The IPv6 rules of each chain come after the IPv4 ones (hostIP maps are looked up first).
    let pos = |needle: &str| v6.find(needle).unwrap();
    assert!(pos("dnat ip6 to tcp") > pos("dnat ip to udp dport map @hostport_udp"));
    assert!(
        pos("ip6 daddr fd00:ac27::/64 ct status dnat")
            > pos("ip daddr 172.39.0.0/16 counter name drop_nodelocal")
    );
    // The masquerade mirrors IPv4's with `uplink: auto` too.
    let mut auto = config(true);
    auto.uplinks.clear();
    let s = ensure_script(&auto).unwrap();
    assert!(s.contains("postrouting ip6 saddr fd00:ac27::/64 oifname != \"smartnet0\" counter name nat_masquerade masquerade\n"), "{s}");
}

#[test]
fn the_bridge_rules_without_v6_are_todays() {
    let v4 = l2::bridge_script("t", false).join("\n");
    assert!(!v4.contains("endpoints6"), "{v4}");
    assert!(v4.contains("ip6 saddr != { ::, fe80::/10 } counter name drop_spoof_ip6 drop"));
    let v6 = l2::bridge_script("t", true);
    assert_eq!(
        v6.len(),
        l2::bridge_script("t", false).len() + 1,
        "one set more, the same rules"
    );
}

#[test]
fn attach_and_detach_carry_the_ula_and_ip6_host_ports() {
    let new = ep6(2, "smv2");
    let s = attach_script(
        "t",
        &new,
        &[web(None), web(Some(Ipv4Addr::new(192, 168, 1, 1)))],
        Doomed::default(),
        &[],
        &[],
    )
    .unwrap();
    assert!(
        s.contains(
            "add element bridge t endpoints6 { \"smv2\" . 0xfd00ac27000000000000000000000002 }\n"
        ),
        "{s}"
    );
    assert!(
        s.contains("add element inet t hostport6_tcp { 8080 : fd00:ac27::2 . 80 }\n"),
        "{s}"
    );
    assert!(
        s.contains("add element inet t hostip_tcp { 192.168.1.1 . 8080 : 172.39.0.2 . 80 }\n"),
        "{s}"
    );
    assert_eq!(s.matches("hostport6").count(), 1, "hostIP stays IPv4: {s}");
    // IPv4-only pods write no IPv6 element.
    let mut v4 = new.clone();
    v4.ip6 = None;
    let s4 = attach_script("t", &v4, &[web(None)], Doomed::default(), &[], &[]).unwrap();
    assert!(!s4.contains("6"), "{s4}");
    // Detach deletes each endpoints6 element once, and the IPv6 hostPorts passed.
    let eps = [new.clone(), new.clone()];
    let ports6 = [(web(None), ula(2))];
    let doomed = Doomed {
        endpoints: &eps,
        ports6: &ports6,
        ..Doomed::default()
    };
    let d = detach_script("t", doomed, &[]).unwrap();
    assert_eq!(
        d.matches(
            "delete element bridge t endpoints6 { \"smv2\" . 0xfd00ac27000000000000000000000002 }"
        )
        .count(),
        1,
        "{d}"
    );
    assert!(
        d.contains("delete element inet t hostport6_tcp { 8080 : fd00:ac27::2 . 80 }\n"),
        "{d}"
    );
    assert_eq!(
        hostports::element6("add", "t", &web(Some(Ipv4Addr::LOCALHOST)), ula(2)).unwrap(),
        ""
    );
    assert!(
        hostports::element6(
            "add",
            "t",
            &HostPortSpec {
                protocol: 132,
                ..web(None)
            },
            ula(2)
        )
        .is_err()
    );
}

#[test]
fn listings_round_trip_ip6_and_old_tables_still_parse() {
    // The shapes nftables 1.0.6 lists (`nft -j list table ...`): 128-bit hex strings.
    let endpoints = json!({"set": {"family": "bridge", "name": "endpoints", "table": "t", "type": ["ifname", "ipv4_addr", "ether_addr"],
        "elem": [{"concat": ["smv2", "172.39.0.2", "02:00:00:00:00:02"]}, {"concat": ["smv3", "172.39.0.3", "02:00:00:00:00:03"]}]}});
    let with6 = json!({"nftables": [endpoints.clone(),
        {"set": {"family": "bridge", "name": "endpoints6", "table": "t", "type": ["ifname", "integer"],
                 "elem": [{"concat": ["smv2", "0xfd00ac27000000000000000000000002"]}]}}]});
    let eps = parse::endpoints(&with6, "endpoints", "endpoints6").unwrap();
    let mut three = ep6(3, "smv3");
    three.ip6 = None;
    assert_eq!(eps, vec![ep6(2, "smv2"), three.clone()]);
    // Tables written before dual-stack have no endpoints6 set.
    let old = json!({"nftables": [endpoints]});
    let eps = parse::endpoints(&old, "endpoints", "endpoints6").unwrap();
    assert!(eps.iter().all(|e| e.ip6.is_none()) && eps.len() == 2);
    assert!(parse::has(&with6, "set", "endpoints6") && !parse::has(&old, "set", "endpoints6"));
    let inet = json!({"nftables": [{"map": {"family": "inet", "name": "hostport6_tcp", "table": "t", "type": "inet_service",
        "map": ["ipv6_addr", "inet_service"], "elem": [[8080, {"concat": ["fd00:ac27::2", 80]}]]}}]});
    assert_eq!(
        parse::host_ports6(&inet, "hostport6_tcp", 6).unwrap(),
        vec![(web(None), ula(2))]
    );
    assert!(
        parse::host_ports6(&inet, "hostport6_udp", 17)
            .unwrap()
            .is_empty()
    );
    let bad = json!({"nftables": [{"set": {"name": "endpoints6", "elem": [{"concat": ["smv2", "nonsense"]}]}}]});
    assert!(parse::endpoints6(&bad, "endpoints6").is_err());
}

#[test]
fn ipv6_traffic_elements_round_trip() {
    use super::traffic::{Counted, counted, delete_script};
    use crate::datapath::types::TrafficDir;
    // The shape nftables 1.0.6 lists for `type ipv6_addr . ifname` with counters.
    let doc = json!({"nftables": [
        {"set": {"family": "inet", "name": "traffic_out", "table": "t", "type": ["ipv4_addr", "ifname"],
                 "elem": [{"elem": {"val": {"concat": ["172.39.0.2", "uplink0"]}, "counter": {"packets": 1, "bytes": 84}}}]}},
        {"set": {"family": "inet", "name": "traffic6_in", "table": "t", "type": ["ipv6_addr", "ifname"],
                 "elem": [{"elem": {"val": {"concat": ["fd00:ac27::2", "uplink0"]}, "counter": {"packets": 2, "bytes": 208}}}]}}]});
    let all = counted(&doc).unwrap();
    let v6 = Counted {
        pod: ula(2).into(),
        ifname: "uplink0".into(),
        dir: TrafficDir::In,
        packets: 2,
        bytes: 208,
    };
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], v6);
    assert_eq!(
        delete_script("t", &all),
        "delete element inet t traffic_out { 172.39.0.2 . \"uplink0\" }\n\
         delete element inet t traffic6_in { fd00:ac27::2 . \"uplink0\" }\n"
    );
}
