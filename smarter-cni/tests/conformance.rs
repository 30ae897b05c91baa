//! Differential conformance: one generated traffic matrix (`conformance/traffic.rs`) through the
//! upstream reference chain (bridge + host-local + portmap, iptables masquerade: the oracle),
//! smarter-cni's nftables datapath and its eBPF datapath, each in its own namespace world as
//! deployed, in the topologies of a real gateway (`conformance/topo.rs`): a single Ethernet
//! uplink (`eth`, the whole matrix), an uplink and a LAN of sensors (`lan`), two uplinks with
//! fail-over under a running stream (`failover`, `conformance/failover.rs`), and a layer-3
//! raw-IP uplink as a cellular modem presents it (`l3`). Every case's outcome on our datapaths
//! must equal the reference's, or be one of the deliberate differences listed in
//! `compare::deliberate` (and in docs/datapath.md). Captures on the far side of every external
//! interface of the node assert, over each whole run, that no frame with a pod's address ever
//! left it.
//!
//! Each topology is its own test (`cargo test --test conformance conformance_lan`);
//! `CONFORMANCE_FILTER=<text>` runs only the cases whose description contains it,
//! `CONFORMANCE_VERBOSE=1` prints every case's outcome.

#[path = "conformance/capture.rs"]
mod capture;
mod common;
#[path = "conformance/compare.rs"]
mod compare;
#[path = "conformance/failover.rs"]
mod failover;
#[path = "conformance/probe.rs"]
mod probe;
#[path = "conformance/run.rs"]
mod run;
#[path = "conformance/six.rs"]
mod six;
#[path = "conformance/six_probe.rs"]
mod six_probe;
#[path = "conformance/topo.rs"]
mod topo;
#[path = "conformance/traffic.rs"]
mod traffic;
#[path = "conformance/world.rs"]
mod world;

use std::time::Duration;

use capture::Capture;
use compare::{Row, compare, table};
use run::{Bench, POD_SUBNET, POD_V6, Run, problems};
use topo::Topo;
use world::Dp;

/// The matrix of `topo` through `dp`.
fn run_matrix(dp: Dp, topo: Topo) -> Option<Run> {
    let bench = Bench::start(dp, topo, None)?;
    let outcomes = bench.run_cases(&topo.cases());
    Some(bench.finish(outcomes))
}

/// Compares every run with the first (the reference's), prints the table, the known gaps
/// and `notes`, and fails with every broken invariant of every datapath.
fn judge(topo: Topo, runs: &[Run], mut failures: Vec<String>, notes: &str) {
    let reference = &runs[0].outcomes;
    let mut rows = Vec::new();
    for r in runs {
        let verdict = compare(r.dp, reference, &r.outcomes);
        failures.extend(problems(topo, r, &verdict));
        if std::env::var_os("CONFORMANCE_VERBOSE").is_some() {
            for (c, v) in &r.outcomes {
                eprintln!("  {} {c:?} => {v:?}", r.dp.name());
            }
        }
        rows.push(Row {
            dp: r.dp,
            verdict,
            links: r.links.clone(),
            leaks: r.leaks.len(),
        });
    }
    eprintln!("{}{notes}", table(topo, &rows));
    assert!(
        failures.is_empty(),
        "topology {}: {} problems:\n{}",
        topo.name(),
        failures.len(),
        failures.join("\n")
    );
}

/// The matrix of `topo` through the reference, then both of our datapaths, compared case by
/// case.
fn topology(topo: Topo) {
    let Some(reference) = run_matrix(Dp::Reference, topo) else {
        return;
    };
    let mut runs = vec![reference];
    runs.extend(
        [Dp::Nft, Dp::Ebpf]
            .into_iter()
            .filter_map(|dp| run_matrix(dp, topo)),
    );
    judge(topo, &runs, Vec::new(), "");
}

/// A single Ethernet uplink: the whole generated matrix.
#[test]
fn conformance_eth() {
    topology(Topo::Eth);
}

/// An uplink and a LAN with a sensor: pod → sensor (masqueraded to the node's LAN address),
/// sensor → hostPort on the LAN address, sensor → pod unsolicited; captures on both sides.
#[test]
fn conformance_lan() {
    topology(Topo::Lan);
}

/// A layer-3 (TUN, raw-IP, MTU 1428) uplink as the default route: the matrix subset through it,
/// fragments at its boundaries and PMTU discovery; the capture behind the TUN device.
#[test]
fn conformance_l3() {
    topology(Topo::L3);
}

/// Two uplinks: a stream while the wired uplink fails and comes back (timings printed), then
/// the core matrix while failed over; captures behind both uplinks.
#[test]
fn conformance_failover() {
    let mut runs = Vec::new();
    let mut notes = String::new();
    let mut failures = Vec::new();
    for dp in [Dp::Reference, Dp::Nft, Dp::Ebpf] {
        let Some((run, changes)) = failover::run(dp, true) else {
            return;
        };
        notes.push_str(&failover::describe(dp, &changes));
        for c in &changes {
            if !c.moved() {
                failures.push(format!(
                    "{}: after {} the stream did not follow the default route (first translated \
                     new flow {:?}, first echo {:?}, within the 10 s guard)",
                    dp.name(),
                    c.what,
                    c.first_natted,
                    c.first_echo
                ));
            }
        }
        runs.push(run);
    }
    // Without the agent: the plugin set both uplinks up at ADD; nothing may leak and new
    // flows must still follow the route.
    for dp in [Dp::Nft, Dp::Ebpf] {
        let Some((run, changes)) = failover::run(dp, false) else {
            return;
        };
        for line in failover::describe(dp, &changes).lines() {
            notes.push_str(&format!("(no agent) {line}\n"));
        }
        for c in changes.iter().filter(|c| !c.moved()) {
            failures.push(format!(
                "{} without the agent: after {} the stream did not follow the default route",
                dp.name(),
                c.what
            ));
        }
        if !run.leaks.is_empty() {
            failures.push(format!(
                "{} without the agent: {} frames with a pod's address left the node: {:?}",
                dp.name(),
                run.leaks.len(),
                &run.leaks[..run.leaks.len().min(5)]
            ));
        }
    }
    judge(Topo::Failover, &runs, failures, &notes);
}

/// The matrix in IPv6 on a dual-stack uplink (`conformance/six.rs`): every case as the reference
/// (bridge with an IPv6 range and `ipMasq`) does it, unsolicited traffic never reaching a pod,
/// no ULA source behind the uplink, the wan seeing only the node's global address.
#[test]
fn conformance_ipv6() {
    let Some(reference) = six::run(Dp::Reference) else {
        return;
    };
    six::print_verbose(&reference);
    let answered = reference.outcomes.values().filter(|o| o.answered).count();
    let mut failures = Vec::new();
    if answered <= reference.outcomes.len() / 2 {
        failures.push(format!(
            "reference answered only {answered} of {} cases: the matrix is vacuous",
            reference.outcomes.len()
        ));
    }
    let mut table = format!(
        "ipv6  reference: {answered}/{} answered, wan0 {} frames, {} with a ULA source\n",
        reference.outcomes.len(),
        reference.wan.frames,
        reference.wan.leaks
    );
    eprint!("{table}");
    for dp in [Dp::Nft, Dp::Ebpf] {
        let Some(r) = six::run(dp) else {
            return;
        };
        six::print_verbose(&r);
        let (equal, deliberate, problems) = six::judge(&reference, &r);
        table.push_str(&format!(
            "ipv6  {}: {equal} equal, {deliberate} deliberate, {} differ; wan0 {} frames, {} with \
             a ULA source\n",
            dp.name(),
            problems.len(),
            r.wan.frames,
            r.wan.leaks
        ));
        failures.extend(problems);
    }
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "ipv6: {} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// IPv6 a pod sends from an address it chose itself never leaves the node, even when the node
/// forwards IPv6; the reference (which does nothing about it) is the control that proves the
/// capture would see it.
#[test]
fn pod_ipv6_never_leaves() {
    for dp in [Dp::Reference, Dp::Nft, Dp::Ebpf] {
        let label = format!("conformance_v6_{}", dp.name());
        let Some((w, _server)) = world::setup(dp, Topo::Eth, &label) else {
            return;
        };
        let node = w.node();
        node.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
            .unwrap();
        node.ip("-6 addr add 2001:db8:100::2/64 dev uplink0 nodad");
        w.wan().ip("-6 addr add 2001:db8:100::1/64 dev wan0 nodad");
        w.wan()
            .ip("-6 route add 2001:db8:39::/64 via 2001:db8:100::2");
        let link = node
            .exec(&["ip", "-o", "link", "show", "smartnet0"])
            .unwrap();
        let link = String::from_utf8_lossy(&link.stdout).into_owned();
        let bridge_mac = link
            .split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("bridge MAC")
            .to_owned();
        let pod = w.pod("client").unwrap();
        pod.ip("-6 addr add 2001:db8:39::10/64 dev eth0 nodad");
        pod.ip("-6 route add 2001:db8:100::/64 dev eth0");
        pod.ip(&format!(
            "-6 neigh replace 2001:db8:100::1 lladdr {bridge_mac} dev eth0 nud permanent"
        ));
        let cap = Capture::start(w.wan(), POD_SUBNET, 16, POD_V6.to_vec());
        let sent = Capture::start(w.node(), [0; 4], 32, POD_V6.to_vec());
        pod.run(|| {
            let s = std::net::UdpSocket::bind("[2001:db8:39::10]:0").expect("bind v6");
            for _ in 0..5 {
                let _ = s.send_to(b"ipv6 from a pod", "[2001:db8:100::1]:7");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let leaks = cap.stop().leaks;
        let at_node = sent.stop().leaks;
        let v6 = leaks.iter().filter(|l| l.ethertype == 0x86dd).count();
        eprintln!(
            "{}: {} IPv6 frames from the pod seen in the node, {v6} reached the wan",
            dp.name(),
            at_node.len()
        );
        assert!(
            !at_node.is_empty(),
            "{}: the pod sent IPv6 (not vacuous)",
            dp.name()
        );
        if dp != Dp::Reference {
            assert_eq!(v6, 0, "{}: pod IPv6 left the node", dp.name());
        }
    }
}
