//! Crafted frames for the link guard cases, sent from inside a namespace through a raw
//! `AF_PACKET` socket (as a pod's process could), and a capture that counts the frames to one
//! IPv4 address a namespace receives. Checksums are real: the receiving kernels verify them.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::libc;
use smarter_testbed::{Netns, inet_csum as csum, spawn_in};
use socket2::{Domain, Protocol, Socket, Type};

/// `ff02::1`, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// An Ethernet frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The Ethernet address of IPv6 multicast group `dst` (or broadcast-free unicast `mac`).
pub fn l2_dst(dst: [u8; 16], unicast: [u8; 6]) -> [u8; 6] {
    if dst[0] == 0xff {
        [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]]
    } else {
        unicast
    }
}

/// An IPv6 packet (hop limit 255) whose payload starts with next header `next`.
pub fn ip6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// `l4` (protocol `next`) with its checksum at `at` over the IPv6 pseudo header.
fn l4_over_ip6(src: [u8; 16], dst: [u8; 16], next: u8, mut l4: Vec<u8>, at: usize) -> Vec<u8> {
    let mut over = src.to_vec();
    over.extend_from_slice(&dst);
    over.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    over.extend_from_slice(&[0, 0, 0, next]);
    over.extend_from_slice(&l4);
    let c = csum(&over);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

/// An ICMPv6 message (code 0) with its checksum.
pub fn icmp6(src: [u8; 16], dst: [u8; 16], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    l4_over_ip6(src, dst, 58, m, 2)
}

/// A UDP datagram over IPv6 with its checksum.
pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    l4_over_ip6(src, dst, 17, u, 6)
}

/// A router advertisement body: router lifetime 1800 s, the source link-layer address `mac`
/// and a prefix information option for `prefix`/64 (on-link, autonomous).
pub fn ra_body(prefix: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![64, 0];
    b.extend_from_slice(&1800u16.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&nd_opt(1, mac));
    b.extend_from_slice(&[3, 4, 64, 0xc0]);
    b.extend_from_slice(&86400u32.to_be_bytes());
    b.extend_from_slice(&14400u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&prefix);
    b
}

/// A redirect body: `target` is a better first hop (with link-layer address `mac`) for
/// `destination`.
pub fn redirect_body(target: [u8; 16], destination: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&target);
    b.extend_from_slice(&destination);
    b.extend_from_slice(&nd_opt(2, mac));
    b
}

/// A neighbour advertisement body (solicited 0, override 1) for `target` with the target
/// link-layer address `mac`.
pub fn na_body(target: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![0x20, 0, 0, 0];
    b.extend_from_slice(&target);
    b.extend_from_slice(&nd_opt(2, mac));
    b
}

/// A link-layer address option (1: source, 2: target).
pub fn nd_opt(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// An IPv4 packet (TTL 64) with its header checksum.
pub fn ip4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An ICMP redirect (host, code 1): use `gateway` for the datagram `about` (its IPv4 header and
/// first 8 bytes).
pub fn icmp4_redirect(gateway: Ipv4Addr, about: &[u8]) -> Vec<u8> {
    let mut m = vec![5, 1, 0, 0];
    m.extend_from_slice(&gateway.octets());
    m.extend_from_slice(&about[..28.min(about.len())]);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A UDP datagram over IPv4 (no checksum).
pub fn udp4(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// An ARP reply: `spa` is at `sha`, to `tpa`.
pub fn arp_reply(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 2];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0xff; 6]);
    a.extend_from_slice(&tpa.octets());
    a
}

/// Sends `frames` as they are out of `ifname` in `ns` (a raw `AF_PACKET` socket).
///
/// # Panics
/// When the socket cannot be made or a frame is not sent whole.
pub fn send(ns: &Netns, ifname: &str, frames: &[Vec<u8>]) {
    let ifname = ifname.to_owned();
    let frames = frames.to_vec();
    ns.run(move || {
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).expect("interface");
        // SAFETY: plain socket(2); the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `sockaddr_ll` is plain data; all zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = i32::try_from(ifindex).expect("ifindex");
        sll.sll_halen = 6;
        for f in &frames {
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
            // SAFETY: `f` and `sll` outlive the call; the lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const sll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                n,
                f.len() as isize,
                "send: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(fd) };
    });
}

/// Counts the IPv4 frames to `to` that reach a namespace, until [`Capture::stop`].
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl Capture {
    /// Starts counting in `ns` (every interface).
    pub fn start(ns: &Netns, to: Ipv4Addr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in(ns, move || {
            let all = i32::from((libc::ETH_P_ALL as u16).to_be());
            let s = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all)))
                .expect("AF_PACKET socket");
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let _ = ready_tx.send(());
            let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
            let mut seen = 0;
            loop {
                // Frames queued before the stop are still read: only an empty queue ends.
                let Ok(n) = s.recv(&mut buf) else {
                    if flag.load(Ordering::Relaxed) {
                        return seen;
                    }
                    continue;
                };
                // SAFETY: recv initialised the first `n` bytes.
                let f: &[u8] = unsafe { &*(std::ptr::from_ref(&buf[..n]) as *const [u8]) };
                if f.len() >= 34 && f[12..14] == [8, 0] && f[30..34] == to.octets() {
                    seen += 1;
                }
            }
        });
        ready_rx.recv().expect("capture started");
        Self { stop, thread }
    }

    /// Stops and returns how many frames to the address arrived.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("capture thread")
    }
}
