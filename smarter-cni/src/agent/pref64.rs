//! NAT64 prefix (PREF64) discovery for the CLAT with `nat64Prefix: auto`: the pure parts.
//!
//! - RFC 8781: the kernel hands router advertisement options it does not handle itself to
//!   user space as `RTM_NEWNDUSEROPT` on the rtnetlink group `RTNLGRP_ND_USEROPT`
//!   (netlink-packet-route does not parse them, so [`ra_pref64s`] reads the raw messages);
//!   the PREF64 option ([`parse_pref64_option`]) carries the prefix and a lifetime.
//! - RFC 7050: the `AAAA` answers for `ipv4only.arpa.` are the well-known IPv4 addresses
//!   `192.0.0.170`/`192.0.0.171` synthesized into the prefix ([`from_ipv4only_answers`]).
//! - [`Discovery`] keeps both and decides: a live RA prefix from the CLAT's uplink wins over the
//!   DNS one ([`choose`]); a `nat64Prefix` `/96` in the config wins over both and the
//!   well-known `64:ff9b::/96` is the fallback ([`crate::cni::Nat64Prefix::resolve`]).
//!
//! The I/O (the netlink socket, the DNS queries, the record in the state directory) is in
//! [`discover`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

pub use crate::state::pref64::{Pref64Record, Pref64Source};

pub mod discover;

/// `RTM_NEWNDUSEROPT`: a router advertisement option for user space.
pub const RTM_NEWNDUSEROPT: u16 = 68;
/// `RTNLGRP_ND_USEROPT`: the rtnetlink group the kernel sends them to.
pub const RTNLGRP_ND_USEROPT: u32 = 20;
/// The PREF64 option's type (RFC 8781).
pub const ND_OPT_PREF64: u8 = 38;
/// Linux's `AF_INET6`.
const AF_INET6: u8 = 10;
/// ICMPv6 router advertisement.
const ND_ROUTER_ADVERT: u8 = 134;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct nduseroptmsg)`.
const NDUSEROPT_LEN: usize = 16;
/// The IPv4 addresses RFC 7050 synthesizes (`ipv4only.arpa`).
const WELL_KNOWN_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];
/// Shortest wait between two failed RFC 7050 queries.
pub const DNS_RETRY_MIN: Duration = Duration::from_secs(30);
/// Longest wait between two failed RFC 7050 queries.
const DNS_RETRY_MAX: Duration = Duration::from_secs(600);
/// An RFC 7050 answer is asked again after its TTL, within these bounds.
const DNS_REFRESH: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(3600));

/// One PREF64 option of a router advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaPref64 {
    /// A `/96` (prefix length code 0), valid for `lifetime` (zero: withdrawn).
    Prefix {
        /// The prefix (the option's 96 bits, the rest zero).
        prefix: Ipv6Addr,
        /// The scaled lifetime in seconds (a multiple of 8).
        lifetime: Duration,
    },
    /// Another prefix length (code 1..=5: `/64` to `/32`), which the CLAT does not translate.
    Unsupported {
        /// The prefix length code.
        plc: u8,
    },
}

/// Parses one PREF64 option (type, length, then 14 bytes); `None` when `opt` is not one.
#[must_use]
pub fn parse_pref64_option(opt: &[u8]) -> Option<RaPref64> {
    if opt.len() < 16 || opt[0] != ND_OPT_PREF64 || opt[1] != 2 {
        return None;
    }
    let word = u16::from_be_bytes([opt[2], opt[3]]);
    let plc = (word & 0x7) as u8;
    if plc != 0 {
        return Some(RaPref64::Unsupported { plc });
    }
    let mut o = [0u8; 16];
    o[..12].copy_from_slice(&opt[4..16]);
    Some(RaPref64::Prefix {
        prefix: Ipv6Addr::from(o),
        lifetime: Duration::from_secs(u64::from(word >> 3) * 8),
    })
}

/// The PREF64 options of a netlink datagram from `RTNLGRP_ND_USEROPT`, with the interface each
/// router advertisement came in on: every `RTM_NEWNDUSEROPT` message of IPv6 router
/// advertisements, every option in it (other messages and options are skipped).
#[must_use]
pub fn ra_pref64s(datagram: &[u8]) -> Vec<(u32, RaPref64)> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        if kind == RTM_NEWNDUSEROPT {
            out.extend(nduseropt(&rest[NLMSG_HDRLEN..len]));
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

/// The PREF64 options of one `struct nduseroptmsg` (family, pad, options length, ifindex,
/// ICMPv6 type and code, padding) and its options.
fn nduseropt(msg: &[u8]) -> Vec<(u32, RaPref64)> {
    if msg.len() < NDUSEROPT_LEN || msg[0] != AF_INET6 || msg[8] != ND_ROUTER_ADVERT {
        return Vec::new();
    }
    let opts_len = usize::from(u16::from_ne_bytes([msg[2], msg[3]]));
    let ifindex = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let Ok(ifindex) = u32::try_from(ifindex) else {
        return Vec::new();
    };
    let Some(mut opts) = msg.get(NDUSEROPT_LEN..NDUSEROPT_LEN + opts_len) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        out.extend(parse_pref64_option(&opts[..len]).map(|p| (ifindex, p)));
        opts = &opts[len..];
    }
    out
}

/// The NAT64 prefix in the `AAAA` answers for `ipv4only.arpa` (RFC 7050): the first 96 bits
/// of the first answer whose last 32 bits are `192.0.0.170` or `192.0.0.171`; `None` when
/// there is none (no DNS64 on the way).
#[must_use]
pub fn from_ipv4only_answers(answers: &[Ipv6Addr]) -> Option<Ipv6Addr> {
    answers.iter().find_map(|a| {
        let bits = a.to_bits();
        let v4 = Ipv4Addr::from_bits(bits as u32);
        WELL_KNOWN_V4
            .contains(&v4)
            .then(|| Ipv6Addr::from_bits(bits & !u128::from(u32::MAX)))
    })
}

/// The discovered prefix in force: the router's (RFC 8781) before the resolvers' (RFC 7050).
#[must_use]
pub fn choose(ra: Option<Ipv6Addr>, dns: Option<Ipv6Addr>) -> Option<Pref64Record> {
    let record = |prefix, source| Pref64Record { prefix, source };
    ra.map(|p| record(p, Pref64Source::Ra))
        .or_else(|| dns.map(|p| record(p, Pref64Source::Dns)))
}

/// What discovery knows, and when to ask the resolvers again. Times are given by the caller,
/// so the decisions are tested without waiting.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Per interface: the last advertised `/96` and when it expires.
    ra: HashMap<u32, (Ipv6Addr, Instant)>,
    /// The RFC 7050 prefix, if one was found.
    dns: Option<Ipv6Addr>,
    /// Not before this may the resolvers be asked (again); `None`: at once.
    dns_next: Option<Instant>,
    /// Failed queries in a row (the backoff).
    dns_failures: u32,
}

impl Discovery {
    /// Takes a PREF64 option received on `ifindex` at `now`; `true` when what is known
    /// changed. A zero lifetime withdraws the interface's prefix; another length than `/96`
    /// is logged and ignored.
    pub fn on_ra(&mut self, ifindex: u32, opt: RaPref64, now: Instant) -> bool {
        match opt {
            RaPref64::Unsupported { plc } => {
                tracing::warn!(
                    ifindex,
                    plc,
                    "router advertisement: PREF64 prefix length code {plc} is not a /96, the only \
                     length the CLAT translates; ignored"
                );
                false
            }
            RaPref64::Prefix { lifetime, .. } if lifetime.is_zero() => {
                self.ra.remove(&ifindex).is_some()
            }
            RaPref64::Prefix { prefix, lifetime } => {
                let old = self.ra.insert(ifindex, (prefix, now + lifetime));
                old.is_none_or(|(p, _)| p != prefix)
            }
        }
    }

    /// The live RA prefix of `ifindex` at `now`.
    #[must_use]
    pub fn ra(&self, ifindex: u32, now: Instant) -> Option<Ipv6Addr> {
        self.ra
            .get(&ifindex)
            .filter(|(_, until)| *until > now)
            .map(|(p, _)| *p)
    }

    /// The prefix for the CLAT on `ifindex` at `now` ([`choose`]).
    #[must_use]
    pub fn current(&self, ifindex: u32, now: Instant) -> Option<Pref64Record> {
        choose(self.ra(ifindex, now), self.dns)
    }

    /// Whether the resolvers should be asked now for the CLAT on `ifindex`: no live RA
    /// prefix, and the last answer is due for a refresh or the backoff after a failure is
    /// over.
    #[must_use]
    pub fn dns_due(&self, ifindex: u32, now: Instant) -> bool {
        self.ra(ifindex, now).is_none() && self.dns_next.is_none_or(|t| t <= now)
    }

    /// Takes the outcome of a query made at `now`: the prefix and the answer's TTL, or a
    /// failure (kept: the last prefix found, if any, stays in force); `true` when the prefix
    /// changed.
    pub fn dns_answered(&mut self, outcome: Option<(Ipv6Addr, Duration)>, now: Instant) -> bool {
        match outcome {
            Some((prefix, ttl)) => {
                self.dns_failures = 0;
                self.dns_next = Some(now + ttl.clamp(DNS_REFRESH.0, DNS_REFRESH.1));
                self.dns.replace(prefix) != Some(prefix)
            }
            None => {
                self.dns_failures = self.dns_failures.saturating_add(1);
                self.dns_next = Some(now + dns_backoff(self.dns_failures));
                false
            }
        }
    }

    /// The next instant after `now` at which the decision may change by itself (an RA prefix
    /// expiring, the resolvers due again).
    #[must_use]
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.ra
            .values()
            .map(|(_, until)| *until)
            .chain(self.dns_next)
            .filter(|t| *t > now)
            .min()
    }
}

/// The wait after `failures` failed queries in a row: 30 s, doubling, at most 10 minutes.
#[must_use]
pub fn dns_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    (DNS_RETRY_MIN * 2u32.pow(doublings)).min(DNS_RETRY_MAX)
}

#[cfg(test)]
#[path = "pref64_tests.rs"]
mod tests;
