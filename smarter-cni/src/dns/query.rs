//! The query path as a pure function of the bytes received, the asker and the name table:
//! decode, answer locally, or hand over for forwarding. No I/O, so it is unit-tested and
//! fuzzed (`fuzz/fuzz_targets/dns_query.rs`) directly.

use std::net::IpAddr;
use std::str::FromStr as _;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::table::{Lookup, NameTable, Reverse};
use super::upstream::reply;

/// The UDP payload size this server offers and accepts with EDNS.
pub const EDNS_PAYLOAD: u16 = 1232;
/// The classic UDP limit without EDNS.
const PLAIN_UDP: usize = 512;

/// What to do with one received message.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Answer(Message),
    /// Not a local name: forward this (well-formed, single-question) request upstream.
    Forward(Message),
    /// Send nothing (not a query, or too broken to answer).
    Drop,
}

/// Decides what to answer to `bytes` from `asker`; `ttl` is the TTL of local answers.
/// Also returns the largest UDP response the asker accepts.
#[must_use]
pub fn process(table: &NameTable, ttl: u32, bytes: &[u8], asker: IpAddr) -> (Outcome, usize) {
    match Message::from_vec(bytes) {
        Ok(req) => {
            let limit = udp_limit(Some(&req));
            (decide(table, ttl, req, asker), limit)
        }
        Err(_) => (malformed(bytes), udp_limit(None)),
    }
}

fn decide(table: &NameTable, ttl: u32, req: Message, asker: IpAddr) -> Outcome {
    if req.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if req.metadata.op_code != OpCode::Query {
        let mut resp = reply(&req, ResponseCode::NotImp);
        // The opcode is copied into the response (RFC 1035 4.1.1).
        resp.metadata.op_code = req.metadata.op_code;
        return Outcome::Answer(finish(resp, &req));
    }
    if req.queries.len() != 1 {
        return Outcome::Answer(finish(reply(&req, ResponseCode::FormErr), &req));
    }
    let q = &req.queries[0];
    if q.query_class() != DNSClass::IN {
        return Outcome::Answer(finish(reply(&req, ResponseCode::Refused), &req));
    }
    let name = q.name().to_ascii();
    let qtype = q.query_type();
    let local = if q.name().iter().any(|label| label.contains(&b'.')) {
        // A label holding a dot is escaped in the key form (`a\.cluster.local`), which the
        // table's suffix checks would read as a label boundary. No local name has such a
        // label; whether the name is in the cluster domain is decided on its labels.
        match zone(table) {
            Some(zone) if zone.zone_of(q.name()) => Local::NxDomain { soa: true },
            _ => return Outcome::Forward(req),
        }
    } else {
        match table.reverse(&name) {
            Reverse::Found(target) => Local::Ptr(target),
            Reverse::NxDomain => Local::NxDomain { soa: false },
            Reverse::NotOurs => match table.lookup(&name, asker) {
                Lookup::Found(ips) => Local::Addrs(ips),
                Lookup::NxDomain => Local::NxDomain { soa: true },
                Lookup::NotOurs => return Outcome::Forward(req),
            },
        }
    };
    let mut resp = reply(&req, ResponseCode::NoError);
    resp.metadata.authoritative = true;
    let owner = q.name().clone();
    match local {
        Local::Addrs(ips) if matches!(qtype, RecordType::A | RecordType::ANY) => {
            for ip in &ips {
                resp.add_answer(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
            }
            if qtype == RecordType::ANY {
                for ip6 in table.addrs6(&ips) {
                    let rdata = RData::AAAA(AAAA(ip6));
                    resp.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
                }
            }
        }
        Local::Addrs(ips) if qtype == RecordType::AAAA && !table.addrs6(&ips).is_empty() => {
            for ip6 in table.addrs6(&ips) {
                let rdata = RData::AAAA(AAAA(ip6));
                resp.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
            }
        }
        Local::Ptr(target) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
            if let Ok(t) = Name::from_str(&format!("{target}.")) {
                resp.add_answer(Record::from_rdata(owner, ttl, RData::PTR(PTR(t))));
            }
        }
        // The name exists but has no record of this type: NOERROR, no data.
        Local::Addrs(_) | Local::Ptr(_) => add_soa(&mut resp, table, ttl, q.name()),
        Local::NxDomain { soa } => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            if soa {
                add_soa(&mut resp, table, ttl, q.name());
            }
        }
    }
    Outcome::Answer(finish(resp, &req))
}

enum Local {
    Addrs(Vec<std::net::Ipv4Addr>),
    Ptr(String),
    NxDomain { soa: bool },
}

/// The cluster domain as a name.
fn zone(table: &NameTable) -> Option<Name> {
    Name::from_str(&format!("{}.", table.domain())).ok()
}

/// A synthetic SOA, so resolvers cache negative answers only `ttl`: of the cluster domain
/// for names inside it, else of `name` itself (short names, aliases and reverse names are
/// outside it, and an SOA of a zone not holding the name is out of bailiwick, which
/// scrubbing resolvers drop).
fn add_soa(resp: &mut Message, table: &NameTable, ttl: u32, name: &Name) {
    let Some(zone) = zone(table) else {
        return;
    };
    let owner = if zone.zone_of(name) {
        zone.clone()
    } else {
        name.clone()
    };
    let (Ok(mname), Ok(rname)) = (
        Name::from_str("ns.dns").and_then(|n| n.append_domain(&zone)),
        Name::from_str("hostmaster").and_then(|n| n.append_domain(&zone)),
    ) else {
        return;
    };
    let ttl_i = i32::try_from(ttl).unwrap_or(i32::MAX);
    let soa = SOA::new(mname, rname, 1, ttl_i, ttl_i, ttl_i, ttl);
    resp.add_authority(Record::from_rdata(owner, ttl, RData::SOA(soa)));
}

/// FORMERR for a message whose header still decodes as a query; nothing otherwise.
fn malformed(bytes: &[u8]) -> Outcome {
    let mut dec = BinDecoder::new(bytes);
    match Header::read(&mut dec) {
        Ok(h) if h.metadata.message_type == MessageType::Query => {
            let mut m =
                Message::error_msg(h.metadata.id, h.metadata.op_code, ResponseCode::FormErr);
            m.metadata.recursion_desired = h.metadata.recursion_desired;
            Outcome::Answer(m)
        }
        _ => Outcome::Drop,
    }
}

/// Adds this server's EDNS record when the request had one.
#[must_use]
pub fn finish(mut resp: Message, req: &Message) -> Message {
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(e);
    }
    resp
}

/// The largest UDP response the asker of `req` accepts.
#[must_use]
pub fn udp_limit(req: Option<&Message>) -> usize {
    match req.and_then(|r| r.edns.as_ref()) {
        Some(e) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
        None => PLAIN_UDP,
    }
}

/// Encodes `resp`, truncated (TC set, records dropped) when longer than `limit`, and without
/// its questions too when even they do not fit (a query may carry many, all echoed in its
/// FORMERR): the header alone always fits, and TC sends the asker to TCP. `None` when it
/// cannot be encoded at all.
#[must_use]
pub fn encode(resp: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut short = resp.truncate();
    if let Some(b) = short.to_vec().ok().filter(|b| b.len() <= limit) {
        return Some(b);
    }
    short.queries.clear();
    short.to_vec().ok().filter(|b| b.len() <= limit)
}

/// A query for `name`/`qtype` (for tests and tools).
///
/// # Panics
/// When `name` is not a valid DNS name.
#[must_use]
pub fn make_query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_str(name).expect("valid name"),
        qtype,
    ));
    m
}

#[cfg(test)]
#[path = "tests6.rs"]
mod tests6;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::table::PodEntry;

    const ASKER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 39, 0, 9));
    const WEB: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 2);

    fn table() -> NameTable {
        NameTable::build(
            "cluster.local",
            &[PodEntry {
                ip: WEB,
                prefix: 16,
                ip6: None,
                gateway: Some(Ipv4Addr::new(172, 39, 0, 1)),
                host: "web".into(),
                namespace: "default".into(),
                aliases: vec![],
            }],
            &[],
        )
    }

    fn ask(m: &Message) -> Outcome {
        process(&table(), 5, &m.to_vec().unwrap(), ASKER).0
    }

    fn answer(o: Outcome) -> Message {
        match o {
            Outcome::Answer(m) => Message::from_vec(&m.to_vec().unwrap()).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn local_a_and_ptr() {
        let q = make_query("web.default.svc.cluster.local.", RecordType::A);
        let r = answer(ask(&q));
        assert_eq!(r.metadata.id, q.metadata.id);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative && r.metadata.recursion_available);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, 5);
        assert!(matches!(r.answers[0].data, RData::A(A(ip)) if ip == WEB));

        let r = answer(ask(&make_query(
            "2.0.39.172.in-addr.arpa.",
            RecordType::PTR,
        )));
        assert!(
            matches!(&r.answers[0].data, RData::PTR(PTR(n)) if n.to_ascii() == "web.default.svc.cluster.local.")
        );
    }

    #[test]
    fn nodata_nxdomain_and_forward() {
        let r = answer(ask(&make_query("web.", RecordType::AAAA)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities.len(), 1, "SOA for negative caching");
        assert_eq!(r.authorities[0].name.to_ascii(), "web.", "in bailiwick");
        let r = answer(ask(&make_query("nope.cluster.local.", RecordType::A)));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].name.to_ascii(), "cluster.local.");
        let r = answer(ask(&make_query(
            "3.0.39.172.in-addr.arpa.",
            RecordType::PTR,
        )));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(
            ask(&make_query("example.com.", RecordType::A)),
            Outcome::Forward(_)
        ));
        assert!(matches!(
            ask(&make_query("8.8.8.8.in-addr.arpa.", RecordType::PTR)),
            Outcome::Forward(_)
        ));
    }

    #[test]
    fn bad_input() {
        let t = table();
        assert!(matches!(process(&t, 5, &[], ASKER).0, Outcome::Drop));
        assert!(matches!(process(&t, 5, &[1, 2, 3], ASKER).0, Outcome::Drop));
        // A query header announcing a question that is not there: FORMERR with its id.
        let mut bytes = make_query("web.", RecordType::A).to_vec().unwrap();
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        bytes.truncate(14);
        let r = answer(process(&t, 5, &bytes, ASKER).0);
        assert_eq!(
            (r.metadata.id, r.metadata.response_code),
            (id, ResponseCode::FormErr)
        );
        // Responses are never answered (no reflection loops).
        let resp = make_query("web.", RecordType::A).into_response();
        assert!(matches!(ask(&resp), Outcome::Drop));
        // Two questions.
        let mut two = make_query("web.", RecordType::A);
        two.add_query(Query::query(Name::from_str("x.").unwrap(), RecordType::A));
        assert_eq!(
            answer(ask(&two)).metadata.response_code,
            ResponseCode::FormErr
        );
        // Another opcode, another class.
        let mut n = make_query("web.", RecordType::A);
        n.metadata.op_code = OpCode::Notify;
        let r = answer(ask(&n));
        assert_eq!(
            (r.metadata.response_code, r.metadata.op_code),
            (ResponseCode::NotImp, OpCode::Notify)
        );
        let mut ch = make_query("version.bind.", RecordType::TXT);
        ch.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(
            answer(ask(&ch)).metadata.response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn labels_holding_dots() {
        let with_labels = |labels: &[&[u8]], qtype| {
            let mut m = make_query("web.", qtype);
            m.queries[0].set_name(Name::from_labels(labels.iter().copied()).unwrap());
            m
        };
        // `evil.cluster` under `local`: not in the cluster domain, whatever its key form says.
        assert!(matches!(
            ask(&with_labels(&[b"evil.cluster", b"local"], RecordType::A)),
            Outcome::Forward(_)
        ));
        assert!(matches!(
            ask(&with_labels(
                &[b"2.0", b"39", b"172", b"in-addr", b"arpa"],
                RecordType::PTR
            )),
            Outcome::Forward(_)
        ));
        // `web.default` under `svc.cluster.local`: in the domain, and no pod of that name.
        let r = answer(ask(&with_labels(
            &[b"web.default", b"svc", b"cluster", b"local"],
            RecordType::A,
        )));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities.len(), 1);
    }

    #[test]
    fn edns_and_truncation() {
        let mut q = make_query("web.", RecordType::A);
        assert_eq!(udp_limit(Some(&q)), 512);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
        assert_eq!(udp_limit(Some(&q)), usize::from(EDNS_PAYLOAD));
        let r = answer(ask(&q));
        assert_eq!(r.edns.as_ref().map(Edns::max_payload), Some(EDNS_PAYLOAD));
        let mut big = reply(&q, ResponseCode::NoError);
        for i in 0..100u8 {
            big.add_answer(Record::from_rdata(
                Name::from_str("web.").unwrap(),
                5,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
            ));
        }
        let bytes = encode(&big, 512).unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert!(back.metadata.truncation && back.answers.is_empty() && bytes.len() <= 512);
        assert!(encode(&big, 65535).unwrap().len() > 512);
        // Forty long questions: their FORMERR over UDP is the header alone, TC set.
        let mut many = make_query("web.", RecordType::A);
        for i in 0..40 {
            let n = Name::from_str(&format!("{i}{}.example.", "x".repeat(40))).unwrap();
            many.add_query(Query::query(n, RecordType::A));
        }
        let r = answer(ask(&many));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.queries.len(), 41);
        let bytes = encode(&r, 512).unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert!(back.metadata.truncation && back.queries.is_empty() && bytes.len() <= 512);
        assert_eq!(
            (back.metadata.id, back.metadata.response_code),
            (many.metadata.id, ResponseCode::FormErr)
        );
    }
}
