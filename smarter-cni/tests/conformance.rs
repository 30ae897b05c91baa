//! Differential conformance: one generated traffic matrix (`conformance/traffic.rs`) through the
//! upstream reference chain (bridge + host-local + portmap, iptables masquerade: the oracle),
//! smarter-cni's nftables datapath and its eBPF datapath, each in its own namespace world as
//! deployed. Every case's outcome on our datapaths must equal the reference's, or be one of
//! the deliberate differences listed in [`deliberate`] (and in the README). A capture on the
//! wan side asserts, over each whole run, that no frame with a pod's address ever left the node.

#[path = "conformance/capture.rs"]
mod capture;
mod common;
#[path = "conformance/traffic.rs"]
mod traffic;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capture::Capture;
use common::{bin, result_ip};
use serde_json::{Value, json};
use smarter_testbed::{
    CniCall, EchoServer, NODE_UPLINK_IP, Netns, WAN_SERVER_IP, World, require_root, spawn_in,
};
use traffic::{Case, Direction, Proto};

const REFERENCE_DIR: &str = "/usr/lib/cni";
const POD_SUBNET: [u8; 4] = [172, 39, 0, 0];
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 8081;
const HOST_TCP: u16 = 20000;
const HOST_UDP: u16 = 20001;
const WAN_UDP: u16 = 7;
const WAN_TCP: u16 = 8000;
const RAW: [u8; 4] = [47, 50, 132, 253];
const TIMEOUT: Duration = Duration::from_millis(700);
/// The pods' self-chosen IPv6 prefix in the IPv6 test (2001:db8:39::/48).
const POD_V6: [u8; 6] = [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x39];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dp {
    Reference,
    Nft,
    Ebpf,
}

impl Dp {
    fn name(self) -> &'static str {
        match self {
            Dp::Reference => "reference",
            Dp::Nft => "nftables",
            Dp::Ebpf => "ebpf",
        }
    }
}

/// Why our datapaths differ from the reference for a case, when they do on purpose.
fn deliberate(dp: Dp, case: &Case) -> Option<&'static str> {
    match (dp, case.dir, case.proto) {
        // The reference forwards anything routed to a pod address; ours are node-local-only.
        (_, Direction::WanToPod, _) => {
            Some("node-local-only: unsolicited traffic to a pod is dropped")
        }
        (Dp::Ebpf, Direction::PodToWan, Proto::Raw(47)) if case.size < 8 => {
            Some("GRE under 8 bytes: the kernel's GRE tracker drops it, eBPF NATs it by address")
        }
        (Dp::Ebpf, Direction::PodToHostPort, Proto::Udp) if case.size > 1472 => Some(
            "hairpin hostPort with fragmented datagrams: eBPF hands fragments to the node, \
             which has no socket on the hostPort",
        ),
        _ => None,
    }
}

fn ports() -> Value {
    json!({"portMappings": [
        {"hostPort": HOST_TCP, "containerPort": TCP_PORT, "protocol": "tcp"},
        {"hostPort": HOST_UDP, "containerPort": UDP_PORT, "protocol": "udp"},
    ]})
}

/// The plugins of `dp` for pod `with_ports` or not, as libcni would run them.
fn chain(dp: Dp, w: &World, with_ports: bool) -> Vec<(PathBuf, Value)> {
    let rc = if with_ports { ports() } else { json!({}) };
    match dp {
        Dp::Reference => {
            let base = |mut v: Value| {
                v["cniVersion"] = json!("1.0.0");
                v["name"] = json!("smartnet");
                v
            };
            vec![
                (
                    Path::new(REFERENCE_DIR).join("bridge"),
                    base(json!({
                        "type": "bridge", "bridge": "smartnet0", "isGateway": true,
                        "ipMasq": true, "hairpinMode": true,
                        "ipam": {"type": "host-local", "subnet": "172.39.0.0/16",
                                 "gateway": "172.39.0.1", "routes": [{"dst": "0.0.0.0/0"}],
                                 "dataDir": w.data_dir()}
                    })),
                ),
                (
                    Path::new(REFERENCE_DIR).join("portmap"),
                    base(
                        json!({"type": "portmap", "capabilities": {"portMappings": true},
                                "snat": true, "runtimeConfig": rc}),
                    ),
                ),
            ]
        }
        Dp::Nft | Dp::Ebpf => {
            let mut conf = w.netconf("1.0.0");
            conf["datapath"] = json!(dp.name());
            conf["runtimeConfig"] = rc;
            vec![(bin(), conf)]
        }
    }
}

/// ADDs a pod through `dp`'s chain; returns its address.
fn add(dp: Dp, w: &World, id: &str, ns: &Path, with_ports: bool) -> Ipv4Addr {
    let mut prev = Value::Null;
    for (plugin, mut conf) in chain(dp, w, with_ports) {
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let out = w
            .cni(&plugin, &CniCall::new("ADD", &conf).pod(id, ns))
            .expect("run plugin");
        assert_eq!(
            out.status,
            0,
            "{}: ADD {id}: {}{}",
            dp.name(),
            out.stdout,
            out.stderr
        );
        prev = out.json;
    }
    result_ip(&prev)
}

/// A world for `dp` with a client pod and a server pod holding the hostPorts, or `None` (with a
/// SKIP line) when something the reference needs is missing.
fn setup(dp: Dp, label: &str) -> Option<(World, Ipv4Addr, Ipv4Addr)> {
    if !require_root(label) {
        return None;
    }
    if dp == Dp::Reference && !Path::new(REFERENCE_DIR).join("portmap").exists() {
        smarter_testbed::skipped(&format!(
            "SKIP {label}: the reference plugins (containernetworking-plugins) are missing"
        ));
        return None;
    }
    let mut w = World::new(label).expect("world");
    let client = w.add_pod_ns("client").unwrap().path().to_path_buf();
    let server = w.add_pod_ns("server").unwrap().path().to_path_buf();
    let c = add(dp, &w, "client", &client, false);
    let s = add(dp, &w, "server", &server, true);
    // The wan can route to the pod subnet (as a hostile or confused upstream would).
    w.wan().ip("route add 172.39.0.0/16 via 198.51.100.2");
    Some((w, c, s))
}

/// Which datapath the plugin says serves `ip` (from its attachment records).
fn active_datapath(w: &World) -> String {
    let dir = w.state_dir().join("smartnet");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path())
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(d) = v["datapath"].as_str()
        {
            found.push(d.to_owned());
        }
    }
    found.sort();
    found.dedup();
    found.join(",")
}

/// Servers for every case: the wan echoes UDP, TCP and each raw protocol; the server pod echoes
/// UDP and TCP on the container ports.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>>,
    _tcp: Vec<EchoServer>,
}

impl Servers {
    fn start(w: &World) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let udp = |ns: &Netns, at: SocketAddrV4| {
            let stop = stop.clone();
            spawn_in(ns, move || traffic::udp_echo(at, &stop))
        };
        threads.push(udp(w.wan(), SocketAddrV4::new(WAN_SERVER_IP, WAN_UDP)));
        let server = w.pod("server").unwrap();
        threads.push(udp(
            server,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, UDP_PORT),
        ));
        for p in RAW {
            let stop = stop.clone();
            threads.push(spawn_in(w.wan(), move || {
                traffic::raw_echo(p, WAN_SERVER_IP, &stop)
            }));
        }
        let tcp = vec![
            EchoServer::tcp(w.wan(), WAN_SERVER_IP, WAN_TCP),
            EchoServer::tcp(server, Ipv4Addr::UNSPECIFIED, TCP_PORT),
        ];
        std::thread::sleep(Duration::from_millis(100));
        Self {
            stop,
            threads,
            _tcp: tcp,
        }
    }

    /// Stops the servers; returns the sources the wan's servers saw.
    fn stop(self) -> Vec<Ipv4Addr> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = Vec::new();
        for (i, t) in self.threads.into_iter().enumerate() {
            let s = t.join().expect("server thread");
            // Index 1 is the server pod's own UDP echo.
            if i != 1 {
                seen.extend(s);
            }
        }
        seen
    }
}

/// Runs one case in `w`; whether the echo came back.
fn run_case(w: &World, server_ip: Ipv4Addr, case: &Case, salt: u8) -> bool {
    let port = |udp, tcp| match case.proto {
        Proto::Udp => udp,
        Proto::Tcp => tcp,
        _ => 0,
    };
    let (ns, to) = match case.dir {
        Direction::PodToWan => (
            w.pod("client").unwrap(),
            SocketAddrV4::new(WAN_SERVER_IP, port(WAN_UDP, WAN_TCP)),
        ),
        Direction::WanToPod => (
            w.wan(),
            SocketAddrV4::new(server_ip, port(UDP_PORT, TCP_PORT)),
        ),
        Direction::WanToHostPort => (
            w.wan(),
            SocketAddrV4::new(NODE_UPLINK_IP, port(HOST_UDP, HOST_TCP)),
        ),
        Direction::PodToHostPort => (
            w.pod("client").unwrap(),
            SocketAddrV4::new(NODE_UPLINK_IP, port(HOST_UDP, HOST_TCP)),
        ),
        Direction::NodeToHostPort => (
            w.node(),
            SocketAddrV4::new(NODE_UPLINK_IP, port(HOST_UDP, HOST_TCP)),
        ),
    };
    let case = *case;
    ns.run(move || traffic::probe(&case, to, salt, TIMEOUT))
}

/// The matrix through `dp`: outcome per case, the wan servers' sources, and the capture.
type Outcomes = BTreeMap<Case, (bool, bool)>;

/// The matrix through `dp`: per case whether it was answered and whether a frame with a pod's
/// address reached the wan during it; the wan servers' sources; the capture's totals.
fn run_matrix(dp: Dp) -> Option<(Outcomes, Vec<Ipv4Addr>, usize, Vec<capture::Leak>)> {
    let (w, _client, server_ip) = setup(dp, &format!("conformance_{}", dp.name()))?;
    if dp != Dp::Reference {
        assert_eq!(
            active_datapath(&w),
            dp.name(),
            "the datapath asked for is the one active"
        );
    }
    let servers = Servers::start(&w);
    let cap = Capture::start(w.wan(), POD_SUBNET, 16, POD_V6.to_vec());
    let mut outcomes = BTreeMap::new();
    let filter = std::env::var("CONFORMANCE_FILTER").unwrap_or_default();
    let cases: Vec<Case> = traffic::matrix()
        .into_iter()
        .filter(|c| format!("{c:?}").contains(&filter))
        .collect();
    for (i, case) in cases.iter().enumerate() {
        let before = cap.leaked();
        let answered = run_case(&w, server_ip, case, i as u8);
        // Every frame of the case read before the leak count is taken.
        cap.sync(w.wan());
        outcomes.insert(*case, (answered, cap.leaked() > before));
    }
    // Let stragglers (late fragments, retransmissions) reach the capture.
    std::thread::sleep(Duration::from_millis(300));
    let (frames, leaks) = cap.stop();
    let seen = servers.stop();
    Some((outcomes, seen, frames, leaks))
}

fn summary(outcomes: &Outcomes) -> String {
    let ok = outcomes.values().filter(|v| v.0).count();
    if std::env::var_os("CONFORMANCE_VERBOSE").is_some() {
        for (c, v) in outcomes {
            eprintln!("  {c:?} => {v:?}");
        }
    }
    format!(
        "{} cases, {ok} answered, {} not",
        outcomes.len(),
        outcomes.len() - ok
    )
}

fn conformance(dp: Dp, reference: &Outcomes, ref_frames: usize, ref_leaks: &[capture::Leak]) {
    let Some((ours, seen, frames, leaks)) = run_matrix(dp) else {
        return;
    };
    eprintln!(
        "reference: {}; {ref_frames} frames captured, {} with a pod source",
        summary(reference),
        ref_leaks.len()
    );
    eprintln!(
        "{}: {}; {frames} frames captured, {} with a pod source",
        dp.name(),
        summary(&ours),
        leaks.len()
    );
    assert!(frames > 1000, "the capture saw the run ({frames} frames)");
    assert!(
        leaks.is_empty(),
        "{}: frames with a pod's address left the node: {:?}",
        dp.name(),
        &leaks[..leaks.len().min(20)]
    );
    for src in &seen {
        assert_eq!(
            *src,
            NODE_UPLINK_IP,
            "{}: the wan saw only the uplink address",
            dp.name()
        );
    }
    let mut unexplained = Vec::new();
    let mut deliberate_seen = 0;
    let mut ref_leaked = 0;
    for (case, &(want, leaked)) in reference {
        let got = ours[case].0;
        if got == want {
            continue;
        }
        if leaked {
            // The kernel's conntrack could not track it (e.g. SCTP without a valid header), so
            // the reference forwarded it with the pod's address and the wan's route brought the
            // answer back: not an outcome to copy. Ours translate it or drop it (no leak, as
            // asserted above).
            ref_leaked += 1;
            continue;
        }
        match deliberate(dp, case) {
            Some(_) => deliberate_seen += 1,
            None => unexplained.push(format!("{case:?}: reference {want}, {} {got}", dp.name())),
        }
    }
    eprintln!(
        "{}: {} cases equal the reference, {deliberate_seen} deliberate differences, \
         {ref_leaked} where only the reference's leak answered",
        dp.name(),
        reference.len() - deliberate_seen - ref_leaked - unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "{}: {} cases differ from the reference:\n{}",
        dp.name(),
        unexplained.len(),
        unexplained.join("\n")
    );
    // The matrix is not vacuous: the reference answers most cases, ours fail where it fails.
    assert!(reference.values().filter(|v| v.0).count() > reference.len() / 2);
}

/// The matrix through the reference, then both of our datapaths, compared case by case.
#[test]
fn conformance_matrix() {
    let Some((reference, _, ref_frames, ref_leaks)) = run_matrix(Dp::Reference) else {
        return;
    };
    for dp in [Dp::Nft, Dp::Ebpf] {
        conformance(dp, &reference, ref_frames, &ref_leaks);
    }
}

/// IPv6 a pod sends from an address it chose itself never leaves the node, even when the node
/// forwards IPv6; the reference (which does nothing about it) is the control that proves the
/// capture would see it.
#[test]
fn pod_ipv6_never_leaves() {
    for dp in [Dp::Reference, Dp::Nft, Dp::Ebpf] {
        let Some((w, _c, _s)) = setup(dp, &format!("conformance_v6_{}", dp.name())) else {
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
        let (_, leaks) = cap.stop();
        let (_, at_node) = sent.stop();
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
