//! Fragments of translated datagrams: a later fragment carries no ports, so it follows what
//! its first fragment was translated to, remembered in [`FRAG`] keyed by (source, IP id,
//! protocol) for as long as Linux waits for a datagram's fragments.

use smarter_common::{FragKey, FragValue};

use crate::{maps::FRAG, parse::Ipv4};

/// A datagram's fragments must all arrive within this time of the first (Linux's
/// `ipfrag_time` default): older fragment-map entries are not used.
const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

#[inline(always)]
fn key(ip: &Ipv4) -> FragKey {
    FragKey {
        remote: ip.saddr(),
        id: ip.id(),
        proto: ip.proto(),
        pad: 0,
    }
}

/// Remembers that the datagram of first fragment `ip` was translated to `to` (`flags`:
/// `smarter_common::ct::FRAG_F_*`). An LRU insert fails only without memory: the later
/// fragments are then the host stack's.
#[inline(always)]
pub fn remember(ip: &Ipv4, to: u32, flags: u32, now: u64) {
    let value = FragValue {
        first_seen: now,
        pod_ip: to,
        flags,
    };
    let _ = FRAG.insert(key(ip), value, 0);
}

/// What the first fragment of later fragment `ip`'s datagram was translated to, if it was
/// with these `flags`, recently enough, and TTL allows forwarding.
#[inline(always)]
pub fn recall(ip: &Ipv4, flags: u32, now: u64) -> Option<u32> {
    // SAFETY: read-only lookup, copied at once.
    let (to, first_seen, f) = match unsafe { FRAG.get(key(ip)) } {
        Some(v) => (v.pod_ip, v.first_seen, v.flags),
        None => return None,
    };
    if f != flags || now.saturating_sub(first_seen) > FRAG_TIMEOUT_NS || ip.ttl() <= 1 {
        return None;
    }
    Some(to)
}
