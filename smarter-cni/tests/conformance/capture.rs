//! A packet capture on every interface of a namespace (an `AF_PACKET` socket), counting the
//! frames that carry a pod's address as their IPv4 source or an IPv6 source in a given prefix:
//! the leak invariant, asserted over a whole run.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smarter_testbed::{Netns, spawn_in};
use socket2::{Domain, Protocol, Socket, Type};

/// One leaked frame: EtherType, IP protocol (or IPv6 next header), and the source.
#[derive(Debug, Clone)]
#[expect(dead_code, reason = "read through Debug in assertion messages")]
pub struct Leak {
    /// 0x0800 or 0x86dd.
    pub ethertype: u16,
    /// IP protocol.
    pub proto: u8,
    /// Source address as text.
    pub src: String,
}

/// The payload of a [`Capture::sync`] marker, followed by its sequence number.
const MARKER: &[u8; 12] = b"SMARTER-SYNC";
/// The port the markers go to, on the capture namespace's loopback.
const MARKER_PORT: u16 = 9;

/// A running capture; [`Capture::stop`] returns what leaked.
pub struct Capture {
    stop: Arc<AtomicBool>,
    leaked: Arc<AtomicUsize>,
    /// The last marker the capture thread has read.
    marker: Arc<AtomicU64>,
    /// The last marker sent.
    sent: AtomicU64,
    thread: Option<JoinHandle<(usize, Vec<Leak>)>>,
}

impl Capture {
    /// Starts capturing in `ns`: IPv4 sources inside `v4 / v4_prefix` and IPv6 sources starting
    /// with `v6_prefix` bytes are leaks.
    pub fn start(ns: &Netns, v4: [u8; 4], v4_prefix: u8, v6_prefix: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let leaked = Arc::new(AtomicUsize::new(0));
        let counter = leaked.clone();
        let marker = Arc::new(AtomicU64::new(0));
        let marker_seen = marker.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in(ns, move || {
            let all = i32::from((nix::libc::ETH_P_ALL as u16).to_be());
            let s = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all)))
                .expect("AF_PACKET socket");
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let _ = ready_tx.send(());
            let mask = u32::MAX.checked_shl(32 - u32::from(v4_prefix)).unwrap_or(0);
            let net = u32::from_be_bytes(v4) & mask;
            let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
            let (mut frames, mut leaks) = (0usize, Vec::new());
            loop {
                let Ok(n) = s.recv(&mut buf) else {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                };
                // SAFETY: recv initialised the first `n` bytes.
                let f: &[u8] = unsafe { &*(std::ptr::from_ref(&buf[..n]) as *const [u8]) };
                if let Some(seq) = marker_of(f) {
                    marker_seen.fetch_max(seq, Ordering::Relaxed);
                    continue;
                }
                frames += 1;
                if f.len() < 34 {
                    continue;
                }
                let ethertype = u16::from_be_bytes([f[12], f[13]]);
                if ethertype == 0x0800 {
                    let src = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
                    if src & mask == net {
                        counter.fetch_add(1, Ordering::Relaxed);
                        leaks.push(Leak {
                            ethertype,
                            proto: f[23],
                            src: std::net::Ipv4Addr::from(src).to_string(),
                        });
                    }
                } else if ethertype == 0x86dd && f.len() >= 54 {
                    let src = &f[22..38];
                    if src.starts_with(&v6_prefix) {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let a: [u8; 16] = src.try_into().unwrap();
                        leaks.push(Leak {
                            ethertype,
                            proto: f[20],
                            src: std::net::Ipv6Addr::from(a).to_string(),
                        });
                    }
                }
            }
            (frames, leaks)
        });
        ready_rx.recv().expect("capture started");
        Self {
            stop,
            leaked,
            marker,
            sent: AtomicU64::new(0),
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
    /// When the marker cannot be sent or is not read within 10 s.
    pub fn sync(&self, ns: &Netns) {
        let seq = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        ns.run(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("marker socket");
            let mut msg = MARKER.to_vec();
            msg.extend_from_slice(&seq.to_be_bytes());
            s.send_to(&msg, ("127.0.0.1", MARKER_PORT))
                .expect("send the capture marker (loopback up?)");
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.marker.load(Ordering::Relaxed) < seq {
            assert!(
                Instant::now() < deadline,
                "the capture did not read marker {seq} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Leaks seen so far.
    pub fn leaked(&self) -> usize {
        self.leaked.load(Ordering::Relaxed)
    }

    /// Stops the capture; returns the frames seen and the leaks among them.
    pub fn stop(mut self) -> (usize, Vec<Leak>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("capture thread")
    }
}

/// The sequence number of a marker frame (loopback, so a zero MAC header; IPv4 UDP to
/// 127.0.0.1:[`MARKER_PORT`] carrying [`MARKER`]).
fn marker_of(f: &[u8]) -> Option<u64> {
    if f.len() < 34
        || u16::from_be_bytes([f[12], f[13]]) != 0x0800
        || f[23] != 17
        || f[30..34] != [127, 0, 0, 1]
    {
        return None;
    }
    let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
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
