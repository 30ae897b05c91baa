//! The link guard cases' frames (built by `smarter_testbed::packet`) sent from inside a
//! namespace through a raw `AF_PACKET` socket (as a pod's process could), and a capture that
//! counts the frames to one IPv4 address a namespace receives.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::libc;
use smarter_testbed::packet::{ipv4_dst, is_ipv4};
use smarter_testbed::{Netns, spawn_in};
use socket2::{Domain, Protocol, Socket, Type};

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
                if is_ipv4(f) && ipv4_dst(f) == to.octets() {
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
