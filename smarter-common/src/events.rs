//! Datapath events in [`crate::maps::EVENTS`] (a ring buffer): one [`Event`] per dropped packet,
//! and per packet of any verdict while [`crate::config::CFG_F_TRACE`] is set. Read by
//! `smarter-bpfctl monitor` (or the agent with `--log-drops`); a ring buffer has one reader.

use core::mem::{offset_of, size_of};

/// Capacity of [`crate::maps::EVENTS`] in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// What happened to one packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`).
    pub ktime_ns: u64,
    /// The [`crate::Verdict`] number.
    pub verdict: u32,
    /// The interface the program ran on.
    pub ifindex: u32,
    /// IPv4 source, network byte order (0 when not IPv4).
    pub saddr: u32,
    /// IPv4 destination, network byte order (0 when not IPv4).
    pub daddr: u32,
    /// TCP/UDP source port or ICMP identifier, network byte order (0 otherwise).
    pub sport: u16,
    /// TCP/UDP destination port, network byte order (0 otherwise).
    pub dport: u16,
    /// IP protocol (0 when not IPv4).
    pub proto: u8,
    /// Explicit padding, must be 0.
    pub pad: [u8; 3],
    /// Packet length in bytes.
    pub len: u32,
    /// Explicit padding, must be 0.
    pub pad2: u32,
}

const _: () = {
    assert!(size_of::<Event>() == 40);
    assert!(offset_of!(Event, len) == 32);
    assert!(offset_of!(Event, verdict) == 8);
    assert!(offset_of!(Event, saddr) == 16);
    assert!(offset_of!(Event, sport) == 24);
    assert!(offset_of!(Event, proto) == 28);
};
