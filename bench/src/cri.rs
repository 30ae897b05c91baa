//! RunPodSandbox latency through containerd's CRI: Debian's containerd 1.6 (runc, a static
//! pause image) in each contender's node namespace ([`smarter_testbed::containerd`]),
//! driven as a kubelet drives it, with one hostPort per pod. Contenders: the reference chain
//! (bridge + host-local + portmap from `/usr/lib/cni`), smarter-cni on nftables and on eBPF.
//! Each round runs one batch per contender, interleaved, at concurrency 1 (calls one after
//! the other) and at the run's higher concurrency (all calls of a batch at once); every
//! sandbox is stopped and removed between batches (not timed). A sample is one call, from
//! request to answer: the plugin chain plus containerd's and runc's own work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use smarter_testbed::World;
use smarter_testbed::containerd::{Cni, Containerd, missing_tools};

/// The reference plugins' directory (Debian's containernetworking-plugins).
const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Latency of one contender at one concurrency.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CriRow {
    /// `reference`, `smarter-cni (nftables)` or `smarter-cni (eBPF)`.
    pub contender: String,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Calls measured.
    pub samples: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), milliseconds.
    pub p99_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
}

/// The CRI stage's result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CriBench {
    /// containerd's name and version as its CRI reports them.
    pub runtime: String,
    /// Rounds (each: one batch per contender per concurrency).
    pub rounds: usize,
    /// One row per contender and concurrency.
    pub rows: Vec<CriRow>,
}

struct Contender {
    name: &'static str,
    c: Containerd,
    _world: World,
    seq: usize,
}

fn reference_conflist(w: &World) -> Value {
    json!({"cniVersion": "1.0.0", "name": "refnet", "plugins": [
        {"type": "bridge", "bridge": "refbr0", "isGateway": true, "ipMasq": true,
         "hairpinMode": true,
         "ipam": {"type": "host-local", "dataDir": w.data_dir(),
                  "ranges": [[{"subnet": "172.39.0.0/16", "gateway": "172.39.0.1"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

fn smarter_conflist(w: &World, datapath: &str) -> Value {
    let mut plugin = w.netconf("1.0.0");
    let obj = plugin.as_object_mut().expect("object");
    obj.remove("cniVersion");
    obj.remove("name");
    plugin["datapath"] = json!(datapath);
    plugin["capabilities"] = json!({"portMappings": true});
    json!({"cniVersion": "1.0.0", "name": "smartnet", "plugins": [plugin]})
}

impl Contender {
    fn new(name: &'static str, plugin: &Path) -> anyhow::Result<Self> {
        let world = World::new("bench-cri").context("namespace world")?;
        let (conflist, plugins): (Value, Vec<(String, PathBuf)>) = match name {
            "reference" => (
                reference_conflist(&world),
                ["bridge", "host-local", "portmap"]
                    .map(|p| (p.to_owned(), Path::new(REFERENCE_DIR).join(p)))
                    .to_vec(),
            ),
            "smarter-cni (nftables)" => (
                smarter_conflist(&world, "iptables"),
                vec![("smarter-cni".into(), plugin.to_path_buf())],
            ),
            _ => (
                smarter_conflist(&world, "ebpf"),
                vec![("smarter-cni".into(), plugin.to_path_buf())],
            ),
        };
        let cni = Cni::Own {
            conflist,
            plugins,
            log_calls: false,
        };
        let c = Containerd::start(world.node().path(), &cni, None)
            .with_context(|| format!("{name}: containerd"))?;
        Ok(Self {
            name,
            c,
            _world: world,
            seq: 0,
        })
    }

    /// One batch of `n` sandboxes, `concurrency` at a time; the call latencies.
    fn batch(&mut self, n: usize, concurrency: usize) -> anyhow::Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let k = concurrency.min(n - out.len());
            let configs = (0..k)
                .map(|_| {
                    self.seq += 1;
                    let port = u16::try_from(20_000 + self.seq % 20_000).expect("port");
                    self.c
                        .config(&format!("p{}", self.seq), "bench", &[(port, 80)])
                })
                .collect();
            let done = self
                .c
                .run_concurrently(configs)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.name))?;
            out.extend(done.into_iter().map(|(_, d)| d));
        }
        self.c
            .remove_all()
            .map_err(|e| anyhow::anyhow!("{}: stop/remove: {e}", self.name))?;
        Ok(out)
    }
}

fn nearest_rank_ms(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e3
}

fn row(contender: &str, concurrency: usize, mut samples: Vec<Duration>) -> CriRow {
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
    CriRow {
        contender: contender.to_owned(),
        concurrency,
        samples: samples.len(),
        p50_ms: nearest_rank_ms(&samples, 50.0),
        p99_ms: nearest_rank_ms(&samples, 99.0),
        mean_ms: mean * 1e3,
    }
}

/// Measures RunPodSandbox latency (see the module docs) with `plugin` as smarter-cni; a
/// `quick` run is a smoke run (1 round, concurrency 1 and 4, a few calls).
///
/// # Errors
/// containerd or a reference plugin missing (`cargo xtask setup`), a world or containerd
/// that cannot be built, any CRI call failing.
pub fn measure(plugin: &Path, quick: bool) -> anyhow::Result<CriBench> {
    if let Some(missing) = missing_tools() {
        bail!("the CRI stage needs {missing}: run `cargo xtask setup`");
    }
    for p in ["bridge", "host-local", "portmap"] {
        anyhow::ensure!(
            Path::new(REFERENCE_DIR).join(p).exists(),
            "{REFERENCE_DIR}/{p} missing: run `cargo xtask setup`"
        );
    }
    let (rounds, high, per_batch) = if quick {
        (1, 4, [3, 4])
    } else {
        (5, 20, [10, 20])
    };
    let mut contenders = Vec::new();
    for name in ["reference", "smarter-cni (nftables)", "smarter-cni (eBPF)"] {
        eprintln!("bench: CRI: starting containerd for {name}");
        contenders.push(Contender::new(name, plugin)?);
    }
    let version = contenders[0]
        .c
        .rt
        .block_on(contenders[0].c.cri.version())
        .map(|v| format!("{} {}", v.runtime_name, v.runtime_version))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let mut samples: Vec<[Vec<Duration>; 2]> =
        contenders.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        for (i, concurrency) in [1, high].into_iter().enumerate() {
            for (c, s) in contenders.iter_mut().zip(&mut samples) {
                eprintln!(
                    "bench: CRI round {}/{rounds}: {} at concurrency {concurrency}",
                    round + 1,
                    c.name
                );
                s[i].extend(c.batch(per_batch[i], concurrency)?);
            }
        }
    }
    let mut rows = Vec::new();
    for (c, [one, many]) in contenders.iter().zip(samples) {
        rows.push(row(c.name, 1, one));
        rows.push(row(c.name, high, many));
    }
    Ok(CriBench {
        runtime: version,
        rounds,
        rows,
    })
}

/// The CRI table in markdown.
fn markdown_of(r: &CriBench) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "RunPodSandbox through {} ({} rounds; a sample is one CRI call, plugin chain + \
         containerd + runc)\n",
        r.runtime, r.rounds
    );
    let _ = writeln!(
        md,
        "| contender | concurrency | samples | p50 ms | p99 ms | mean ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for x in &r.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            x.contender, x.concurrency, x.samples, x.p50_ms, x.p99_ms, x.mean_ms
        );
    }
    md
}

/// Writes `cri.json` and `cri.md` under `out`.
///
/// # Errors
///
/// When a file cannot be written.
pub fn write(out: &Path, r: &CriBench) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("cri.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(out.join("cri.md"), markdown_of(r))?;
    Ok(())
}

/// The CRI stage of a run: RunPodSandbox latency, stored under `extra.cri` in
/// `results.json` and written to `cri.json`/`cri.md`.
pub struct CriStage;

impl crate::stage::Stage for CriStage {
    fn name(&self) -> &'static str {
        "cri"
    }

    fn run(&self, ctx: &mut crate::stage::Ctx<'_>) -> anyhow::Result<()> {
        let r = measure(&ctx.cli.plugin, ctx.cli.quick)?;
        write(&ctx.cli.out, &r)?;
        ctx.results
            .extra
            .insert("cri".into(), serde_json::to_value(&r)?);
        Ok(())
    }

    fn markdown(&self, results: &crate::results::Results) -> Option<String> {
        let r: CriBench = serde_json::from_value(results.extra.get("cri")?.clone()).ok()?;
        Some(format!(
            "## RunPodSandbox through containerd\n\n{}",
            markdown_of(&r)
        ))
    }
}
