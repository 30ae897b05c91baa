//! Load on the machine's CPUs while a test runs, so that races between concurrent plugin
//! processes, the agent and the kernel show up in CI rather than on a newcomer's busy laptop.
//!
//! ```no_run
//! let _load = smarter_testbed::load::CpuLoad::busy_all();
//! // … the concurrency test: every CPU is also running a busy loop meanwhile …
//! // (the load stops when `_load` is dropped, also when the test panics)
//! ```
//!
//! The spinning threads run at normal priority in the test's own process: the plugin
//! processes, containerd and the kernel's work compete with them for every CPU, and are
//! preempted and rescheduled at points they would rarely be on an idle machine. The load
//! adds no assertion of its own and changes no timing a test asserts on (tests assert on no
//! wall-clock threshold).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Busy-spinning threads, stopped and joined on drop; see the module docs.
#[derive(Debug)]
#[must_use = "the load stops when the CpuLoad is dropped"]
pub struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl CpuLoad {
    /// One busy thread per CPU this process may run on (the online CPUs, less any that its
    /// affinity mask or cgroup quota excludes; at least one).
    #[must_use = "the load stops when the CpuLoad is dropped"]
    pub fn busy_all() -> Self {
        Self::busy(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    }

    /// `n` busy threads.
    ///
    /// # Panics
    /// When a thread cannot be spawned (the ones already started are stopped first).
    #[must_use = "the load stops when the CpuLoad is dropped"]
    pub fn busy(n: usize) -> Self {
        let mut load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let stop = Arc::clone(&load.stop);
            let thread = std::thread::Builder::new()
                .name(format!("cpu-load-{i}"))
                .spawn(move || spin(&stop))
                .unwrap_or_else(|e| panic!("cpu-load thread {i}: {e}"));
            load.threads.push(thread);
        }
        load
    }

    /// How many threads are spinning.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

/// Integer work (kept observable so it is not optimized away) until `stop` is set.
fn spin(stop: &AtomicBool) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
        rounds += 1;
    }
    rounds
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            // A spinning thread cannot panic; a join error would only repeat one.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CpuLoad;

    #[test]
    fn threads_spin_until_dropped() {
        let load = CpuLoad::busy(3);
        assert_eq!(load.threads(), 3);
        assert!(load.threads.iter().all(|t| !t.is_finished()));
        let stop = std::sync::Arc::clone(&load.stop);
        drop(load);
        assert!(stop.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn busy_all_uses_every_cpu() {
        let load = CpuLoad::busy_all();
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(load.threads(), cpus);
    }

    #[test]
    fn a_panic_stops_the_load() {
        let stop = std::panic::catch_unwind(|| {
            let load = CpuLoad::busy(2);
            let stop = std::sync::Arc::clone(&load.stop);
            std::panic::panic_any(stop);
        })
        .expect_err("panicked")
        .downcast::<std::sync::Arc<std::sync::atomic::AtomicBool>>()
        .expect("the flag");
        assert!(stop.load(std::sync::atomic::Ordering::Relaxed));
    }
}
