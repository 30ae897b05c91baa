//! The memory stage: peak RSS of every plugin call (the first of a node apart: for
//! smarter-ebpf without an agent it loads and pins the programs), ADD and DEL, and the RSS of
//! the agent as deployed (`--dns`, metrics on) with the eBPF contender's pods attached.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use smarter_testbed::World;

use crate::contender::{Contender, Kind};
use crate::error::At;
use crate::report;
use crate::results::{Memory, Results};
use crate::stage::{Ctx, Stage};

/// Pods of the reference and iptables worlds (their plugins' memory does not grow with pods).
const OTHER_PODS: usize = 20;
/// Pods deleted again (their DELs measured) at the end.
const DELETED: usize = 5;

/// Plugin and agent memory.
pub struct MemoryStage;

impl Stage for MemoryStage {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn run(&self, ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
        let mut mem = Memory::default();
        for kind in [Kind::Reference, Kind::SmarterIptables, Kind::SmarterEbpf] {
            let k = kind.name();
            let pods = if kind == Kind::SmarterEbpf {
                ctx.plan.memory_pods
            } else {
                ctx.plan.memory_pods.min(OTHER_PODS)
            };
            eprintln!("bench: memory {k}: {} ADDs, {DELETED} DELs", pods + DELETED);
            let mut c = Contender::new(kind, &ctx.cli.plugin).context(At::new(k, "world"))?;
            for i in 0..pods + DELETED {
                c.add_pod()
                    .with_context(|| At::new(k, &format!("ADD pod {i}")))?;
            }
            for i in 1..=DELETED {
                c.del_pod(i)
                    .with_context(|| At::new(k, &format!("DEL pod {i}")))?;
            }
            mem.plugin_peak_rss_kib
                .insert(k.to_string(), c.plugin_max_rss_kib);
            if let Some(first) = c.plugin_first_rss_kib {
                mem.plugin_first_call_rss_kib.insert(k.to_string(), first);
            }
            mem.plugin_calls.insert(k.to_string(), c.plugin_calls);
            mem.plugin_peak_rss_by_verb_kib
                .insert(k.to_string(), c.plugin_max_rss_by_verb.clone());
            if kind == Kind::SmarterEbpf
                && let Some(agent) = &ctx.cli.agent
            {
                let (rss, peak) = agent_rss(&c.world, agent).context(At::new(k, "agent RSS"))?;
                mem.agent_rss_kib = Some(rss);
                mem.agent_peak_rss_kib = Some(peak);
                mem.agent_pods = Some(pods);
            }
            // Kept as it comes (a later contender's failure leaves these).
            ctx.results.memory = Some(mem.clone());
        }
        ctx.results.memory = Some(mem);
        Ok(())
    }

    fn markdown(&self, results: &Results) -> Option<String> {
        results.memory.as_ref().map(report::memory_markdown)
    }
}

/// The agent's resident memory after it settled with the world's pods attached, and its
/// peak (the start, when it reads the pins and the records), KiB.
fn agent_rss(world: &World, agent: &Path) -> anyhow::Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("smartnet.conflist");
    let mut plugin = world.netconf("1.0.0");
    plugin["datapath"] = serde_json::json!("ebpf");
    let list = serde_json::json!({"cniVersion": "1.0.0", "name": "smartnet", "plugins": [plugin]});
    std::fs::write(&conf, list.to_string())?;
    // As deployed: with the node-local DNS (its records of the world's pods), metrics on.
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 203.0.113.53\n")?;
    let mut child = world
        .node()
        .command(agent)
        .arg("--conf")
        .arg(&conf)
        .args(["--metrics-addr", "127.0.0.1:9402", "--log", "warn"])
        .args(["--dns", "--cri-socket", "none", "--resolv-conf"])
        .arg(&resolv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let exited = child.try_wait()?;
    let _ = child.kill();
    let _ = child.wait();
    if let Some(st) = exited {
        anyhow::bail!("the agent exited within 3 s: {st}");
    }
    let status = status?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} for the agent"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
