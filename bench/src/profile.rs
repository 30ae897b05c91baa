//! The profiles of the data-plane workloads: `default` (the machine as it is: all CPUs,
//! offloads on) and `edge` (per-packet bound, as on a Pi-class gateway: every process of every
//! world on one CPU, TSO/GSO/GRO off on every interface, MTU 1500), and the CPU time a
//! workload costs (from /proc/stat).

use anyhow::Context as _;
use smarter_testbed::{Netns, World};

/// A profile of the data-plane workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The machine as it is.
    Default,
    /// One CPU, no offloads, MTU 1500.
    Edge,
}

impl Profile {
    /// Name, as `--profile` takes it and the report shows it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Edge => "edge",
        }
    }

    /// How the profile sets up the worlds.
    pub fn description(self) -> &'static str {
        match self {
            Profile::Default => "all CPUs, the kernel's default offloads (GSO/GRO/TSO on veths)",
            Profile::Edge => {
                "every process and thread of every world pinned to CPU 0; TSO, GSO and GRO off \
                 on every interface of every namespace (veths, bridge, uplink, LAN); MTU 1500 \
                 (the layer-3 uplink keeps its own)"
            }
        }
    }

    /// Pins the calling thread, and so every thread and process it starts from now on, to
    /// the profile's CPUs; the old affinity comes back when the guard drops.
    ///
    /// # Errors
    ///
    /// When the affinity cannot be read or set.
    pub fn pin(self) -> anyhow::Result<AffinityGuard> {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        let old = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
        if self == Profile::Edge {
            let mut one = CpuSet::new();
            one.set(first_cpu(&old)).context("cpu set")?;
            sched_setaffinity(Pid::from_raw(0), &one).context("sched_setaffinity")?;
        }
        Ok(AffinityGuard { old })
    }

    /// Sets up `world`'s interfaces for the profile (after its pods were added): those of the
    /// node, the wan, the LAN if there is one, and `pods`; a layer-3 uplink keeps its MTU.
    ///
    /// # Errors
    ///
    /// When `ethtool` or `ip` fails (the error names the namespace and interface).
    pub fn apply(self, world: &World, pods: &[&Netns]) -> anyhow::Result<()> {
        if self == Profile::Default {
            return Ok(());
        }
        // A layer-3 uplink keeps its own MTU (a modem's 1428 is what it is on a gateway too).
        let layer3: Vec<&str> = world
            .external_links()
            .iter()
            .filter(|l| l.layer3)
            .flat_map(|l| [l.node_if, l.far_if])
            .collect();
        for ns in [world.node(), world.wan()]
            .into_iter()
            .chain(world.lan())
            .chain(pods.iter().copied())
        {
            for dev in interfaces(ns)? {
                if !layer3.contains(&dev.as_str()) {
                    ns.exec(&["ip", "link", "set", "dev", &dev, "mtu", "1500"])
                        .with_context(|| format!("{}: mtu 1500 on {dev}", ns.name()))?;
                }
                ns.exec(&[
                    "ethtool", "-K", &dev, "tso", "off", "gso", "off", "gro", "off",
                ])
                .with_context(|| format!("{}: ethtool -K {dev} tso/gso/gro off", ns.name()))?;
            }
        }
        Ok(())
    }
}

/// Restores the thread's CPU affinity on drop.
pub struct AffinityGuard {
    old: nix::sched::CpuSet,
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.old);
    }
}

fn first_cpu(set: &nix::sched::CpuSet) -> usize {
    (0..nix::sched::CpuSet::count())
        .find(|&i| set.is_set(i).unwrap_or(false))
        .unwrap_or(0)
}

/// The interfaces of `ns` but `lo`.
fn interfaces(ns: &Netns) -> anyhow::Result<Vec<String>> {
    let out = ns.exec(&["ip", "-o", "link", "show"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|n| n != "lo")
        .collect())
}

/// CPU time of the whole machine, from the `cpu` line of /proc/stat (all CPUs), in ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// Time in system calls and kernel threads.
    pub system_ms: f64,
    /// Time in softirq (network receive and forwarding, which is where a node's datapath runs).
    pub softirq_ms: f64,
}

impl CpuTimes {
    /// Now.
    pub fn now() -> Self {
        let ms_per_tick = 1000.0 / clock_ticks();
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let f: Vec<f64> = s
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq
                Some(Self {
                    system_ms: *f.get(2)? * ms_per_tick,
                    softirq_ms: *f.get(6)? * ms_per_tick,
                })
            })
            .unwrap_or_default()
    }

    /// The CPU time spent since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            system_ms: self.system_ms - earlier.system_ms,
            softirq_ms: self.softirq_ms - earlier.softirq_ms,
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
