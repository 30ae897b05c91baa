//! The benchmark run: contenders built, workloads interleaved over repetitions, scaling,
//! control plane and memory, then the report.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use smarter_cni::testbed::{WAN_SERVER_IP, World};

use crate::Cli;
use crate::contender::{Contender, Kind, POD_PORT, run_chain};
use crate::control::{batched, percentile_us};
use crate::load::{RrServer, crr, have_iperf3, iperf3, rr, udp};
use crate::report::{self, ControlRow, Memory, Results, ScalingRow};

/// Sizes of one run.
struct Plan {
    secs: f64,
    reps: usize,
    scaling: Vec<usize>,
    control_n: usize,
    concurrency: [usize; 2],
}

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let plan = if cli.quick {
        Plan {
            secs: 0.5,
            reps: 1,
            scaling: vec![1, 4],
            control_n: 4,
            concurrency: [1, 4],
        }
    } else {
        Plan {
            secs: 5.0,
            reps: 5,
            scaling: vec![1, 50, 250],
            control_n: 40,
            concurrency: [1, 20],
        }
    };
    anyhow::ensure!(have_iperf3(), "iperf3 is missing: run `cargo xtask setup`");
    let mut contenders = Vec::new();
    for kind in Kind::ALL {
        progress(&format!("building the {} world", kind.name()));
        let mut c = Contender::new(kind, &cli.plugin)?;
        c.add_pod()?;
        c.add_pod()?;
        contenders.push(c);
    }
    let mut samples: BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>> = BTreeMap::new();
    let mut latency: BTreeMap<(&'static str, &'static str), Vec<(f64, f64)>> = BTreeMap::new();
    {
        let _servers: Vec<_> = contenders
            .iter()
            .flat_map(|c| {
                [
                    RrServer::start(c.ns(1), Ipv4Addr::UNSPECIFIED, 7000),
                    RrServer::start(c.ns(0), Ipv4Addr::UNSPECIFIED, POD_PORT),
                    RrServer::start(c.world.wan(), WAN_SERVER_IP, 7001),
                ]
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut port = 5201;
        for rep in 0..plan.reps {
            for c in &contenders {
                let k = c.kind.name();
                progress(&format!("repetition {}/{}: {k}", rep + 1, plan.reps));
                port += 1;
                let g = iperf3(c.ns(0), c.ns(1), c.peer_ip(), port, plan.secs)
                    .with_context(|| format!("{k}: stream pod→pod"))?;
                push(&mut samples, "stream pod→pod", k, g);
                port += 1;
                let g = iperf3(c.ns(0), c.world.wan(), WAN_SERVER_IP, port, plan.secs)
                    .with_context(|| format!("{k}: stream pod→wan"))?;
                push(&mut samples, "stream pod→wan (NAT)", k, g);
                let r = rr(c.ns(0), SocketAddr::from((c.peer_ip(), 7000)), plan.secs)
                    .with_context(|| format!("{k}: rr pod→pod"))?;
                push(&mut samples, "rr pod→pod", k, r.per_s);
                latency
                    .entry(("rr pod→pod", k))
                    .or_default()
                    .push((r.p50_us, r.p99_us));
                let r = crr(c.ns(0), SocketAddr::from((WAN_SERVER_IP, 7001)), plan.secs)
                    .with_context(|| format!("{k}: crr pod→wan"))?;
                push(&mut samples, "crr pod→wan (NAT)", k, r.per_s);
                latency
                    .entry(("crr pod→wan (NAT)", k))
                    .or_default()
                    .push((r.p50_us, r.p99_us));
                port += 1;
                let pps = udp(
                    c.ns(0),
                    c.world.wan(),
                    SocketAddr::from((WAN_SERVER_IP, port)),
                    plan.secs,
                )
                .with_context(|| format!("{k}: udp"))?;
                push(&mut samples, "udp pod→wan (NAT)", k, pps);
                let r = rr(c.world.wan(), c.host_port_target(0), plan.secs)
                    .with_context(|| format!("{k}: hostPort"))?;
                push(&mut samples, "rr wan→hostPort", k, r.per_s);
                latency
                    .entry(("rr wan→hostPort", k))
                    .or_default()
                    .push((r.p50_us, r.p99_us));
            }
        }
    }
    let workloads = report::workloads(&samples, &latency);

    let scaling = scale(&mut contenders, &plan)?;
    let agent_rss_kib = match &cli.agent {
        Some(agent) => {
            let ebpf = contenders
                .iter()
                .find(|c| c.kind == Kind::SmarterEbpf)
                .expect("ebpf contender");
            Some((agent_rss(&ebpf.world, agent)?, ebpf.pods.len()))
        }
        None => None,
    };
    let plugin_peak_rss_kib: BTreeMap<String, u64> = contenders
        .iter()
        .filter(|c| c.kind != Kind::Limit)
        .map(|c| (c.kind.name().to_string(), c.plugin_max_rss_kib))
        .collect();
    let plugin_first_call_rss_kib: BTreeMap<String, u64> = contenders
        .iter()
        .filter(|c| c.kind != Kind::Limit)
        .filter_map(|c| Some((c.kind.name().to_string(), c.plugin_first_rss_kib?)))
        .collect();
    drop(contenders);

    let control = control_plane(&cli.plugin, &plan)?;
    let results = Results::new(
        cli.quick,
        plan.secs,
        plan.reps,
        workloads,
        scaling,
        control,
        Memory {
            plugin_peak_rss_kib,
            plugin_first_call_rss_kib,
            agent_rss_kib: agent_rss_kib.map(|a| a.0.0),
            agent_peak_rss_kib: agent_rss_kib.map(|a| a.0.1),
            agent_pods: agent_rss_kib.map(|a| a.1),
        },
    );
    report::write(&cli.out, &results)?;
    Ok(())
}

fn push(
    samples: &mut BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    workload: &'static str,
    contender: &'static str,
    value: f64,
) {
    samples
        .entry(workload)
        .or_default()
        .entry(contender)
        .or_default()
        .push(value);
}

/// NAT connect rate and hostPort request/response with more and more pods attached (each
/// with its own hostPort), for the three CNI contenders.
fn scale(contenders: &mut [Contender], plan: &Plan) -> anyhow::Result<Vec<ScalingRow>> {
    let mut rows = Vec::new();
    for c in contenders.iter_mut().filter(|c| c.kind != Kind::Limit) {
        let _hp = RrServer::start(c.ns(0), Ipv4Addr::UNSPECIFIED, POD_PORT);
        let _wan = RrServer::start(c.world.wan(), WAN_SERVER_IP, 7002);
        for &n in &plan.scaling {
            progress(&format!("scaling {}: {n} pods", c.kind.name()));
            while c.pods.len() < n.max(2) {
                c.add_pod()?;
            }
            std::thread::sleep(Duration::from_millis(200));
            let nat = crr(c.ns(0), SocketAddr::from((WAN_SERVER_IP, 7002)), plan.secs)?;
            let hp = rr(c.world.wan(), c.host_port_target(0), plan.secs)?;
            rows.push(ScalingRow {
                contender: c.kind.name().to_string(),
                pods: c.pods.len(),
                nat_crr_per_s: nat.per_s,
                hostport_rr_per_s: hp.per_s,
            });
        }
    }
    Ok(rows)
}

/// ADD and DEL latency at each concurrency, each contender in a fresh world.
fn control_plane(plugin: &Path, plan: &Plan) -> anyhow::Result<Vec<ControlRow>> {
    let mut rows = Vec::new();
    for kind in [Kind::Reference, Kind::SmarterIptables, Kind::SmarterEbpf] {
        for &conc in &plan.concurrency {
            progress(&format!(
                "control plane {}: {} ADD/DEL at concurrency {conc}",
                kind.name(),
                plan.control_n
            ));
            let mut world = World::new(&format!("bench-cp-{}", kind.name()))?;
            let nss: Vec<_> = (0..plan.control_n)
                .map(|i| Ok(world.add_pod_ns(&format!("c{i}"))?.path().to_path_buf()))
                .collect::<anyhow::Result<_>>()?;
            // Warm up (first load of programs or rules) outside the measurement.
            let warm = world.add_pod_ns("warm")?.path().to_path_buf();
            run_chain(kind, &world, plugin, "ADD", "warm", &warm, 999)?;
            let call = |verb: &'static str| {
                let (world, nss) = (&world, &nss);
                move |i: usize| -> anyhow::Result<Duration> {
                    let started = std::time::Instant::now();
                    run_chain(kind, world, plugin, verb, &format!("c{i}"), &nss[i], i)?;
                    Ok(started.elapsed())
                }
            };
            let mut adds = batched(plan.control_n, conc, &call("ADD"))?;
            let mut dels = batched(plan.control_n, conc, &call("DEL"))?;
            rows.push(ControlRow {
                contender: kind.name().to_string(),
                concurrency: conc,
                add_p50_ms: percentile_us(&mut adds, 50.0) / 1e3,
                add_p99_ms: percentile_us(&mut adds, 99.0) / 1e3,
                del_p50_ms: percentile_us(&mut dels, 50.0) / 1e3,
                del_p99_ms: percentile_us(&mut dels, 99.0) / 1e3,
            });
        }
    }
    Ok(rows)
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
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = child.kill();
    let _ = child.wait();
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

fn progress(what: &str) {
    eprintln!("bench: {what}");
}
