//! The datapath's event ring buffer ([`smarter_common::maps::EVENTS`]): drops always, every
//! packet while tracing ([`EbpfDatapath::set_trace`]). A ring buffer has one reader at a time
//! (`smarter-bpfctl monitor`, or the agent with `--log-drops`).

use std::{net::Ipv4Addr, os::fd::AsFd as _, time::Duration};

use aya::maps::{Map, MapData, RingBuf};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use smarter_common::{Event, Verdict, config::CFG_F_TRACE, maps};

use super::error::EbpfError;
use super::handle::EbpfDatapath;
use crate::datapath::seam::{DatapathError, DropEvents};
use crate::datapath::types::EventView;

impl EventView {
    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Event>() {
            return None;
        }
        // SAFETY: at least `size_of::<Event>()` bytes, `Event` is plain old data; read unaligned.
        let ev: Event = unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() };
        Some(Self {
            ktime_ns: ev.ktime_ns,
            verdict: Verdict::ALL
                .get(ev.verdict as usize)
                .map_or("unknown", |v| v.name()),
            ifindex: ev.ifindex,
            proto: ev.proto,
            src: Ipv4Addr::from(ev.saddr.to_ne_bytes()),
            sport: u16::from_be(ev.sport),
            dst: Ipv4Addr::from(ev.daddr.to_ne_bytes()),
            dport: u16::from_be(ev.dport),
            len: ev.len,
        })
    }
}

/// The reading end of the event ring buffer.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

impl EventReader {
    /// The next event, waiting up to `timeout`; `Ok(None)` when none came.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Io`] when polling fails.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<EventView>, EbpfError> {
        loop {
            if let Some(item) = self.ring.next() {
                if let Some(ev) = EventView::decode(&item) {
                    return Ok(Some(ev));
                }
                continue;
            }
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(ms))
                .map_err(|e| EbpfError::io("poll the event ring buffer", maps::EVENTS, e.into()))?;
            if ready == 0 {
                return Ok(None);
            }
        }
    }
}

impl EbpfDatapath {
    /// Opens the event ring buffer for reading.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the pinned map cannot be opened.
    pub fn events(&self) -> Result<EventReader, EbpfError> {
        let spec = maps::spec_of(maps::EVENTS).expect("events is a datapath map");
        let data = super::pins::open_map(&self.pins.map(maps::EVENTS), spec)?;
        let ring = RingBuf::try_from(Map::RingBuf(data))
            .map_err(|e| EbpfError::map(maps::EVENTS, "open", e))?;
        Ok(EventReader { ring })
    }

    /// Switches trace events (every packet, not only drops) on or off.
    ///
    /// # Errors
    ///
    /// [`EbpfError::Map`] when the config map cannot be written.
    pub fn set_trace(&self, on: bool) -> Result<(), EbpfError> {
        self.update_config(|c| {
            if on {
                c.flags |= CFG_F_TRACE;
            } else {
                c.flags &= !CFG_F_TRACE;
            }
        })
    }
}

impl DropEvents for EventReader {
    fn next(&mut self, timeout: Duration) -> Result<Option<EventView>, DatapathError> {
        Ok(Self::next(self, timeout)?)
    }
}
