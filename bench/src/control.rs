//! Running a plugin the way a runtime does, measuring its wall time and peak RSS (GNU time, or
//! `wait4`), and
//! the control-plane workloads: ADD/DEL latency at a given concurrency.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use smarter_cni::testbed::{CniCall, CniOutput, Netns, spawn_plugin};

/// GNU time (Debian's `time`), which forks the measured plugin from its own small process.
const GNU_TIME: &str = "/usr/bin/time";

/// Runs `bin` with `call` inside `ns`; returns its answer and its peak RSS in KiB.
///
/// The peak comes from GNU time when it is installed: a process forked from this (large,
/// multi-threaded) harness starts with the harness's resident pages counted, and Linux keeps
/// that high-water mark across `execve`, so `wait4` on a direct child reports at least the
/// harness's own size. GNU time forks the plugin from a process of about 1 MiB instead.
pub fn run_measured(ns: &Netns, bin: &Path, call: &CniCall) -> anyhow::Result<(CniOutput, u64)> {
    if !Path::new(GNU_TIME).exists() {
        return run_direct(ns, bin, call);
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir();
    let out = dir.join(format!("smarter-bench-rss-{}-{n}", std::process::id()));
    let wrapper = dir.join(format!("smarter-bench-time-{}-{n}", std::process::id()));
    let script = format!(
        "#!/bin/sh\nexec {GNU_TIME} -f %M -o \"$SMARTER_BENCH_RSS\" \"$SMARTER_BENCH_PLUGIN\"\n"
    );
    std::fs::write(&wrapper, script)?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let mut timed = call.clone();
    timed
        .env
        .push(("SMARTER_BENCH_PLUGIN".into(), bin.display().to_string()));
    timed
        .env
        .push(("SMARTER_BENCH_RSS".into(), out.display().to_string()));
    let ran = run_direct(ns, &wrapper, &timed);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&wrapper);
    let (output, _) = ran?;
    // GNU time prints "Command exited with non-zero status N" before the figure on failures.
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .with_context(|| format!("no peak RSS from {GNU_TIME}: {text:?}"))?;
    Ok((output, kib))
}

/// [`run_measured`] without GNU time: `wait4`'s figure (an upper bound, see there).
fn run_direct(ns: &Netns, bin: &Path, call: &CniCall) -> anyhow::Result<(CniOutput, u64)> {
    let mut child = spawn_plugin(ns, bin, call)?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    let pid = i32::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid out-parameter.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own un-waited child; both out-pointers are valid for the call.
    let r = unsafe { nix::libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    if r != pid {
        anyhow::bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let json = if stdout.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    };
    let code = if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((
        CniOutput {
            status: code,
            json,
            stdout,
            stderr,
        },
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
    ))
}

/// Percentile `p` (0..=100) of `samples` (sorted in place), in microseconds.
pub fn percentile_us(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort();
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)].as_secs_f64() * 1e6
}

/// Runs `f(i)` for `i` in `0..n`, `concurrency` at a time; returns every duration.
///
/// # Errors
///
/// The first failing call.
pub fn batched(
    n: usize,
    concurrency: usize,
    f: &(dyn Fn(usize) -> anyhow::Result<Duration> + Sync),
) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(concurrency.max(1)) {
        let results: Vec<anyhow::Result<Duration>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|&i| s.spawn(move || f(i))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
                })
                .collect()
        });
        for r in results {
            all.push(r?);
        }
    }
    Ok(all)
}
