//! Forwarding to the node's upstream resolvers: UDP first, TCP when the answer is truncated,
//! one overall deadline, and a small TTL-respecting cache of positive and negative answers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, Record};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout_at;

/// Answers kept in the cache at most.
const CACHE_ENTRIES: usize = 1024;
/// Longest time an upstream answer is cached, whatever its TTL.
const MAX_CACHE_TTL: u32 = 300;
/// The EDNS payload size offered upstream (the DNS flag day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;
/// Shortest time given to one upstream server even when several share the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(400);

/// The answer sections of one upstream response, as cached.
#[derive(Debug, Clone)]
struct Cached {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    ttl: u32,
}

type Key = (String, u16, u16);

fn key(q: &Query) -> Key {
    (
        q.name().to_ascii().to_ascii_lowercase(),
        u16::from(q.query_type()),
        u16::from(q.query_class()),
    )
}

/// Forwards questions that are not local; see the module docs.
pub struct Forwarder {
    servers: RwLock<Arc<Vec<SocketAddr>>>,
    cache: Mutex<HashMap<Key, Cached>>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder to `servers` giving up after `timeout` per question.
    #[must_use]
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            servers: RwLock::new(Arc::new(servers)),
            cache: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The current upstream servers.
    #[must_use]
    pub fn servers(&self) -> Arc<Vec<SocketAddr>> {
        self.servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the upstream servers (resolv.conf changed); the cache is dropped when they
    /// differ, as the new servers may see a different world (split horizon, VPN).
    pub fn set_servers(&self, servers: Vec<SocketAddr>) {
        let mut cur = self.servers.write().unwrap_or_else(PoisonError::into_inner);
        if **cur != servers {
            tracing::info!("upstream resolvers now {servers:?}");
            *cur = Arc::new(servers);
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// The response to `request` (one question): from the cache, else from the first
    /// upstream that answers before the deadline; SERVFAIL when none does.
    pub async fn forward(&self, request: &Message) -> Message {
        let Some(question) = request.queries.first() else {
            return reply(request, ResponseCode::FormErr);
        };
        if let Some(hit) = self.cached(question) {
            return build(request, hit);
        }
        let servers = self.servers();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let share =
            (self.timeout / u32::try_from(servers.len().max(1)).unwrap_or(1)).max(MIN_ATTEMPT);
        for server in servers.iter() {
            let attempt_end = (tokio::time::Instant::now() + share).min(deadline);
            match exchange(*server, question, attempt_end).await {
                Ok(resp) => {
                    let c = Cached {
                        rcode: resp.metadata.response_code,
                        answers: resp.answers,
                        authorities: resp.authorities,
                        additionals: resp.additionals,
                        stored: Instant::now(),
                        ttl: 0,
                    };
                    let c = self.store(question, c);
                    return build(request, c);
                }
                Err(e) => tracing::debug!("upstream {server} for {}: {e}", question.name()),
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        reply(request, ResponseCode::ServFail)
    }

    fn cached(&self, q: &Query) -> Option<Cached> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(q);
        let c = cache.get(&k)?;
        let age = u32::try_from(c.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        if age >= c.ttl {
            cache.remove(&k);
            return None;
        }
        let mut c = c.clone();
        for r in c
            .answers
            .iter_mut()
            .chain(&mut c.authorities)
            .chain(&mut c.additionals)
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(c)
    }

    /// Caches a response when its TTL allows, and returns it.
    fn store(&self, q: &Query, mut c: Cached) -> Cached {
        c.ttl = cache_ttl(&c);
        if c.ttl == 0 {
            return c;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, e| e.stored.elapsed().as_secs() < u64::from(e.ttl));
            if cache.len() >= CACHE_ENTRIES
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.stored + Duration::from_secs(e.ttl.into()))
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(key(q), c.clone());
        c
    }

    /// Number of cached answers (for tests and logs).
    #[must_use]
    pub fn cache_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// How long a response may be cached: the smallest answer TTL for a positive answer, the
/// SOA's negative TTL for NXDOMAIN / no data, capped; 0 (not cached) for errors.
fn cache_ttl(c: &Cached) -> u32 {
    let ttl = match c.rcode {
        ResponseCode::NoError if !c.answers.is_empty() => c.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => c
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .min(),
        _ => None,
    };
    ttl.unwrap_or(0).min(MAX_CACHE_TTL)
}

/// An empty response to `request` with `rcode`.
#[must_use]
pub fn reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut m = Message::error_msg(request.metadata.id, OpCode::Query, rcode);
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(request.queries.iter().cloned());
    m
}

fn build(request: &Message, c: Cached) -> Message {
    let mut m = reply(request, c.rcode);
    m.answers = c.answers;
    m.authorities = c.authorities;
    m.additionals = c.additionals;
    m
}

/// One question to one server: UDP, then TCP when the UDP answer is truncated.
async fn exchange(
    server: SocketAddr,
    question: &Query,
    deadline: tokio::time::Instant,
) -> io::Result<Message> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD);
    q.set_edns(edns);
    let bytes = q.to_vec().map_err(io::Error::other)?;
    let resp = timeout_at(deadline, udp(server, &bytes, &q)).await??;
    if !resp.metadata.truncation {
        return Ok(resp);
    }
    timeout_at(deadline, tcp(server, &bytes, &q)).await?
}

/// True when `resp` answers `q` (same id and question, a response).
fn matches(resp: &Message, q: &Message) -> bool {
    resp.metadata.id == q.metadata.id
        && resp.metadata.message_type == MessageType::Response
        && resp.queries.len() == 1
        && resp.queries[0].name().eq_case(q.queries[0].name())
        && resp.queries[0].query_type() == q.queries[0].query_type()
}

async fn udp(server: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        // A connected socket only takes datagrams from the server; a refused port shows up
        // here as ECONNREFUSED, so a down server fails at once.
        let n = sock.recv(&mut buf).await?;
        if let Ok(m) = Message::from_vec(&buf[..n])
            && matches(&m, q)
        {
            return Ok(m);
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8], q: &Message) -> io::Result<Message> {
    let mut s = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    s.write_all(&frame).await?;
    let n = usize::from(s.read_u16().await?);
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if matches(&m, q) {
        Ok(m)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer does not match the question",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr as _;

    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn question(name: &str) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m
    }

    fn a(name: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_str("example.").unwrap();
        Record::from_rdata(
            n.clone(),
            ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 1, 1, 1, minimum)),
        )
    }

    fn cached(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Cached {
        Cached {
            rcode,
            answers,
            authorities,
            additionals: vec![],
            stored: Instant::now(),
            ttl: 0,
        }
    }

    #[test]
    fn cache_ttls() {
        let c = cached(
            ResponseCode::NoError,
            vec![a("x.", 60), a("x.", 30)],
            vec![],
        );
        assert_eq!(cache_ttl(&c), 30);
        let c = cached(ResponseCode::NoError, vec![a("x.", 86400)], vec![]);
        assert_eq!(cache_ttl(&c), MAX_CACHE_TTL);
        let c = cached(ResponseCode::NXDomain, vec![], vec![soa(900, 10)]);
        assert_eq!(cache_ttl(&c), 10);
        let c = cached(ResponseCode::NXDomain, vec![], vec![]);
        assert_eq!(cache_ttl(&c), 0);
        let c = cached(ResponseCode::ServFail, vec![a("x.", 60)], vec![]);
        assert_eq!(cache_ttl(&c), 0);
    }

    #[test]
    fn cache_hits_answer_with_the_requests_id_and_are_bounded() {
        let f = Forwarder::new(vec![], Duration::from_millis(100));
        let req = question("x.example.");
        let q = &req.queries[0];
        f.store(
            q,
            cached(ResponseCode::NoError, vec![a("x.example.", 60)], vec![]),
        );
        let hit = f.cached(q).expect("cached");
        let resp = build(&req, hit);
        assert_eq!(resp.metadata.id, req.metadata.id);
        assert_eq!(resp.answers.len(), 1);
        // Case-insensitive key.
        assert!(f.cached(&question("X.EXAMPLE.").queries[0]).is_some());
        for i in 0..CACHE_ENTRIES + 10 {
            let r = question(&format!("n{i}.example."));
            f.store(
                &r.queries[0],
                cached(ResponseCode::NoError, vec![a("n.", 60)], vec![]),
            );
        }
        assert_eq!(f.cache_len(), CACHE_ENTRIES);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_upstream_is_servfail_at_once() {
        let f = Forwarder::new(vec![], Duration::from_secs(5));
        let req = question("example.com.");
        let t = Instant::now();
        let resp = f.forward(&req).await;
        assert_eq!(resp.metadata.response_code, ResponseCode::ServFail);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "did not wait for the deadline"
        );
    }
}
