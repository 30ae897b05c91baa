//! Load generators, each running on threads that entered the right namespaces: TCP
//! request/response and connect/request/close (with latency percentiles), UDP small packets,
//! and iperf3 streams.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smarter_testbed::{Netns, spawn_in};

use crate::stats::percentile_us;

/// Request and response size of the TCP workloads.
const MSG: usize = 64;

/// A TCP server answering every `MSG`-byte request with `MSG` bytes, one thread per
/// connection, until dropped; it remembers the source address of the last connection it
/// accepted (what a NAT made of the client).
pub struct RrServer {
    stop: Arc<AtomicBool>,
    last_peer: Arc<Mutex<Option<IpAddr>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RrServer {
    /// Listens on `ip:port` inside `ns` (an IPv4 or an IPv6 address).
    pub fn start(ns: &Netns, ip: impl Into<IpAddr>, port: u16) -> Self {
        let ip = ip.into();
        let stop = Arc::new(AtomicBool::new(false));
        let last_peer = Arc::new(Mutex::new(None));
        let (s, peer) = (stop.clone(), last_peer.clone());
        let thread = spawn_in(ns, move || {
            let l = TcpListener::bind((ip, port)).expect("bind rr server");
            // Blocking accept that wakes up every 100 ms to see whether to stop (a sleeping
            // poll loop would add its sleep to every connection).
            nix::sys::socket::setsockopt(
                &l,
                nix::sys::socket::sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 100_000),
            )
            .expect("accept timeout");
            while !s.load(Ordering::Relaxed) {
                if let Ok((mut c, from)) = l.accept() {
                    if let Ok(mut p) = peer.lock() {
                        *p = Some(from.ip());
                    }
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_nodelay(true);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; MSG];
                        while !s.load(Ordering::Relaxed) && c.read_exact(&mut buf).is_ok() {
                            if c.write_all(&buf).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            stop,
            last_peer,
            thread: Some(thread),
        }
    }

    /// The source address of the last connection accepted, if any and if IPv4.
    pub fn last_peer(&self) -> Option<Ipv4Addr> {
        match self.last_peer_ip() {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        }
    }

    /// The source address of the last connection accepted, if any, of either family.
    pub fn last_peer_ip(&self) -> Option<IpAddr> {
        *self.last_peer.lock().ok()?
    }
}

impl Drop for RrServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Throughput and latency of a transactional workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    /// Operations per second.
    pub per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

/// One connection, `MSG`-byte request/response for `secs`.
pub fn rr(ns: &Netns, to: SocketAddr, secs: f64) -> anyhow::Result<Rate> {
    spawn_in(ns, move || -> anyhow::Result<Rate> {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut lat = Vec::new();
        let buf = [7u8; MSG];
        let mut back = [0u8; MSG];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        while Instant::now() < end {
            let t = Instant::now();
            c.write_all(&buf)?;
            c.read_exact(&mut back)?;
            lat.push(t.elapsed());
        }
        Ok(rate(&mut lat, started.elapsed()))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("rr client panicked"))?
}

/// Connect, one request/response, close (reset: no TIME_WAIT pile-up) for `secs`.
pub fn crr(ns: &Netns, to: SocketAddr, secs: f64) -> anyhow::Result<Rate> {
    spawn_in(ns, move || -> anyhow::Result<Rate> {
        let mut lat = Vec::new();
        let buf = [7u8; MSG];
        let mut back = [0u8; MSG];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let started = Instant::now();
        while Instant::now() < end {
            let t = Instant::now();
            let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            c.write_all(&buf)?;
            c.read_exact(&mut back)?;
            linger_zero(&c);
            drop(c);
            lat.push(t.elapsed());
        }
        Ok(rate(&mut lat, started.elapsed()))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("crr client panicked"))?
}

fn linger_zero(c: &TcpStream) {
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    unsafe {
        nix::libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(c),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&raw const l).cast(),
            u32::try_from(size_of::<nix::libc::linger>()).unwrap_or(8),
        );
    }
}

fn rate(lat: &mut [Duration], elapsed: Duration) -> Rate {
    Rate {
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: percentile_us(lat, 50.0),
        p99_us: percentile_us(lat, 99.0),
    }
}

/// Receive queue of the UDP sink, bytes.
const UDP_RCVBUF: usize = 32 << 20;

/// What the sink of [`udp`] received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivered {
    /// Datagrams received per second of sending.
    pub per_s: f64,
    /// Datagrams received.
    pub received: u64,
    /// The source address of the first datagram received (what a NAT made of the sender).
    pub source: Option<IpAddr>,
}

impl Delivered {
    /// [`Delivered::source`] when it is an IPv4 address.
    pub fn source4(&self) -> Option<Ipv4Addr> {
        match self.source {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        }
    }
}

/// 64-byte UDP datagrams from `from` to `to` (a sink in `sink_ns`) as fast as one sender
/// goes, for `secs`; returns what the sink received.
///
/// # Errors
///
/// When a socket fails, a thread panics, or not one datagram arrived (a path that delivers
/// nothing is a failure, not a figure of zero).
pub fn udp(from: &Netns, sink_ns: &Netns, to: SocketAddr, secs: f64) -> anyhow::Result<Delivered> {
    udp_via(from, sink_ns, to, to, secs)
}

/// As [`udp`], with the sink bound to `sink` and the sender sending to `to`: another address
/// of the sink, one a translator on the way maps to it (an IPv6 address in a NAT64 prefix for
/// an IPv4 sink). Either family: the sender binds the unspecified address of `to`'s.
///
/// # Errors
///
/// As [`udp`].
pub fn udp_via(
    from: &Netns,
    sink_ns: &Netns,
    sink: SocketAddr,
    to: SocketAddr,
    secs: f64,
) -> anyhow::Result<Delivered> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (received.clone(), stop.clone());
    let sink_thread = spawn_in(sink_ns, move || -> anyhow::Result<Option<IpAddr>> {
        let sock = UdpSocket::bind(sink)?;
        // A deep receive queue: what is counted is what the path delivered, not what a
        // receiver that lost its CPU to the sender for a time slice (one CPU in the edge
        // profile) could take from a default 212 KiB queue.
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &UDP_RCVBUF)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = [0u8; 2048];
        let mut source = None;
        while !s.load(Ordering::Relaxed) {
            if source.is_none() {
                // Only the first datagram's source: the loop stays `recv` as before.
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    source = Some(from.ip());
                    r.fetch_add(1, Ordering::Relaxed);
                }
            } else if sock.recv(&mut buf).is_ok() {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(source)
    });
    std::thread::sleep(Duration::from_millis(100));
    let start_count = received.load(Ordering::Relaxed);
    let sender = spawn_in(from, move || -> anyhow::Result<Duration> {
        let any = if to.is_ipv6() {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let sock = UdpSocket::bind(any)?;
        sock.connect(to)?;
        let buf = [1u8; 64];
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            for _ in 0..64 {
                let _ = sock.send(&buf);
            }
        }
        Ok(started.elapsed())
    });
    let elapsed = sender
        .join()
        .map_err(|_| anyhow::anyhow!("udp sender panicked"))??;
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let source = sink_thread
        .join()
        .map_err(|_| anyhow::anyhow!("udp sink panicked"))??;
    let received = received.load(Ordering::Relaxed) - start_count;
    anyhow::ensure!(received > 0, "not one datagram reached {to}");
    Ok(Delivered {
        per_s: received as f64 / elapsed.as_secs_f64(),
        received,
        source,
    })
}

/// An iperf3 TCP stream from `client` to a one-shot server on `ip:port` in `server`, for
/// `secs`; returns the receiver's Gbit/s.
pub fn iperf3(
    client: &Netns,
    server: &Netns,
    ip: Ipv4Addr,
    port: u16,
    secs: f64,
) -> anyhow::Result<f64> {
    Ok(iperf3_stream(client, server, ip.into(), port, secs)?.gbps)
}

/// What one iperf3 stream did.
pub struct Stream {
    /// The receiver's Gbit/s.
    pub gbps: f64,
    /// Bytes the receiver got.
    pub bytes: u64,
    /// The client's address as the server saw it (`None`: the server's report was not read).
    pub peer: Option<IpAddr>,
}

/// [`iperf3`] to an address of either family, with the bytes received and the client's
/// address as the server saw it (its JSON report: the server exits after its one client).
pub fn iperf3_stream(
    client: &Netns,
    server: &Netns,
    ip: IpAddr,
    port: u16,
    secs: f64,
) -> anyhow::Result<Stream> {
    let mut srv = server
        .command("iperf3")
        .args([
            "-s",
            "-1",
            "-J",
            "-B",
            &ip.to_string(),
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .command("iperf3")
        .args([
            "-c",
            &ip.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            // iperf3 takes whole seconds (0 would mean forever).
            &format!("{}", secs.ceil().max(1.0)),
            "-J",
        ])
        .output();
    // The one-off server writes its report and exits once its client is done.
    let deadline = Instant::now() + Duration::from_secs(3);
    while matches!(srv.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = srv.kill();
    let mut report = Vec::new();
    if let Some(mut o) = srv.stdout.take() {
        let _ = o.read_to_end(&mut report);
    }
    let _ = srv.wait();
    let peer = serde_json::from_slice::<serde_json::Value>(&report)
        .ok()
        .and_then(|v| {
            v["start"]["connected"][0]["remote_host"]
                .as_str()?
                .parse()
                .ok()
        });
    let out = out?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let received = &v["end"]["sum_received"];
    let gbps = received["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| anyhow::anyhow!("iperf3 gave no result: {}", v["error"]))?;
    Ok(Stream {
        gbps,
        bytes: received["bytes"].as_u64().unwrap_or_default(),
        peer,
    })
}

/// Whether iperf3 is installed (`cargo xtask setup` installs it).
pub fn have_iperf3() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
