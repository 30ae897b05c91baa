//! A packet capture on every interface of a namespace (an `AF_PACKET` socket in cooked mode,
//! `SOCK_DGRAM`: the link header is removed, so Ethernet links and layer-3 devices such as a
//! TUN `wwan0` look alike — the network header starts at byte 0 and the packet socket's
//! address says the protocol and the interface), counting per interface the frames that carry
//! a pod's address as their IPv4 source or an IPv6 source in a given prefix: the leak
//! invariant, asserted over a whole run. Optionally it also timestamps the UDP datagrams to one
//! port (a stream the fail-over test follows).

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smarter_testbed::{Netns, spawn_in};

/// One leaked frame: interface, EtherType, IP protocol (or IPv6 next header), and the source.
#[derive(Debug, Clone)]
#[expect(dead_code, reason = "read through Debug in assertion messages")]
pub struct Leak {
    /// Where it was seen.
    pub ifname: String,
    /// 0x0800 or 0x86dd.
    pub ethertype: u16,
    /// IP protocol.
    pub proto: u8,
    /// Source address as text.
    pub src: String,
}

/// Frames and leaks seen on one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCount {
    /// Frames (both directions).
    pub frames: usize,
    /// Frames with a pod source.
    pub leaks: usize,
}

/// A UDP datagram to the tapped port: where and when it was seen, its source, and the first
/// eight bytes of its payload (a sequence number).
#[derive(Debug, Clone)]
pub struct Tapped {
    /// Interface.
    pub ifname: String,
    /// When the capture thread read it.
    pub at: Instant,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// Payload bytes 0..8 as a big-endian number.
    pub seq: u64,
}

/// What a capture saw over its run.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames on every interface (markers excluded).
    pub frames: usize,
    /// Every leaked frame.
    pub leaks: Vec<Leak>,
    /// Per interface.
    pub per_if: BTreeMap<String, IfCount>,
    /// Frames the capture socket dropped (its buffer full): [`Capture::stop`] refuses a report
    /// with drops, whose leak count would be a lower bound only.
    pub drops: u32,
}

/// The capture socket's receive buffer. The kernel charges a packet socket with each frame's
/// whole buffer (a 64 KiB TCP super-packet between veths costs ~64 KiB), so the default
/// (`rmem_default`, ~208 KiB) overflows after a handful of them while the capture thread
/// waits for a CPU — and an overflowing socket drops frames, leaks among them.
const RCVBUF: usize = 64 << 20;

/// The payload of a [`Capture::sync`] marker, followed by its sequence number.
const MARKER: &[u8; 12] = b"SMARTER-SYNC";
/// The port the markers go to, on the capture namespace's loopback.
const MARKER_PORT: u16 = 9;

/// A running capture; [`Capture::stop`] returns what it saw.
pub struct Capture {
    stop: Arc<AtomicBool>,
    leaked: Arc<AtomicUsize>,
    /// The last marker the capture thread has read.
    marker: Arc<AtomicU64>,
    /// The last marker sent.
    sent: AtomicU64,
    tapped: Arc<Mutex<Vec<Tapped>>>,
    ns: String,
    thread: Option<JoinHandle<Report>>,
}

/// What counts as a leak.
#[derive(Debug, Clone)]
struct Matcher {
    net: u32,
    mask: u32,
    v6: Vec<u8>,
}

impl Capture {
    /// Starts capturing in `ns`: IPv4 sources inside `v4 / v4_prefix` and IPv6 sources starting
    /// with `v6_prefix` bytes are leaks.
    pub fn start(ns: &Netns, v4: [u8; 4], v4_prefix: u8, v6_prefix: Vec<u8>) -> Self {
        Self::start_tapping(ns, v4, v4_prefix, v6_prefix, None)
    }

    /// As [`Capture::start`], and also records every IPv4 UDP datagram to port `tap`
    /// ([`Capture::tapped`]).
    pub fn start_tapping(
        ns: &Netns,
        v4: [u8; 4],
        v4_prefix: u8,
        v6_prefix: Vec<u8>,
        tap: Option<u16>,
    ) -> Self {
        let mask = u32::MAX.checked_shl(32 - u32::from(v4_prefix)).unwrap_or(0);
        let m = Matcher {
            net: u32::from_be_bytes(v4) & mask,
            mask,
            v6: v6_prefix,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let leaked = Arc::new(AtomicUsize::new(0));
        let marker = Arc::new(AtomicU64::new(0));
        let tapped = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let shared = (stop.clone(), leaked.clone(), marker.clone(), tapped.clone());
        let thread = spawn_in(ns, move || {
            let (flag, counter, marker_seen, taps) = shared;
            let all = (nix::libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2).
            let fd = unsafe {
                nix::libc::socket(
                    nix::libc::AF_PACKET,
                    nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
                    i32::from(all),
                )
            };
            assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh fd we own.
            let sock: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            let tv = nix::sys::time::TimeVal::new(0, 20_000);
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
                .expect("SO_RCVTIMEO");
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF)
                .expect("SO_RCVBUFFORCE (the capture runs as root)");
            let _ = ready_tx.send(());
            let mut names: BTreeMap<i32, String> = BTreeMap::new();
            let mut report = Report::default();
            let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
            loop {
                let Some((n, ifindex, proto)) = recv_ll(&sock, &mut buf) else {
                    if flag.load(Ordering::Relaxed) {
                        report.drops = dropped(&sock);
                        break;
                    }
                    continue;
                };
                // SAFETY: recvfrom initialised the first `n` bytes.
                let f: &[u8] = unsafe { &*(std::ptr::from_ref(&buf[..n]) as *const [u8]) };
                if proto == 0x0800
                    && let Some(seq) = marker_of(f)
                {
                    marker_seen.fetch_max(seq, Ordering::Relaxed);
                    continue;
                }
                let ifname = names
                    .entry(ifindex)
                    .or_insert_with(|| ifname_of(ifindex))
                    .clone();
                report.frames += 1;
                let count = report.per_if.entry(ifname.clone()).or_default();
                count.frames += 1;
                if let (Some(port), Some(t)) = (tap, tapped_of(f, proto))
                    && t.0 == port
                {
                    taps.lock().expect("not poisoned").push(Tapped {
                        ifname: ifname.clone(),
                        at: Instant::now(),
                        src: t.1,
                        seq: t.2,
                    });
                }
                if let Some(leak) = m.leak(f, proto, &ifname) {
                    count.leaks += 1;
                    counter.fetch_add(1, Ordering::Relaxed);
                    report.leaks.push(leak);
                }
            }
            report
        });
        ready_rx.recv().expect("capture started");
        Self {
            stop,
            leaked,
            marker,
            sent: AtomicU64::new(0),
            tapped,
            ns: ns.name().to_owned(),
            thread: Some(thread),
        }
    }

    /// Waits until the capture has read every frame that reached `ns` (the namespace it
    /// captures in) before this call: sends a numbered marker datagram over `ns`'s loopback and
    /// waits for the capture thread to read it. The socket queue keeps arrival order, so what
    /// [`Capture::leaked`] says afterwards covers everything sent before — the per-case
    /// attribution does not depend on how fast the capture thread runs on a loaded machine.
    ///
    /// # Panics
    /// When `ns` is not the captured namespace, or the marker cannot be sent or none of its
    /// copies (one a second) is read within 10 s.
    pub fn sync(&self, ns: &Netns) {
        assert_eq!(ns.name(), self.ns, "sync in the captured namespace");
        let seq = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let send = || {
            ns.run(move || {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("marker socket");
                let mut msg = MARKER.to_vec();
                msg.extend_from_slice(&seq.to_be_bytes());
                s.send_to(&msg, ("127.0.0.1", MARKER_PORT))
                    .expect("send the capture marker (loopback up?)");
            });
        };
        send();
        let start = Instant::now();
        let mut resent = start;
        while self.marker.load(Ordering::Relaxed) < seq {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the capture did not read marker {seq} within 10 s (its socket dropped every \
                 copy, or the capture thread got no CPU)"
            );
            // A copy is as good as the first: everything sent before it was sent before the
            // first. Resending covers a marker dropped by a full socket buffer, which the
            // capture then reports as drops when it stops.
            if resent.elapsed() >= Duration::from_secs(1) {
                send();
                resent = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Leaks seen so far.
    pub fn leaked(&self) -> usize {
        self.leaked.load(Ordering::Relaxed)
    }

    /// The tapped datagrams seen so far.
    pub fn tapped(&self) -> Vec<Tapped> {
        self.tapped.lock().expect("not poisoned").clone()
    }

    /// Stops the capture; returns what it saw.
    ///
    /// # Panics
    /// When the capture socket dropped frames: a leak among them would go unseen.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let report = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("capture thread");
        assert_eq!(
            report.drops, 0,
            "the capture socket dropped {} frames (its buffer was full): the leak count would \
             be incomplete",
            report.drops
        );
        report
    }
}

impl Matcher {
    /// The leak `f` (a network-layer packet of EtherType `proto`) is, if it is one.
    fn leak(&self, f: &[u8], proto: u16, ifname: &str) -> Option<Leak> {
        let (src, ip_proto) = match proto {
            0x0800 if f.len() >= 20 => {
                let src = u32::from_be_bytes([f[12], f[13], f[14], f[15]]);
                if src & self.mask != self.net {
                    return None;
                }
                (Ipv4Addr::from(src).to_string(), f[9])
            }
            0x86dd if f.len() >= 40 => {
                let src = &f[8..24];
                if !src.starts_with(&self.v6) {
                    return None;
                }
                let a: [u8; 16] = src.try_into().expect("16 bytes");
                (std::net::Ipv6Addr::from(a).to_string(), f[6])
            }
            _ => return None,
        };
        Some(Leak {
            ifname: ifname.to_owned(),
            ethertype: proto,
            proto: ip_proto,
            src,
        })
    }
}

/// One packet from a cooked `AF_PACKET` socket: its length, interface index and protocol.
fn recv_ll(sock: &std::os::fd::OwnedFd, buf: &mut [MaybeUninit<u8>]) -> Option<(usize, i32, u16)> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<nix::libc::sockaddr_ll>() as nix::libc::socklen_t;
    // SAFETY: a valid fd, a writable buffer of `buf.len()` bytes and an address buffer with
    // its length.
    let n = unsafe {
        nix::libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut sll).cast(),
            &raw mut len,
        )
    };
    let n = usize::try_from(n).ok()?;
    Some((n, sll.sll_ifindex, u16::from_be(sll.sll_protocol)))
}

/// Frames the packet socket dropped since the last call (`PACKET_STATISTICS`, which resets).
fn dropped(sock: &std::os::fd::OwnedFd) -> u32 {
    use std::os::fd::AsRawFd as _;
    let mut st = nix::libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<nix::libc::tpacket_stats>() as nix::libc::socklen_t;
    // SAFETY: a valid fd and an out-buffer of `len` bytes.
    let rc = unsafe {
        nix::libc::getsockopt(
            sock.as_raw_fd(),
            nix::libc::SOL_PACKET,
            nix::libc::PACKET_STATISTICS,
            (&raw mut st).cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "PACKET_STATISTICS: {}",
        std::io::Error::last_os_error()
    );
    st.tp_drops
}

/// The name of interface `ifindex` in the calling thread's namespace.
fn ifname_of(ifindex: i32) -> String {
    u32::try_from(ifindex)
        .ok()
        .and_then(|i| nix::net::if_::if_indextoname(i).ok())
        .map_or_else(
            || format!("if{ifindex}"),
            |c| c.to_string_lossy().into_owned(),
        )
}

/// Destination port, source and the first payload bytes of an IPv4 UDP datagram (first
/// fragment or whole).
fn tapped_of(f: &[u8], proto: u16) -> Option<(u16, Ipv4Addr, u64)> {
    if proto != 0x0800
        || f.len() < 20
        || f[9] != 17
        || u16::from_be_bytes([f[6], f[7]]) & 0x1fff != 0
    {
        return None;
    }
    let l4 = usize::from(f[0] & 0x0f) * 4;
    let udp = f.get(l4..l4 + 8)?;
    let seq = f.get(l4 + 8..l4 + 16)?;
    Some((
        u16::from_be_bytes([udp[2], udp[3]]),
        Ipv4Addr::new(f[12], f[13], f[14], f[15]),
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

/// The sequence number of a marker packet (IPv4 UDP to 127.0.0.1:[`MARKER_PORT`] carrying
/// [`MARKER`]).
fn marker_of(f: &[u8]) -> Option<u64> {
    if f.len() < 20 || f[9] != 17 || f[16..20] != [127, 0, 0, 1] {
        return None;
    }
    let l4 = usize::from(f[0] & 0x0f) * 4;
    let udp = f.get(l4..l4 + 8)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != MARKER_PORT {
        return None;
    }
    let payload = f.get(l4 + 8..l4 + 8 + MARKER.len() + 8)?;
    if &payload[..MARKER.len()] != MARKER {
        return None;
    }
    Some(u64::from_be_bytes(payload[MARKER.len()..].try_into().ok()?))
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
