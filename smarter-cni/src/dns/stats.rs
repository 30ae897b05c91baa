//! Query counters of the DNS server, read by the agent's metrics (`smarter_dns_queries_total`).
//!
//! Lock-free: one relaxed atomic add per query on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::{Message, ResponseCode};

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    /// Answered from the local table with records (or an empty NOERROR).
    Local,
    /// Answered NXDOMAIN from the local table (inside the cluster domain or the pod subnet).
    NxDomain,
    /// Forwarded upstream and answered (whatever the upstream's code).
    Forwarded,
    /// SERVFAIL: no upstream answered in time, or too many questions were in flight.
    ServFail,
    /// Refused, not implemented or malformed (FORMERR).
    Error,
    /// Not answered: rate-limited, oversized, or not a query.
    Dropped,
}

impl Result {
    /// Every result, in the order of [`Result::name`].
    pub const ALL: [Self; 6] = [
        Self::Local,
        Self::NxDomain,
        Self::Forwarded,
        Self::ServFail,
        Self::Error,
        Self::Dropped,
    ];

    /// The metric label value.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::NxDomain => "nxdomain",
            Self::Forwarded => "forwarded",
            Self::ServFail => "servfail",
            Self::Error => "error",
            Self::Dropped => "dropped",
        }
    }

    /// The result of a locally computed response.
    #[must_use]
    pub fn of_local(resp: &Message) -> Self {
        match resp.metadata.response_code {
            ResponseCode::NoError => Self::Local,
            ResponseCode::NXDomain => Self::NxDomain,
            ResponseCode::ServFail => Self::ServFail,
            _ => Self::Error,
        }
    }

    /// The result of a forwarded question's response.
    #[must_use]
    pub fn of_forwarded(resp: &Message) -> Self {
        if resp.metadata.response_code == ResponseCode::ServFail {
            Self::ServFail
        } else {
            Self::Forwarded
        }
    }
}

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Transport {
    /// Both transports, in index order.
    pub const ALL: [Self; 2] = [Self::Udp, Self::Tcp];

    /// The metric label value.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// Counters per transport and result.
#[derive(Debug, Default)]
pub struct DnsStats {
    counts: [[AtomicU64; Result::ALL.len()]; Transport::ALL.len()],
}

impl DnsStats {
    /// Counts one query.
    pub fn record(&self, transport: Transport, result: Result) {
        self.counts[transport as usize][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter: transport, result, count.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(Transport, Result, u64)> {
        Transport::ALL
            .iter()
            .flat_map(|&t| {
                Result::ALL.iter().map(move |&r| {
                    (
                        t,
                        r,
                        self.counts[t as usize][r as usize].load(Ordering::Relaxed),
                    )
                })
            })
            .collect()
    }

    /// One counter.
    #[must_use]
    pub fn get(&self, transport: Transport, result: Result) -> u64 {
        self.counts[transport as usize][result as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_cell() {
        let s = DnsStats::default();
        s.record(Transport::Udp, Result::Local);
        s.record(Transport::Udp, Result::Local);
        s.record(Transport::Tcp, Result::Dropped);
        assert_eq!(s.get(Transport::Udp, Result::Local), 2);
        assert_eq!(s.get(Transport::Tcp, Result::Dropped), 1);
        assert_eq!(s.get(Transport::Tcp, Result::Local), 0);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 12);
        assert_eq!(snap.iter().map(|(_, _, n)| n).sum::<u64>(), 3);
        // Labels are distinct.
        let mut names: Vec<_> = Result::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Result::ALL.len());
    }
}
