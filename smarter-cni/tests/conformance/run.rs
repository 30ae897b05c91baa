//! Running the matrix through one datapath in one topology: the world, a capture behind every
//! external interface of the node for the whole run, the servers, the cases; and the checks of
//! what a run saw.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use smarter_testbed::{LAN_NODE_IP, Netns, World};

use crate::capture::{Capture, IfCount, Leak};
use crate::compare::{Outcome, Outcomes, Verdict};
use crate::topo::{self, Topo};
use crate::traffic::{Case, Direction, Proto};
use crate::world::{self, Dp, Servers, Sources};

/// The pod subnet (172.39.0.0/16): a frame with such a source on a far side is a leak.
pub const POD_SUBNET: [u8; 4] = [172, 39, 0, 0];
/// The pods' self-chosen IPv6 prefix in the IPv6 test (2001:db8:39::/48).
pub const POD_V6: [u8; 6] = [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x39];
/// How long a probe waits for its answer.
pub const TIMEOUT: Duration = Duration::from_millis(700);

/// A run in progress.
pub struct Bench {
    pub dp: Dp,
    pub topo: Topo,
    // Field order is drop order: servers and captures before the world.
    servers: Servers,
    /// One capture per far-side namespace (`wan`, and `lan` when there is one).
    caps: Vec<(String, Capture)>,
    /// The server pod's address.
    pub server: Ipv4Addr,
    pub w: World,
}

/// What a finished run saw.
pub struct Run {
    pub dp: Dp,
    pub outcomes: Outcomes,
    pub sources: Sources,
    /// Per far-side interface of the node's external links (`ns/if`).
    pub links: Vec<(String, IfCount)>,
    /// Every leak on any captured interface.
    pub leaks: Vec<Leak>,
    /// The datapath the plugin's records name.
    pub active: String,
    /// The node's external addresses (what the far sides may see as a source).
    pub node_addrs: Vec<Ipv4Addr>,
}

/// The short name of a world namespace (`wan`, `lan`): the last `-` field of its name.
fn short(ns: &Netns) -> String {
    ns.name().rsplit('-').next().unwrap_or_default().to_owned()
}

impl Bench {
    /// Builds the world of `topo` for `dp` and starts the captures (tapping UDP port `tap`
    /// on the wan side when given) and the servers; `None` when the test skips.
    pub fn start(dp: Dp, topo: Topo, tap: Option<u16>) -> Option<Self> {
        let label = format!("conformance_{}_{}", topo.name(), dp.name());
        let (w, server) = world::setup(dp, topo, &label)?;
        let mut caps = Vec::new();
        let mut far: Vec<&Netns> = Vec::new();
        for l in w.external_links() {
            if !far.iter().any(|n| n.name() == l.far_ns.name()) {
                far.push(l.far_ns);
            }
        }
        for ns in far {
            let t = if short(ns) == "wan" { tap } else { None };
            let c = Capture::start_tapping(ns, POD_SUBNET, 16, POD_V6.to_vec(), t);
            caps.push((short(ns), c));
        }
        let servers = Servers::start(&w, tap);
        Some(Self {
            dp,
            topo,
            servers,
            caps,
            server,
            w,
        })
    }

    /// The namespace a case's sender runs in.
    pub fn ns(&self, who: &str) -> &Netns {
        match who {
            "wan" => self.w.wan(),
            "node" => self.w.node(),
            "lan" => self.w.lan().expect("a LAN"),
            pod => self.w.pod(pod).expect("a pod"),
        }
    }

    /// The wan side's capture.
    pub fn wan_capture(&self) -> &Capture {
        &self.caps.iter().find(|(n, _)| n == "wan").expect("wan").1
    }

    fn sync(&self) -> usize {
        for (name, cap) in &self.caps {
            cap.sync(self.ns(name));
        }
        self.caps.iter().map(|(_, c)| c.leaked()).sum()
    }

    /// Runs `cases` (those matching `CONFORMANCE_FILTER`); per case whether it was answered,
    /// whether a capture saw a leak meanwhile and, for unsolicited traffic to a pod, whether
    /// the pod received it.
    pub fn run_cases(&self, cases: &[Case]) -> Outcomes {
        let filter = std::env::var("CONFORMANCE_FILTER").unwrap_or_default();
        let mut outcomes = BTreeMap::new();
        for (i, case) in cases.iter().enumerate() {
            if !format!("{case:?}").contains(&filter) {
                continue;
            }
            let (who, to) = topo::endpoints(self.topo, case, self.server);
            let ns = self.ns(who);
            if case.proto == Proto::Pmtu {
                // Each PMTU case starts from a path MTU nobody has learned yet.
                for n in [ns, self.w.node()] {
                    n.exec(&["ip", "route", "flush", "cache"]).expect("flush");
                }
            }
            let before = self.sync();
            let hits = self.servers.pod_hits();
            let c = *case;
            let answered = ns.run(move || crate::probe::probe(&c, to, i as u8, TIMEOUT));
            // Every frame of the case is read before the leak count is taken.
            let leaked = self.sync() > before;
            let unsolicited = matches!(case.dir, Direction::WanToPod | Direction::SensorToPod);
            let reached_pod = unsolicited && self.servers.pod_hits() > hits;
            outcomes.insert(
                *case,
                Outcome {
                    answered,
                    leaked,
                    reached_pod,
                },
            );
        }
        outcomes
    }

    /// Stops everything; what the run saw.
    pub fn finish(self, outcomes: Outcomes) -> Run {
        // Let stragglers (late fragments, retransmissions) reach the captures.
        std::thread::sleep(Duration::from_millis(300));
        let mut reports = BTreeMap::new();
        for (name, cap) in self.caps {
            reports.insert(name, cap.stop());
        }
        let sources = self.servers.stop();
        let mut links = Vec::new();
        let mut node_addrs = Vec::new();
        for l in self.w.external_links() {
            let ns = short(l.far_ns);
            let count = reports
                .get(&ns)
                .and_then(|r| r.per_if.get(l.far_if))
                .copied()
                .unwrap_or_default();
            links.push((format!("{ns}/{}", l.far_if), count));
            node_addrs.extend(l.node_ip);
        }
        let leaks = reports.into_values().flat_map(|r| r.leaks).collect();
        Run {
            dp: self.dp,
            outcomes,
            sources,
            links,
            leaks,
            active: world::active_datapath(&self.w),
            node_addrs,
        }
    }
}

/// What is wrong with run `r` of topology `topo` whose comparison with the reference is `v`:
/// one sentence per broken invariant (empty when all hold).
pub fn problems(topo: Topo, r: &Run, v: &Verdict) -> Vec<String> {
    let dp = r.dp.name();
    let mut out = Vec::new();
    for busy in topo.busy() {
        let frames = r
            .links
            .iter()
            .find(|(n, _)| n == busy)
            .map_or(0, |c| c.1.frames);
        if frames == 0 {
            out.push(format!(
                "{dp}: the capture on {busy} saw nothing (not vacuous?)"
            ));
        }
    }
    // The reference masquerades pod → LAN to the node's LAN address (the premise of the LAN
    // cases); ours must too.
    if r.sources.lan.iter().any(|s| *s != LAN_NODE_IP) {
        out.push(format!(
            "{dp}: the sensor saw sources other than {LAN_NODE_IP}: {:?}",
            r.sources.lan
        ));
    }
    if r.dp == Dp::Reference {
        let answered = r.outcomes.values().filter(|o| o.answered).count();
        if answered <= r.outcomes.len() / 2 {
            out.push(format!(
                "reference answered only {answered} of {} cases: the matrix is vacuous",
                r.outcomes.len()
            ));
        }
        return out;
    }
    let reached: Vec<String> = r
        .outcomes
        .iter()
        .filter(|(_, o)| o.reached_pod)
        .map(|(c, _)| c.label())
        .collect();
    if !reached.is_empty() {
        let msg = format!(
            "{dp}: node-local-only broken: unsolicited traffic reached the pod in {}",
            reached.join(", ")
        );
        out.push(msg);
    }
    if r.active != dp {
        out.push(format!("{dp}: the active datapath is {:?}", r.active));
    }
    if !r.leaks.is_empty() {
        let per: Vec<String> = r
            .links
            .iter()
            .filter(|(_, c)| c.leaks > 0)
            .map(|(n, c)| format!("{n}: {}", c.leaks))
            .collect();
        let msg = format!(
            "{dp}: {} frames with a pod's address left the node ({}); first: {:?}",
            r.leaks.len(),
            per.join(", "),
            &r.leaks[..r.leaks.len().min(5)]
        );
        out.push(msg);
    }
    // A leak that got an answer shows as a stranger too: judged with the leaks.
    let strangers: Vec<&Ipv4Addr> = r
        .sources
        .wan
        .iter()
        .filter(|s| !r.node_addrs.contains(s))
        .collect();
    if !strangers.is_empty() {
        out.push(format!(
            "{dp}: the wan saw sources other than the node's addresses: {:?}",
            &strangers[..strangers.len().min(10)]
        ));
    }
    if !v.unexplained.is_empty() {
        out.push(format!(
            "{dp}: {} cases differ from the reference:\n  {}",
            v.unexplained.len(),
            v.unexplained.join("\n  ")
        ));
    }
    out
}
