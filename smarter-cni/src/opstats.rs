//! CNI operation counts and latencies, for the agent's metrics. The plugin lives for one call,
//! so each call adds itself to a small JSON file per network,
//! `<stateDir>/<network>/opstats.stats`, under an exclusive `flock` (`opstats.lock`) and with
//! an atomic replace; the agent reads it on every scrape. Recording is best effort: a failure
//! is logged and never fails the CNI call.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the latency histogram buckets; the last bucket is `+Inf`.
pub const BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Counters of one verb.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCounter {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Sum of all call durations, seconds.
    pub seconds_sum: f64,
    /// Calls per bucket of [`BUCKETS`] (not cumulative), plus one for `+Inf`.
    pub buckets: Vec<u64>,
}

impl OpCounter {
    /// Cumulative counts per bucket bound, ending with `+Inf` (Prometheus' `le` convention).
    #[must_use]
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        (0..=BUCKETS.len())
            .map(|i| {
                total += self.buckets.get(i).copied().unwrap_or(0);
                total
            })
            .collect()
    }
}

/// Every verb's counters of one network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Verb (`ADD`, `DEL`, `CHECK`, `GC`) → counters.
    pub ops: BTreeMap<String, OpCounter>,
}

/// Adds one call of `verb` that took `elapsed`.
///
/// # Errors
///
/// I/O errors of the lock, the read or the replace.
pub fn record(
    state_dir: &Path,
    network: &str,
    verb: &str,
    elapsed: Duration,
    ok: bool,
) -> io::Result<()> {
    let dir = crate::state::StateDir::new(state_dir, network);
    let _lock = dir.lock_opstats().map_err(|e| e.source)?;
    let file = dir.opstats();
    let mut stats = read(&file).unwrap_or_default();
    let c = stats.ops.entry(verb.to_string()).or_default();
    if ok {
        c.ok += 1;
    } else {
        c.failed += 1;
    }
    let secs = elapsed.as_secs_f64();
    c.seconds_sum += secs;
    c.buckets.resize(BUCKETS.len() + 1, 0);
    let slot = BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS.len());
    c.buckets[slot] += 1;
    let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, serde_json::to_vec(&stats).map_err(io::Error::other)?)?;
    fs::rename(&tmp, &file)
}

/// The counters of `network` (empty when nothing was recorded yet).
///
/// # Errors
///
/// I/O errors other than "not found", or a corrupt file.
pub fn load(state_dir: &Path, network: &str) -> io::Result<OpStats> {
    match read(&crate::state::StateDir::new(state_dir, network).opstats()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OpStats::default()),
        other => other,
    }
}

fn read(path: &Path) -> io::Result<OpStats> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_accumulate_into_buckets() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("net")).unwrap();
        record(tmp.path(), "net", "ADD", Duration::from_millis(3), true).unwrap();
        record(tmp.path(), "net", "ADD", Duration::from_millis(30), true).unwrap();
        record(tmp.path(), "net", "ADD", Duration::from_secs(9), false).unwrap();
        record(tmp.path(), "net", "DEL", Duration::from_millis(7), true).unwrap();
        let s = load(tmp.path(), "net").unwrap();
        let add = &s.ops["ADD"];
        assert_eq!((add.ok, add.failed), (2, 1));
        assert_eq!(add.cumulative(), vec![1, 1, 1, 2, 2, 2, 2, 2, 2, 3]);
        assert!((add.seconds_sum - 9.033).abs() < 1e-9);
        assert_eq!(s.ops["DEL"].cumulative()[1], 1);
        assert_eq!(load(tmp.path(), "other").unwrap(), OpStats::default());
    }
}
