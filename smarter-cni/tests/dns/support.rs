//! Helpers of the DNS tests: the server on a thread inside the world's `node` namespace,
//! a small DNS client run inside any namespace, and a fake upstream resolver.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use smarter_cni::dns::query::make_query;
use smarter_cni::dns::{self, DnsConfig};
use smarter_testbed::{Netns, World, spawn_in};

/// Where the server listens in the tests (the default).
pub const DNS: SocketAddr = SocketAddr::new(IpAddr::V4(dns::DEFAULT_LISTEN_IP), 53);

/// The DNS server running in a world's node namespace; stopped (cleanly) on drop.
pub struct DnsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl DnsServer {
    /// Starts `dns::run(cfg)` inside `node` and waits until it answers there.
    pub fn start(node: &Netns, cfg: DnsConfig) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = spawn_in(node, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(dns::run(&cfg, async {
                let _ = rx.await;
            }))
            .map_err(|e| e.to_string())
        });
        let mut s = Self {
            stop: Some(tx),
            thread: Some(thread),
        };
        // Start-up readiness (not a latency claim): the server answers a local name query.
        let deadline = Instant::now() + Duration::from_secs(10);
        while query(node, DNS, "probe.cluster.local.", RecordType::A, false).is_none() {
            if s.thread
                .as_ref()
                .is_some_and(std::thread::JoinHandle::is_finished)
            {
                let r = s.thread.take().unwrap().join().expect("server thread");
                panic!("DNS server stopped at start: {r:?}");
            }
            assert!(Instant::now() < deadline, "DNS server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Stops the server and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("DNS server: {e}");
        }
    }
}

/// A configuration for the world: its state directory, no CRI, upstreams from `resolv`.
pub fn config(w: &World, resolv: &std::path::Path) -> DnsConfig {
    DnsConfig {
        state_dir: w.state_dir(),
        cri_socket: None,
        resolv_conf: resolv.to_path_buf(),
        systemd_resolv_conf: resolv.with_extension("systemd-absent"),
        upstream_timeout: Duration::from_millis(800),
        ..DnsConfig::default()
    }
}

/// One query from inside `ns` (UDP or TCP), waiting at most 500 ms for the answer.
pub fn query(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> Option<Message> {
    let q = make_query(name, qtype);
    let bytes = q.to_vec().expect("encode");
    let id = q.metadata.id;
    spawn_in(ns, move || {
        let raw = if tcp {
            tcp_exchange(server, &bytes)
        } else {
            udp_exchange(server, &bytes)
        }?;
        let m = Message::from_vec(&raw).ok()?;
        (m.metadata.id == id && m.metadata.message_type == MessageType::Response).then_some(m)
    })
    .join()
    .expect("client thread")
}

fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.send_to(bytes, server).ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut frame = u16::try_from(bytes.len()).ok()?.to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    s.write_all(&frame).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// The A addresses of an answer.
pub fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}

/// Asks until the answer satisfies `ok` or `within` has passed; returns the last answer and
/// whether it was satisfied.
pub fn until(
    ns: &Netns,
    name: &str,
    qtype: RecordType,
    tcp: bool,
    within: Duration,
    ok: impl Fn(&Message) -> bool,
) -> (Option<Message>, bool) {
    let deadline = Instant::now() + within;
    loop {
        let m = query(ns, DNS, name, qtype, tcp);
        if m.as_ref().is_some_and(&ok) {
            return (m, true);
        }
        if Instant::now() >= deadline {
            return (m, false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts `name` resolves to exactly `ip` from `ns` within a second.
pub fn assert_resolves(ns: &Netns, name: &str, ip: Ipv4Addr, tcp: bool) {
    let (m, ok) = until(ns, name, RecordType::A, tcp, Duration::from_secs(1), |m| {
        addrs(m) == [ip]
    });
    assert!(
        ok,
        "{name} (tcp={tcp}) should resolve to {ip} within 1 s; last answer {m:?}"
    );
}

/// Asserts `name` is NXDOMAIN from `ns` within a second.
pub fn assert_nxdomain(ns: &Netns, name: &str) {
    let (m, ok) = until(
        ns,
        name,
        RecordType::A,
        false,
        Duration::from_secs(1),
        |m| m.metadata.response_code == ResponseCode::NXDomain,
    );
    assert!(
        ok,
        "{name} should be NXDOMAIN within 1 s; last answer {m:?}"
    );
}

/// A fake upstream resolver on `ip:53` (UDP and TCP, IPv4 or IPv6) inside `ns`: `name` → `answer`
/// (or the records of [`FakeUpstream::start_records`]), NXDOMAIN for anything else; counts the
/// questions; stops on drop.
pub struct FakeUpstream {
    stop: Arc<AtomicBool>,
    pub asked: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start(ns: &Netns, ip: impl Into<IpAddr>, name: &'static str, answer: Ipv4Addr) -> Self {
        Self::start_records(ns, ip, name, vec![RData::A(A(answer))])
    }

    /// As [`FakeUpstream::start`], answering `name` (whatever the type asked) with `records`
    /// (e.g. `AAAA`), TTL 60.
    pub fn start_records(
        ns: &Netns,
        ip: impl Into<IpAddr>,
        name: &'static str,
        records: Vec<RData>,
    ) -> Self {
        let ip: IpAddr = ip.into();
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(records);
        let respond = move |bytes: &[u8]| -> Option<Vec<u8>> {
            let q = Message::from_vec(bytes).ok()?;
            let mut r = q.clone().into_response();
            r.metadata.recursion_available = true;
            r.edns = None;
            let question = q.queries.first()?;
            if question.name().to_ascii().eq_ignore_ascii_case(name) {
                for data in records.iter() {
                    r.add_answer(Record::from_rdata(
                        hickory_proto::rr::Name::from_str(name).ok()?,
                        60,
                        data.clone(),
                    ));
                }
            } else {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            r.to_vec().ok()
        };
        let respond_tcp = respond.clone();
        let (s1, a1) = (stop.clone(), asked.clone());
        let udp = spawn_in(ns, move || {
            let sock = UdpSocket::bind((ip, 53)).expect("bind fake upstream udp");
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    a1.fetch_add(1, Ordering::Relaxed);
                    if let Some(out) = respond(&buf[..n]) {
                        let _ = sock.send_to(&out, peer);
                    }
                }
            }
        });
        let (s2, a2, respond) = (stop.clone(), asked.clone(), respond_tcp);
        let tcp = spawn_in(ns, move || {
            let l = std::net::TcpListener::bind((ip, 53)).expect("bind fake upstream tcp");
            l.set_nonblocking(true).unwrap();
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if c.read_exact(&mut q).is_err() {
                    continue;
                }
                a2.fetch_add(1, Ordering::Relaxed);
                if let Some(out) = respond(&q) {
                    let mut frame = u16::try_from(out.len()).unwrap().to_be_bytes().to_vec();
                    frame.extend_from_slice(&out);
                    let _ = c.write_all(&frame);
                }
            }
        });
        Self {
            stop,
            asked,
            threads: vec![udp, tcp],
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
