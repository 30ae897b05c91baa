//! The sockets: one UDP loop and one TCP accept loop on the listen address. Local answers
//! are computed inline; forwarded questions run as tasks under a bound; TCP connections are
//! per-connection tasks with idle and frame timeouts and a per-source connection cap; every
//! query passes a per-source rate limit. Nothing a client sends can make a loop wait on it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::limit::RateLimiter;
use super::query::{Outcome, encode, finish, process};
use super::stats::{DnsStats, Result as Counted, Transport};
use super::store::Store;
use super::upstream::{Forwarder, reply};
use hickory_proto::op::ResponseCode;

/// Largest UDP query accepted (a datagram filling the buffer is taken as oversized).
const MAX_UDP_QUERY: usize = 4096;
/// A DNS message is at least its 12-byte header.
const MIN_MESSAGE: usize = 12;

/// Resource bounds of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Queries per second per source address (0: unlimited).
    pub rate: u32,
    /// Burst per source address.
    pub burst: u32,
    /// Forwarded questions in flight at once (more get SERVFAIL at once).
    pub max_forwarding: usize,
    /// Open TCP connections at once.
    pub max_tcp: usize,
    /// Open TCP connections per source address.
    pub max_tcp_per_source: usize,
    /// How long a TCP connection may sit between queries.
    pub tcp_idle: Duration,
    /// How long a started TCP frame (or a response write) may take.
    pub tcp_frame: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: 500,
            burst: 1000,
            max_forwarding: 256,
            max_tcp: 128,
            max_tcp_per_source: 16,
            tcp_idle: Duration::from_secs(10),
            tcp_frame: Duration::from_secs(3),
        }
    }
}

/// What the loops share.
pub struct Handler {
    /// The names.
    pub store: Arc<Store>,
    /// The upstream side.
    pub forwarder: Arc<Forwarder>,
    /// TTL of local answers.
    pub ttl: u32,
    /// Resource bounds.
    pub limits: Limits,
    /// Query counters.
    pub stats: Arc<DnsStats>,
    limiter: Mutex<RateLimiter>,
    forwarding: Arc<Semaphore>,
    tcp_conns: Arc<Semaphore>,
    tcp_per_source: Mutex<HashMap<IpAddr, usize>>,
}

impl Handler {
    /// A handler over `store` and `forwarder`, counting into `stats`.
    #[must_use]
    pub fn new(
        store: Arc<Store>,
        forwarder: Arc<Forwarder>,
        ttl: u32,
        limits: Limits,
        stats: Arc<DnsStats>,
    ) -> Self {
        Self {
            store,
            forwarder,
            ttl,
            stats,
            limiter: Mutex::new(RateLimiter::new(limits.rate, limits.burst)),
            forwarding: Arc::new(Semaphore::new(limits.max_forwarding)),
            tcp_conns: Arc::new(Semaphore::new(limits.max_tcp)),
            tcp_per_source: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn allow(&self, src: IpAddr) -> bool {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(src, Instant::now())
    }
}

/// The bound sockets.
pub struct Sockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Sockets {
    /// Binds UDP and TCP on `addr`.
    ///
    /// # Errors
    /// When either cannot be bound.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        Ok(Self { udp, tcp })
    }

    /// Serves until the future is dropped.
    pub async fn serve(self, handler: Arc<Handler>) {
        tokio::join!(
            serve_udp(Arc::new(self.udp), handler.clone()),
            serve_tcp(self.tcp, handler)
        );
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, h: Arc<Handler>) {
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        if !(MIN_MESSAGE..MAX_UDP_QUERY).contains(&n) || !h.allow(src.ip()) {
            h.stats.record(Transport::Udp, Counted::Dropped);
            continue;
        }
        let (outcome, limit) = process(&h.store.table(), h.ttl, &buf[..n], src.ip());
        match outcome {
            Outcome::Answer(m) => {
                h.stats.record(Transport::Udp, Counted::of_local(&m));
                if let Some(b) = encode(&m, limit) {
                    let _ = sock.send_to(&b, src).await;
                }
            }
            Outcome::Forward(req) => match h.forwarding.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (sock, h) = (sock.clone(), h.clone());
                    tokio::spawn(async move {
                        let resp = finish(h.forwarder.forward(&req).await, &req);
                        h.stats.record(Transport::Udp, Counted::of_forwarded(&resp));
                        if let Some(b) = encode(&resp, limit) {
                            let _ = sock.send_to(&b, src).await;
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    h.stats.record(Transport::Udp, Counted::ServFail);
                    let resp = finish(reply(&req, ResponseCode::ServFail), &req);
                    if let Some(b) = encode(&resp, limit) {
                        let _ = sock.send_to(&b, src).await;
                    }
                }
            },
            Outcome::Drop => h.stats.record(Transport::Udp, Counted::Dropped),
        }
    }
}

async fn serve_tcp(listener: TcpListener, h: Arc<Handler>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = h.tcp_conns.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let Some(slot) = SourceSlot::take(&h, peer.ip()) else {
            continue;
        };
        let h = h.clone();
        tokio::spawn(async move {
            connection(stream, peer, &h).await;
            drop(slot);
            drop(permit);
        });
    }
}

/// One of a source's TCP connection slots, given back on drop.
struct SourceSlot {
    h: Arc<Handler>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(h: &Arc<Handler>, ip: IpAddr) -> Option<Self> {
        let mut m = h
            .tcp_per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_default();
        if *n >= h.limits.max_tcp_per_source {
            return None;
        }
        *n += 1;
        Some(Self { h: h.clone(), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self
            .h
            .tcp_per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Length-prefixed queries on one connection, answered in order, until EOF, a timeout, a
/// broken frame or a rate-limited query.
async fn connection(mut s: TcpStream, peer: SocketAddr, h: &Handler) {
    let (idle, frame) = (h.limits.tcp_idle, h.limits.tcp_frame);
    loop {
        let Ok(Ok(len)) = timeout(idle, s.read_u16()).await else {
            return;
        };
        let len = usize::from(len);
        if len < MIN_MESSAGE {
            return;
        }
        let mut buf = vec![0u8; len];
        if !matches!(timeout(frame, s.read_exact(&mut buf)).await, Ok(Ok(_))) {
            return;
        }
        if !h.allow(peer.ip()) {
            h.stats.record(Transport::Tcp, Counted::Dropped);
            return;
        }
        let resp = match process(&h.store.table(), h.ttl, &buf, peer.ip()).0 {
            Outcome::Answer(m) => {
                h.stats.record(Transport::Tcp, Counted::of_local(&m));
                m
            }
            Outcome::Forward(req) => {
                let resp = finish(h.forwarder.forward(&req).await, &req);
                h.stats.record(Transport::Tcp, Counted::of_forwarded(&resp));
                resp
            }
            Outcome::Drop => {
                h.stats.record(Transport::Tcp, Counted::Dropped);
                continue;
            }
        };
        let Some(bytes) = encode(&resp, usize::from(u16::MAX)) else {
            continue;
        };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&bytes);
        if !matches!(timeout(frame, s.write_all(&out)).await, Ok(Ok(()))) {
            return;
        }
    }
}
