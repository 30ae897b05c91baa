//! The entry point shared by the cargo-fuzz target `dns_query` (`smarter-cni/fuzz/`) and the
//! corpus replay test (`tests/fuzz_corpus_replay.rs`): raw query bytes through the server's
//! query path ([`process`], then [`encode`] as the UDP and TCP loops do), against a fixed
//! [`NameTable`]. Pure: no sockets, no packets; forwarded questions are answered with the
//! SERVFAIL the server sends when it cannot forward, so that path is encoded and checked too.
//!
//! Beyond "never panics", it asserts what the server promises for every input:
//! - responses are never answered (no reflection loops between two servers);
//! - every answer encodes, for UDP within the asker's limit (512 bytes without EDNS, at most
//!   [`EDNS_PAYLOAD`] with it) and for TCP within a 16-bit length prefix;
//! - the encoded answer parses back as a DNS response, with the query's id, opcode and RD
//!   bit when the query's header was readable, and the query's question when it decoded;
//! - answers are records of the question's name and type (A or PTR; both for `ANY`), and an
//!   SOA in the authority section is of a zone holding the question's name;
//! - only well-formed single-question `IN` queries are forwarded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};

use super::query::{EDNS_PAYLOAD, Outcome, encode, finish, process};
use super::table::{HostPodEntry, NameTable, PodEntry};
use super::upstream::reply;

/// Pods sharing the alias `many.example`: their A records overflow 512 bytes and
/// [`EDNS_PAYLOAD`], so the truncation path is reached.
const CROWD: u8 = 90;
/// The gateway of the pod subnet `172.39.0.0/16`.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 39, 0, 1);

/// `cluster.local` with pods `web` (alias `www.example`), `db` (namespace `prod`), a crowd
/// sharing `many.example`, and the host-networked `agent` in `kube-system`.
static TABLE: LazyLock<NameTable> = LazyLock::new(|| {
    let pod = |last: u8, host: &str, ns: &str, aliases: &[&str]| PodEntry {
        ip: Ipv4Addr::new(172, 39, 0, last),
        prefix: 16,
        ip6: None,
        gateway: Some(GATEWAY),
        host: host.into(),
        namespace: ns.into(),
        aliases: aliases.iter().map(ToString::to_string).collect(),
    };
    let mut pods = vec![
        pod(2, "web", "default", &["www.example."]),
        pod(3, "db", "prod", &[]),
    ];
    pods.extend((0..CROWD).map(|i| pod(10 + i, &format!("crowd-{i}"), "edge", &["many.example"])));
    let host = HostPodEntry {
        host: "agent".into(),
        namespace: "kube-system".into(),
    };
    NameTable::build("cluster.local", &pods, &[host])
});

/// Who asks: a known pod, a pod of the subnet not in the table yet, a host process, IPv6.
const ASKERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(172, 39, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(172, 39, 0, 250)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 0, 2)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// Answers `data` as one UDP datagram and as one TCP frame, from each of a few askers; panics
/// when a promise of the module docs is broken.
pub fn query(data: &[u8]) {
    let header = Header::read(&mut BinDecoder::new(data)).ok();
    let request = Message::from_vec(data).ok();
    for asker in ASKERS {
        let (outcome, limit) = process(&TABLE, 5, data, asker);
        let max = match request.as_ref().and_then(|r| r.edns.as_ref()) {
            Some(_) => usize::from(EDNS_PAYLOAD),
            None => 512,
        };
        assert!((512..=max).contains(&limit), "UDP limit {limit}");
        let resp = match outcome {
            Outcome::Answer(m) => m,
            Outcome::Forward(req) => {
                assert_eq!(req.metadata.message_type, MessageType::Query);
                assert_eq!(req.metadata.op_code, OpCode::Query);
                assert_eq!(req.queries.len(), 1, "forwarded: {req:?}");
                assert_eq!(req.queries[0].query_class(), DNSClass::IN);
                finish(reply(&req, ResponseCode::ServFail), &req)
            }
            Outcome::Drop => continue,
        };
        if let Some(h) = &header {
            assert_eq!(
                h.metadata.message_type,
                MessageType::Query,
                "a response was answered"
            );
        }
        for (transport, limit) in [("udp", limit), ("tcp", usize::from(u16::MAX))] {
            let Some(bytes) = encode(&resp, limit) else {
                panic!("{transport}: answer does not encode within {limit}: {resp:?}");
            };
            assert!(
                bytes.len() <= limit,
                "{transport}: {} > {limit}",
                bytes.len()
            );
            let back = Message::from_vec(&bytes)
                .unwrap_or_else(|e| panic!("{transport}: answer does not parse back: {e}"));
            check(&back, header.as_ref(), request.as_ref());
        }
    }
}

/// The encoded-and-decoded answer `back` against the query's header and message.
fn check(back: &Message, header: Option<&Header>, request: Option<&Message>) {
    assert_eq!(back.metadata.message_type, MessageType::Response);
    if let Some(h) = header {
        assert_eq!(back.metadata.id, h.metadata.id, "id");
        assert_eq!(back.metadata.op_code, h.metadata.op_code, "opcode");
        assert_eq!(
            back.metadata.recursion_desired, h.metadata.recursion_desired,
            "RD"
        );
    }
    if let Some(r) = request {
        assert_eq!(back.edns.is_some(), r.edns.is_some(), "EDNS");
        if r.queries.len() == 1 {
            assert_eq!(back.queries, r.queries, "question");
        }
    }
    let Some(q) = back.queries.first() else {
        return;
    };
    for a in &back.answers {
        assert_eq!(&a.name, q.name(), "answer owner");
        assert!(
            a.record_type() == q.query_type() || q.query_type() == RecordType::ANY,
            "{} answer to {}",
            a.record_type(),
            q.query_type()
        );
        assert!(matches!(a.record_type(), RecordType::A | RecordType::PTR));
    }
    for soa in back
        .authorities
        .iter()
        .filter(|a| a.record_type() == RecordType::SOA)
    {
        assert!(
            soa.name.zone_of(q.name()),
            "SOA {} for {}",
            soa.name,
            q.name()
        );
    }
}
