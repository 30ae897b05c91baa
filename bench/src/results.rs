//! The results of a run: every figure, saved as `results.json` after each stage (marked
//! `complete: false` until the end) and read back to regenerate the report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Everything one run measured. Fields missing from an older `results.json` read as empty.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// False while the run goes on, or when it stopped early.
    pub complete: bool,
    /// `--quick` (a smoke run: figures are not meaningful).
    pub quick: bool,
    /// `--only` of the run (empty: everything).
    #[serde(default)]
    pub only: Vec<String>,
    /// Seconds per measurement.
    pub seconds_per_run: f64,
    /// Repetitions of each data-plane workload.
    pub repetitions: usize,
    /// Unix time of the run.
    pub unix_time: u64,
    /// Machine, kernel and versions.
    pub machine: BTreeMap<String, String>,
    /// Data-plane workloads, one entry per profile (`default`, `edge`).
    pub profiles: Vec<ProfileResults>,
    /// NAT and hostPort with more pods attached.
    pub scaling: Vec<ScalingRow>,
    /// CNI ADD/DEL latency.
    pub control_plane: Vec<ControlRow>,
    /// Memory.
    pub memory: Option<Memory>,
    /// Results of stages without a field of their own, by stage name.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The stages that ran, in order, with their wall time.
    pub stages: Vec<StageRecord>,
    /// What failed (the run goes on with the next stage).
    pub failures: Vec<Failure>,
}

/// The data-plane workloads of one profile.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProfileResults {
    /// `default` or `edge`.
    pub profile: String,
    /// How the profile sets up the worlds.
    pub description: String,
    /// One entry per workload.
    pub workloads: Vec<Workload>,
}

/// One data-plane workload across contenders.
#[derive(Debug, Serialize, Deserialize)]
pub struct Workload {
    /// Name, e.g. `stream pod→pod`.
    pub name: String,
    /// Short id for `--only`, e.g. `stream-pod`.
    pub id: String,
    /// Unit of the values.
    pub unit: String,
    /// Unit of the CPU cost (`per Gbit`, `per 100k packets`, …).
    pub cpu_unit: String,
    /// Per contender.
    pub contenders: BTreeMap<String, Figure>,
}

/// The repetitions of one workload for one contender.
#[derive(Debug, Serialize, Deserialize)]
pub struct Figure {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Every repetition.
    pub samples: Vec<f64>,
    /// Median of the per-repetition p50 latencies, microseconds (transactional workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// Median of the per-repetition p99 latencies, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Median softirq CPU time (ms, all CPUs, from /proc/stat) per `cpu_unit` of work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softirq_ms: Option<f64>,
    /// Median system + softirq CPU time (ms, all CPUs) per `cpu_unit` of work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ms: Option<f64>,
    /// How the path of the traffic was checked, in words, as of the last repetition (the
    /// CLAT workloads: which translator on the node carried it, with its counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One scaling point.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScalingRow {
    /// Contender.
    pub contender: String,
    /// Pods attached (each with a hostPort).
    pub pods: usize,
    /// NAT connect/request/close per second.
    pub nat_crr_per_s: f64,
    /// hostPort request/response per second from the wan.
    pub hostport_rr_per_s: f64,
}

/// CNI latency at one concurrency.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlRow {
    /// Contender.
    pub contender: String,
    /// Calls in flight.
    pub concurrency: usize,
    /// ADD median, ms.
    pub add_p50_ms: f64,
    /// ADD 99th percentile, ms.
    pub add_p99_ms: f64,
    /// DEL median, ms.
    pub del_p50_ms: f64,
    /// DEL 99th percentile, ms.
    pub del_p99_ms: f64,
}

/// Memory figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Peak RSS of any plugin process but the first of a world (the largest plugin of the
    /// chain for the reference), ADD or DEL, KiB.
    pub plugin_peak_rss_kib: BTreeMap<String, u64>,
    /// Peak RSS of the first plugin call of a world, KiB: for smarter-ebpf without an agent,
    /// the ADD that loads and pins the programs.
    pub plugin_first_call_rss_kib: BTreeMap<String, u64>,
    /// Calls measured per contender.
    #[serde(default)]
    pub plugin_calls: BTreeMap<String, usize>,
    /// Peak RSS of the later calls per contender and verb (`ADD`, `DEL`), KiB.
    #[serde(default)]
    pub plugin_peak_rss_by_verb_kib: BTreeMap<String, BTreeMap<String, u64>>,
    /// The agent's RSS after settling, KiB.
    pub agent_rss_kib: Option<u64>,
    /// The agent's peak RSS (`VmHWM`) by then, KiB.
    pub agent_peak_rss_kib: Option<u64>,
    /// Pods attached while the agent's RSS was read.
    pub agent_pods: Option<usize>,
}

/// A stage that ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage name.
    pub name: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Whether it finished without a failure.
    pub ok: bool,
}

/// Where and how a stage failed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    /// Stage name.
    pub stage: String,
    /// Contender, when known.
    pub contender: Option<String>,
    /// Workload or step, when known.
    pub workload: Option<String>,
    /// The failing call (command line or plugin invocation), when it was a call.
    pub call: Option<String>,
    /// That call's standard error (the plugin's logs), when it was a call.
    pub stderr: Option<String>,
    /// The whole error chain.
    pub error: String,
}

impl Results {
    /// Writes `results.json` under `dir` (atomically: a reader never sees half a file).
    ///
    /// # Errors
    ///
    /// When the directory or the file cannot be written.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self)?;
        let tmp = dir.join("results.json.tmp");
        std::fs::write(&tmp, &json)?;
        std::fs::rename(&tmp, dir.join("results.json"))?;
        Ok(())
    }

    /// Reads a `results.json`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The workloads of `profile`, created when absent.
    pub fn profile_mut(&mut self, profile: &str, description: &str) -> &mut ProfileResults {
        if let Some(i) = self.profiles.iter().position(|p| p.profile == profile) {
            return &mut self.profiles[i];
        }
        self.profiles.push(ProfileResults {
            profile: profile.to_string(),
            description: description.to_string(),
            workloads: Vec::new(),
        });
        self.profiles.last_mut().expect("just pushed")
    }
}
