//! One measurement of a data-plane workload.

use crate::load::Rate;

/// One measurement.
pub struct Sample {
    /// The figure, in the workload's unit.
    pub value: f64,
    /// p50 and p99 latency, µs (transactional workloads).
    pub latency: Option<(f64, f64)>,
    /// Seconds the rate was measured over (to turn it into an amount of work).
    pub secs: f64,
    /// How the path of the traffic was checked, in words, when a workload says more than
    /// that it arrived (the CLAT workloads: which translator carried it, with its counters).
    pub path: Option<String>,
}

impl Sample {
    /// A transactional workload's rate with its latencies.
    pub fn rate(r: Rate, secs: f64) -> Self {
        Self {
            value: r.per_s,
            latency: Some((r.p50_us, r.p99_us)),
            secs,
            path: None,
        }
    }

    /// A rate without latencies (packets, a stream's Gbit/s).
    pub fn plain(value: f64, secs: f64) -> Self {
        Self {
            value,
            latency: None,
            secs,
            path: None,
        }
    }
}
