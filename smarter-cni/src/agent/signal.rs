//! SIGTERM/SIGINT as a future, without tokio's `signal` feature: the signals are blocked and
//! read from a `signalfd` registered with the runtime.

use std::io;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// SIGTERM and SIGINT, blocked for normal delivery and readable as a future.
pub struct TerminationSignals {
    fd: SignalFd,
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT on the calling thread and opens a signalfd for them.
    ///
    /// Call on the main thread before any other thread (including a tokio runtime) is
    /// started, so every thread inherits the mask and the signals only reach the signalfd.
    ///
    /// # Errors
    /// When the mask cannot be set or the signalfd cannot be created.
    pub fn block() -> io::Result<Self> {
        let mask = Self::mask();
        mask.thread_block().map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    fn mask() -> SigSet {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask
    }

    /// Waits for SIGTERM or SIGINT and returns which arrived. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// When the signalfd cannot be registered with the runtime or read.
    pub async fn recv(self) -> io::Result<Signal> {
        // SAFETY: `SignalFd` owns its descriptor (an `OwnedFd`), keeps it open until dropped
        // and always returns that same descriptor from `as_raw_fd`.
        let fd = unsafe { AsyncFd::register_with_interest(self.fd, Interest::READABLE) }?;
        loop {
            let mut guard = fd.readable().await?;
            match guard.get_inner().read_signal() {
                Ok(Some(info)) => {
                    let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                    return Ok(Signal::try_from(signo).unwrap_or(Signal::SIGTERM));
                }
                Ok(None) => guard.clear_ready(),
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}
