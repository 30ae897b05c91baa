//! AAAA and `ip6.arpa` PTR answers for dual-stack pods, through the whole query path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{RData, RecordType};

use super::{Outcome, make_query, process};
use crate::dns::names::{parse_reverse6, reverse_name6};
use crate::dns::store::Store;
use crate::dns::table::{NameTable, PodEntry, Reverse};

const ASKER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 39, 0, 9));
const WEB: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 3);

fn web6() -> Ipv6Addr {
    "fd00:ac27::2".parse().unwrap()
}

fn pod(ip: Ipv4Addr, ip6: Option<Ipv6Addr>, host: &str) -> PodEntry {
    PodEntry {
        ip,
        prefix: 16,
        ip6: ip6.map(|a| (a, 64)),
        gateway: Some(Ipv4Addr::new(172, 39, 0, 1)),
        host: host.into(),
        namespace: "default".into(),
        aliases: vec!["web-alias".into()]
            .into_iter()
            .filter(|_| host == "web")
            .collect(),
    }
}

fn table() -> NameTable {
    NameTable::build(
        "cluster.local",
        &[pod(WEB, Some(web6()), "web"), pod(DB, None, "db")],
        &[],
    )
}

fn answer(name: &str, qtype: RecordType) -> Message {
    let q = make_query(name, qtype);
    match process(&table(), 5, &q.to_vec().unwrap(), ASKER).0 {
        Outcome::Answer(m) => Message::from_vec(&m.to_vec().unwrap()).unwrap(),
        other => panic!("expected an answer to {name}, got {other:?}"),
    }
}

#[test]
fn reverse6_names_round_trip() {
    let name = reverse_name6(web6());
    assert_eq!(
        name,
        "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.2.c.a.0.0.d.f.ip6.arpa"
    );
    assert_eq!(parse_reverse6(&name), Some(web6()));
    assert_eq!(parse_reverse6("2.0.ip6.arpa"), None, "not all 32 nibbles");
    assert_eq!(parse_reverse6(&format!("0.{name}")), None, "33 nibbles");
    assert_eq!(parse_reverse6(&name.replacen('2', "g", 1)), None);
    assert_eq!(parse_reverse6(&name.replacen('2', "22", 1)), None);
}

#[test]
fn aaaa_answers_a_dual_stack_pods_names() {
    for name in ["web.default.svc.cluster.local.", "web.", "web-alias."] {
        let r = answer(name, RecordType::AAAA);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1, "{name}");
        assert!(matches!(r.answers[0].data, RData::AAAA(AAAA(ip)) if ip == web6()));
    }
    // A still answers the IPv4 address only; ANY gives both.
    let r = answer("web.", RecordType::A);
    assert_eq!(r.answers.len(), 1);
    assert!(matches!(r.answers[0].data, RData::A(A(ip)) if ip == WEB));
    let r = answer("web.", RecordType::ANY);
    assert_eq!(r.answers.len(), 2);
    assert!(matches!(r.answers[1].data, RData::AAAA(AAAA(ip)) if ip == web6()));
}

#[test]
fn an_ipv4_only_pod_has_no_aaaa_and_unknowns_stay_nxdomain() {
    let r = answer("db.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1, "SOA for negative caching");
    let r = answer("nope.cluster.local.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn ip6_arpa_ptr_for_pods_nxdomain_in_subnet6_forward_outside() {
    let name = format!("{}.", reverse_name6(web6()));
    let r = answer(&name, RecordType::PTR);
    assert_eq!(r.answers.len(), 1);
    assert!(
        matches!(&r.answers[0].data, RData::PTR(PTR(n)) if n.to_ascii() == "web.default.svc.cluster.local.")
    );
    let t = table();
    let free = reverse_name6("fd00:ac27::9".parse().unwrap());
    assert_eq!(t.reverse(&free), Reverse::NxDomain);
    let r = answer(&format!("{free}."), RecordType::PTR);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let outside = reverse_name6("2001:db8::1".parse().unwrap());
    assert_eq!(t.reverse(&outside), Reverse::NotOurs);
    let q = make_query(&format!("{outside}."), RecordType::PTR);
    assert!(matches!(
        process(&t, 5, &q.to_vec().unwrap(), ASKER).0,
        Outcome::Forward(_)
    ));
}

#[test]
fn the_store_learns_ipv6_from_attachment_records() {
    let store = Store::new("cluster.local");
    let mut a = crate::dns::store::tests::record("c1", 2, "web");
    a.ip6 = Some(web6());
    a.result = serde_json::json!({"ips": [
        {"address": "172.39.0.2/16", "gateway": "172.39.0.1"},
        {"address": "fd00:ac27::2/64", "gateway": "fd00:ac27::1"}
    ]});
    store.upsert("c1+eth0.json", a);
    let t = store.table();
    assert_eq!(t.addrs6(&[WEB]), [web6()]);
    assert_eq!(
        t.reverse(&reverse_name6(web6())),
        Reverse::Found("web.default.svc.cluster.local".into())
    );
    assert_eq!(
        t.reverse(&reverse_name6("fd00:ac27::77".parse().unwrap())),
        Reverse::NxDomain
    );
    store.remove("c1+eth0.json");
    assert!(store.table().addrs6(&[WEB]).is_empty());
}
