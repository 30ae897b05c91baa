//! A per-source token bucket, so one flooding pod cannot starve the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked at most; beyond that idle ones are forgotten (a full bucket is the same
/// as no bucket).
const MAX_SOURCES: usize = 4096;

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` queries per second per source, bursts up to `burst`; `rate == 0` disables it.
    #[must_use]
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `src` at `now`; false when its bucket is empty.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&src) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(src).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_refills_per_source() {
        let mut l = RateLimiter::new(10, 5);
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let t = Instant::now();
        assert_eq!((0..20).filter(|_| l.allow(a, t)).count(), 5);
        assert!(l.allow(b, t), "another source is unaffected");
        assert!(
            l.allow(a, t + Duration::from_millis(150)),
            "refilled after 100 ms"
        );
        assert!(!l.allow(a, t + Duration::from_millis(150)));
        let mut off = RateLimiter::new(0, 0);
        assert!((0..1000).all(|_| off.allow(a, t)));
    }

    #[test]
    fn source_table_is_bounded() {
        let mut l = RateLimiter::new(1, 1);
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            l.allow(IpAddr::V4(Ipv4Addr::from(i)), t);
        }
        assert!(l.buckets.len() <= MAX_SOURCES);
    }
}
