//! Servers for the simulated internet: they run on threads inside a namespace, answer, and
//! record the source address they saw (so tests can check NAT), and stop on drop.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Netns, spawn_in};

/// What a server saw: the peer address of every connection or datagram.
#[derive(Debug, Default, Clone)]
pub struct Seen(Arc<Mutex<Vec<SocketAddr>>>);

impl Seen {
    /// The peers seen so far.
    #[must_use]
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn push(&self, a: SocketAddr) {
        self.0.lock().expect("not poisoned").push(a);
    }
}

/// A TCP or UDP echo server in a namespace; stops when dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// A TCP echo server on `ip:port` (IPv4 or IPv6) inside `ns` (one connection at a time: echo until EOF).
    ///
    /// # Panics
    /// When the address cannot be bound.
    #[must_use]
    pub fn tcp(ns: &Netns, ip: impl Into<IpAddr>, port: u16) -> Self {
        let ip = ip.into();
        Self::start(ns, move |stop, seen, ready| {
            let l = retry_in_use(|| TcpListener::bind((ip, port))).expect("bind TCP");
            let _ = ready.send(());
            l.set_nonblocking(true).expect("nonblocking");
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        seen.push(peer);
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    }

    /// A UDP echo server on `ip:port` (IPv4 or IPv6) inside `ns`.
    ///
    /// # Panics
    /// When the address cannot be bound.
    #[must_use]
    pub fn udp(ns: &Netns, ip: impl Into<IpAddr>, port: u16) -> Self {
        let ip = ip.into();
        Self::start(ns, move |stop, seen, ready| {
            let s = retry_in_use(|| UdpSocket::bind((ip, port))).expect("bind UDP");
            let _ = ready.send(());
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            let mut buf = [0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = s.recv_from(&mut buf) {
                    seen.push(peer);
                    let _ = s.send_to(&buf[..n], peer);
                }
            }
        })
    }

    /// Runs `body` in a thread inside `ns` and returns once it said it is ready (bound: a
    /// client may connect at once, however loaded the machine is).
    fn start(
        ns: &Netns,
        body: impl FnOnce(Arc<AtomicBool>, Seen, std::sync::mpsc::Sender<()>) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Seen::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (s, v) = (stop.clone(), seen.clone());
        let thread = spawn_in(ns, move || body(s, v, ready_tx));
        // An error: the thread ended before binding (its panic names the reason, and the
        // join in drop passes it on).
        let _ = ready_rx.recv();
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The peers this server saw.
    #[must_use]
    pub fn seen(&self) -> Vec<SocketAddr> {
        self.seen.peers()
    }
}

/// Binds, retrying for a while when the address is still in use (a server on the same port
/// that was just stopped, whose socket the kernel has not released yet on a busy machine).
fn retry_in_use<T>(bind: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match bind() {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP round trip from inside `ns`: connect, send `msg`, read it back. `Err` with the
/// reason when anything fails within `timeout`.
///
/// # Errors
/// A description of what failed.
pub fn tcp_roundtrip(
    ns: &Netns,
    to: SocketAddr,
    msg: &'static [u8],
    timeout: Duration,
) -> Result<(), String> {
    spawn_in(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&to, timeout)
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.write_all(msg).map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf)
            .map_err(|e| format!("receive: {e}"))?;
        if buf == msg {
            Ok(())
        } else {
            Err("echo differs".into())
        }
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// A UDP round trip from inside `ns` (from an IPv4 or IPv6 socket, as `to` is).
///
/// # Errors
/// A description of what failed.
pub fn udp_roundtrip(
    ns: &Netns,
    to: SocketAddr,
    msg: &'static [u8],
    timeout: Duration,
) -> Result<(), String> {
    spawn_in(ns, move || {
        let any: std::net::IpAddr = if to.is_ipv6() {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let s = UdpSocket::bind((any, 0)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.send_to(msg, to).map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf).map_err(|e| format!("receive: {e}"))?;
        if &buf[..n] == msg {
            Ok(())
        } else {
            Err("echo differs".into())
        }
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// `GET /metrics` over HTTP/1.0 from `addr` inside `ns`: the whole answer (headers and body),
/// empty when nothing answers.
#[must_use]
pub fn scrape_metrics(ns: &crate::Netns, addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let addr = addr.to_owned();
    crate::spawn_in(ns, move || {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .join()
    .ok()
    .flatten()
    .unwrap_or_default()
}
