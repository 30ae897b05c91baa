//! The model-based test: random sequences of ADD, DEL, the late DEL of a dead sandbox, GC,
//! an agent restart, SIGKILL in the middle of ADD or DEL, and a reboot, on one datapath.
//! After every step the world must match the model: every live pod fully reachable with its
//! hostPort ([`assert_live`]), nothing without a live owner ([`assert_owned_by_live`]).
//!
//! `SMARTER_MODEL_SEED=<n>` replays one sequence; `SMARTER_MODEL_STEPS=<n>` sets its length
//! (default 150 per datapath). A failure prints the seed and the steps so far.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smarter_testbed::{BootId, CniCall, World, spawn_plugin};

use super::checks::{Pod, add, assert_live, assert_owned_by_live, conf, late_del, with_port};
use super::common::{agent_command, bin, call, world};

/// hostPorts the model hands out (each held by at most one live pod).
const PORTS: [u16; 3] = [1883, 5683, 8883];
/// At most this many pods live at once (the reachability checks grow with the square).
const MAX_LIVE: usize = 4;

/// One step of a sequence.
#[derive(Debug, Clone, Copy)]
enum Step {
    Add,
    Del,
    LateDel,
    Gc,
    AgentRestart,
    KillAdd(u64),
    KillDel(u64),
    Reboot,
}

struct Model {
    w: World,
    conf: Value,
    live: Vec<Pod>,
    /// Sandboxes that died (a reboot) and whose DEL has not come yet.
    dead: Vec<(String, Option<u16>)>,
    rng: fastrand::Rng,
    seq: u32,
    dir: tempfile::TempDir,
}

/// Runs one seeded sequence on `dp` (`ebpf` or `iptables`).
pub fn run(dp: &'static str) {
    let test = format!("model_{dp}");
    let Some(w) = world(&test) else {
        return;
    };
    if dp == "nftables"
        && let Err(e) = super::common::nftables_usable(&w)
    {
        smarter_testbed::skipped(&format!("SKIP {test}: no nftables ({e})"));
        return;
    }
    let seed = std::env::var("SMARTER_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let steps: usize = std::env::var("SMARTER_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    eprintln!("{test}: seed {seed}, {steps} steps (replay: SMARTER_MODEL_SEED={seed})");
    let conf = conf(&w, dp);
    let mut m = Model {
        w,
        conf,
        live: Vec::new(),
        dead: Vec::new(),
        rng: fastrand::Rng::with_seed(seed),
        seq: 0,
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let mut done: Vec<Step> = Vec::new();
    for i in 0..steps {
        let step = m.pick();
        done.push(step);
        let context = format!("{test} seed {seed} step {i} {step:?} (steps {done:?})");
        m.apply(step, &context);
        assert_owned_by_live(&m.w, dp, &m.live, &context);
        assert_live(&m.w, &m.live, &context);
    }
    eprintln!("{test}: seed {seed}: {steps} steps held every invariant: {done:?}");
}

impl Model {
    fn pick(&mut self) -> Step {
        loop {
            let step = match self.rng.u8(..20) {
                0..=6 => Step::Add,
                7..=9 => Step::Del,
                10..=11 => Step::LateDel,
                12 => Step::Gc,
                13 => Step::AgentRestart,
                14..=15 => Step::KillAdd(self.rng.u64(0..120)),
                16..=17 => Step::KillDel(self.rng.u64(0..60)),
                _ => Step::Reboot,
            };
            let ok = match step {
                Step::Add | Step::KillAdd(_) => self.live.len() < MAX_LIVE,
                Step::Del | Step::KillDel(_) => !self.live.is_empty(),
                Step::LateDel => !self.dead.is_empty(),
                Step::Reboot => !self.live.is_empty(),
                Step::Gc | Step::AgentRestart => true,
            };
            if ok {
                return step;
            }
        }
    }

    fn free_port(&mut self) -> Option<u16> {
        let free: Vec<u16> = PORTS
            .iter()
            .copied()
            .filter(|p| !self.live.iter().any(|l| l.host_port == Some(*p)))
            .collect();
        (!free.is_empty() && self.rng.bool()).then(|| free[self.rng.usize(..free.len())])
    }

    fn new_ns(&mut self) -> String {
        self.seq += 1;
        let ns = format!("m{}", self.seq);
        self.w.add_pod_ns(&ns).expect("pod namespace");
        ns
    }

    fn apply(&mut self, step: Step, context: &str) {
        match step {
            Step::Add => {
                let ns = self.new_ns();
                let port = self.free_port();
                let id = format!("sb{}", self.seq);
                let pod = add(&self.w, &self.conf, &id, &ns, port)
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                self.live.push(pod);
            }
            Step::Del => {
                let p = self.live.remove(self.rng.usize(..self.live.len()));
                self.del(&p, context);
            }
            Step::LateDel => {
                let (id, port) = self.dead.remove(self.rng.usize(..self.dead.len()));
                late_del(&self.w, &self.conf, &id, port)
                    .unwrap_or_else(|e| panic!("{context}: late {e}"));
            }
            Step::Gc => {
                let mut c = self.conf.clone();
                let valid: Vec<Value> = self
                    .live
                    .iter()
                    .map(|p| json!({"containerID": p.id, "ifname": "eth0"}))
                    .collect();
                c["cni.dev/valid-attachments"] = json!(valid);
                let out = call(&self.w, &CniCall::new("GC", &c));
                assert_eq!(
                    out.status, 0,
                    "{context}: GC: {}\n{}",
                    out.stdout, out.stderr
                );
            }
            Step::AgentRestart => self.agent_restart(context),
            Step::KillAdd(ms) => {
                let ns = self.new_ns();
                let port = self.free_port();
                let id = format!("sb{}", self.seq);
                let netns = self.w.pod(&ns).expect("pod namespace").path().to_path_buf();
                let c = CniCall::new("ADD", &with_port(&self.conf, port)).pod(&id, &netns);
                kill_after(&self.w, &c, Duration::from_millis(ms));
                // The runtime's answer to an ADD that never returned: DEL, then (maybe) retry.
                self.del_call(&id, &netns, port, context);
                if self.rng.bool() {
                    let pod = add(&self.w, &self.conf, &id, &ns, port)
                        .unwrap_or_else(|e| panic!("{context}: ADD retried: {e}"));
                    self.live.push(pod);
                }
            }
            Step::KillDel(ms) => {
                let p = self.live.remove(self.rng.usize(..self.live.len()));
                let c =
                    CniCall::new("DEL", &with_port(&self.conf, p.host_port)).pod(&p.id, &p.netns);
                kill_after(&self.w, &c, Duration::from_millis(ms));
                // The runtime retries a DEL that never returned.
                self.del(&p, context);
            }
            Step::Reboot => {
                let boot = BootId::New;
                self.w.reboot(boot).expect("reboot the world");
                // The kubelet starts a new sandbox for every pod, with the same hostPorts; the
                // old ones wait for containerd's late DEL.
                let old = std::mem::take(&mut self.live);
                for p in &old {
                    self.dead.push((p.id.clone(), p.host_port));
                }
                for p in old {
                    let ns = self.new_ns();
                    let id = format!("sb{}", self.seq);
                    let pod = add(&self.w, &self.conf, &id, &ns, p.host_port)
                        .unwrap_or_else(|e| panic!("{context}: ADD after the boot: {e}"));
                    self.live.push(pod);
                }
            }
        }
    }

    fn del(&mut self, p: &Pod, context: &str) {
        self.del_call(&p.id, &p.netns, p.host_port, context);
        self.w.remove_pod_ns(&p.netns);
    }

    fn del_call(&self, id: &str, netns: &std::path::Path, port: Option<u16>, context: &str) {
        let out = call(
            &self.w,
            &CniCall::new("DEL", &with_port(&self.conf, port)).pod(id, netns),
        );
        assert_eq!(
            out.status, 0,
            "{context}: DEL {id}: {}\n{}",
            out.stdout, out.stderr
        );
    }

    /// Starts the agent, waits until it is ready (it reconciles and writes the uplink first),
    /// and stops it: a restart as the DaemonSet does one.
    fn agent_restart(&self, context: &str) {
        let conf_path: PathBuf = self.dir.path().join("10-smartnet.conflist");
        let list = json!({"cniVersion": self.conf["cniVersion"], "name": "smartnet",
                          "plugins": [self.conf]});
        std::fs::write(&conf_path, list.to_string()).expect("write conflist");
        let health = self.dir.path().join("agent.health");
        let _ = std::fs::remove_file(&health);
        let mut agent = Killed(
            agent_command(&self.w, &conf_path, &health)
                .args(["--log", "warn", "--metrics-addr", "off"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start smarter-agent"),
        );
        let end = Instant::now() + Duration::from_secs(30);
        while !health.exists() {
            assert!(
                Instant::now() < end,
                "{context}: smarter-agent never became ready"
            );
            assert!(
                agent.0.try_wait().expect("agent status").is_none(),
                "{context}: smarter-agent exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.0.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = agent.0.wait().expect("agent exit");
        assert!(
            status.success(),
            "{context}: agent exit after SIGTERM: {status}"
        );
    }
}

/// A child killed and reaped on drop (a failing assertion leaves no process behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the plugin and SIGKILLs it after `after` (or finds it done).
fn kill_after(w: &World, c: &CniCall, after: Duration) {
    let mut child = Killed(spawn_plugin(w.node(), &bin(), c).expect("spawn the plugin"));
    std::thread::sleep(after);
    let _ = child.0.kill();
    let _ = child.0.wait();
}
