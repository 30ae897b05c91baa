//! A layer-3 link between two namespaces as a raw-IP cellular modem (`wwan0`) or a tun VPN
//! presents it: a TUN device (`IFF_TUN | IFF_NO_PI`: no Ethernet header, no MAC,
//! `ARPHRD_NONE`) in each namespace and a relay thread that copies every packet read from
//! one device's file descriptor to the other's. Dropping the [`TunRelay`] stops the thread
//! and closes both descriptors, which removes both (non-persistent) devices.

use std::fs;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Netns;

/// Opens `/dev/net/tun` inside `ns` and creates (`TUNSETIFF`) the TUN device `name` there
/// (the device lives in the namespace of the thread that opens the file).
///
/// # Errors
/// When `/dev/net/tun` cannot be opened, the name is too long, or the ioctl fails.
pub fn open_tun(ns: &Netns, name: &str) -> io::Result<OwnedFd> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} is longer than {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    let name = name.to_owned();
    ns.run(move || {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // SAFETY: `ifreq` is plain old data; all zeros is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: a valid open fd and a pointer to an initialised `ifreq` that outlives the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut ifr) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from(file))
    })
}

/// Packets the relay copied, per direction.
#[derive(Debug, Default)]
pub struct RelayCounts {
    /// From the first device to the second.
    pub a_to_b: AtomicU64,
    /// From the second device to the first.
    pub b_to_a: AtomicU64,
}

/// A running relay between two TUN descriptors; see the module docs.
pub struct TunRelay {
    stop: Arc<AtomicBool>,
    counts: Arc<RelayCounts>,
    thread: Option<JoinHandle<()>>,
}

impl TunRelay {
    /// Starts copying packets between `a` and `b` in both directions on one polling thread.
    #[must_use]
    pub fn start(a: OwnedFd, b: OwnedFd) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(RelayCounts::default());
        let (flag, c) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || relay(&a, &b, &flag, &c));
        Self {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    /// What has been copied so far.
    #[must_use]
    pub fn counts(&self) -> &RelayCounts {
        &self.counts
    }
}

/// The relay loop: poll both descriptors (50 ms at most, to notice `stop`), and write every
/// packet read on one to the other. A write that fails (the other device is down: `EIO`) drops
/// that packet, as a link does.
fn relay(a: &OwnedFd, b: &OwnedFd, stop: &AtomicBool, counts: &RelayCounts) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            PollFd::new(a.as_fd(), PollFlags::POLLIN),
            PollFd::new(b.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("testbed: tun relay poll failed: {e}");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| {
                f.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            })
            .collect();
        for (i, (from, to, count)) in [(a, b, &counts.a_to_b), (b, a, &counts.b_to_a)]
            .into_iter()
            .enumerate()
        {
            if !ready[i] {
                continue;
            }
            match nix::unistd::read(from, &mut buf) {
                Ok(n) if n > 0 => {
                    if nix::unistd::write(to, &buf[..n]).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // EBADFD/EIO: a device went away (a reboot deletes the node's links).
                    eprintln!("testbed: tun relay read failed: {e}; relay stopped");
                    return;
                }
            }
        }
    }
}

impl Drop for TunRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
