//! The matrix in IPv6, on a dual-stack uplink ([`World::add_ipv6`]): the reference chain with
//! an IPv6 range and `ipMasq` (which masquerades IPv6 too) is the oracle; smarter-cni's
//! datapaths give pods their ULA (`subnet6`, by default `fd00:ac27::/64`, `ipv6` left at
//! `auto`). Cases: pod → the wan's IPv6 server (UDP of every size around the IPv6 fragment
//! boundaries, TCP, ICMPv6 echo, hop limit 1), pod → pod, pod → its gateway, the wan → a pod
//! unsolicited (the deliberate difference: node-local-only), hostPorts on the node's global
//! IPv6 address from the wan, a pod (hairpin) and the node; some of them with a destination
//! or hop-by-hop options header on every packet. A capture behind the uplink
//! counts, over the whole run, frames with a ULA source.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use smarter_testbed::{CniCall, EchoServer, NODE_DUAL_IP6, WAN_SERVER_IP6, World, require_root};

use crate::capture::{Capture, IfCount};
use crate::common::bin;
use crate::six_probe;
use crate::topo::{ECHO_TCP, ECHO_UDP, HOST_TCP, HOST_UDP, TCP_PORT, UDP_PORT};
use crate::world::{Dp, active_datapath};

/// smarter-cni's default `subnet6`, and the reference's IPv6 range (the same, so the two
/// compare address for address).
pub const SUBNET6: &str = "fd00:ac27::/64";
/// The pods' IPv6 gateway (the bridge).
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac27, 0, 0, 0, 0, 0, 1);
/// A frame whose IPv6 source starts with these bytes carries a pod's address.
const ULA: [u8; 8] = [0xfd, 0x00, 0xac, 0x27, 0, 0, 0, 0];
const TIMEOUT: Duration = Duration::from_millis(700);

/// Who sends a case's first packet, to where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    PodToWan,
    WanToPod,
    WanToHostPort,
    PodToHostPort,
    NodeToHostPort,
    PodToPod,
    PodToGateway,
}

/// The transport of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum P {
    Udp,
    Tcp,
    Echo,
}

/// One case: direction, transport, payload bytes, hop limit, the extension header the
/// sender's socket adds to every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Case6(pub Dir, pub P, pub usize, pub u8, pub X);

/// An extension header on every packet of a case's sender (a sticky socket option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum X {
    /// None.
    No,
    /// A destination options header (`IPV6_DSTOPTS`: behind a fragment header when the
    /// kernel fragments).
    Dst,
    /// A hop-by-hop options header (`IPV6_HOPOPTS`).
    Hbh,
}

/// The generated matrix. UDP sizes straddle the boundaries of a 1500-byte link in IPv6
/// (1452 = 1500 − 40 − 8 fits, 1453 fragments; 1232 is the minimum-MTU payload).
pub fn matrix() -> Vec<Case6> {
    let mut c = Vec::new();
    for size in [1, 512, 1232, 1452, 1453, 3000, 9000] {
        c.push(Case6(Dir::PodToWan, P::Udp, size, 64, X::No));
    }
    for size in [1, 1440, 100_000] {
        c.push(Case6(Dir::PodToWan, P::Tcp, size, 64, X::No));
    }
    for size in [56, 1452, 1453, 3000] {
        c.push(Case6(Dir::PodToWan, P::Echo, size, 64, X::No));
    }
    c.push(Case6(Dir::PodToWan, P::Udp, 64, 1, X::No));
    c.push(Case6(Dir::PodToWan, P::Echo, 56, 1, X::No));
    for p in [P::Udp, P::Tcp, P::Echo] {
        c.push(Case6(Dir::WanToPod, p, 64, 64, X::No));
    }
    for (dir, sizes) in [
        (Dir::WanToHostPort, &[64usize, 3000][..]),
        (Dir::PodToHostPort, &[64][..]),
        (Dir::NodeToHostPort, &[64][..]),
        (Dir::PodToPod, &[64, 3000][..]),
    ] {
        for &size in sizes {
            c.push(Case6(dir, P::Udp, size, 64, X::No));
        }
        c.push(Case6(dir, P::Tcp, 64, 64, X::No));
    }
    c.push(Case6(Dir::PodToPod, P::Echo, 56, 64, X::No));
    c.push(Case6(Dir::PodToGateway, P::Echo, 56, 64, X::No));
    // Extension headers, which the kernel's masquerade walks.
    for (dir, p, size, x) in [
        (Dir::PodToWan, P::Udp, 64, X::Dst),
        (Dir::PodToWan, P::Udp, 3000, X::Dst),
        (Dir::PodToWan, P::Udp, 64, X::Hbh),
        (Dir::PodToWan, P::Tcp, 1440, X::Dst),
        (Dir::PodToWan, P::Tcp, 100_000, X::Hbh),
        (Dir::PodToWan, P::Echo, 56, X::Dst),
        (Dir::WanToHostPort, P::Udp, 64, X::Dst),
        (Dir::WanToHostPort, P::Tcp, 64, X::Hbh),
        (Dir::PodToHostPort, P::Udp, 64, X::Dst),
        (Dir::PodToPod, P::Tcp, 64, X::Dst),
    ] {
        c.push(Case6(dir, p, size, 64, x));
    }
    c
}

/// What one case did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome6 {
    pub answered: bool,
    pub reached_pod: bool,
    pub leaked: bool,
}

/// One datapath's run.
pub struct Run6 {
    pub dp: Dp,
    pub outcomes: BTreeMap<Case6, Outcome6>,
    pub wan: IfCount,
    pub sources: Vec<Ipv6Addr>,
    pub active: String,
}

fn ports() -> Value {
    json!({"portMappings": [
        {"hostPort": HOST_TCP, "containerPort": TCP_PORT, "protocol": "tcp"},
        {"hostPort": HOST_UDP, "containerPort": UDP_PORT, "protocol": "udp"},
    ]})
}

/// The chain of `dp` as libcni would run it for a pod (with the hostPorts or not).
fn chain(dp: Dp, w: &World, with_ports: bool) -> Vec<(std::path::PathBuf, Value)> {
    let rc = if with_ports { ports() } else { json!({}) };
    if dp != Dp::Reference {
        let mut conf = w.netconf("1.0.0");
        conf["datapath"] = json!(dp.name());
        conf["runtimeConfig"] = rc;
        return vec![(bin(), conf)];
    }
    let base = |mut v: Value| {
        v["cniVersion"] = json!("1.0.0");
        v["name"] = json!("smartnet");
        v
    };
    let dir = Path::new("/usr/lib/cni");
    vec![
        (
            dir.join("bridge"),
            base(json!({
                "type": "bridge", "bridge": "smartnet0", "isGateway": true,
                "ipMasq": true, "hairpinMode": true,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": "172.39.0.0/16", "gateway": "172.39.0.1"}],
                                    [{"subnet": SUBNET6, "gateway": GATEWAY6.to_string()}]],
                         "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                         "dataDir": w.data_dir()}
            })),
        ),
        (
            dir.join("portmap"),
            base(
                json!({"type": "portmap", "capabilities": {"portMappings": true},
                        "snat": true, "runtimeConfig": rc}),
            ),
        ),
    ]
}

/// ADDs a pod; returns its IPv6 address (the test fails when it got none).
fn add(dp: Dp, w: &World, id: &str, ns: &Path, with_ports: bool) -> Ipv6Addr {
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
    prev["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("{}: no IPv6 address in {prev}", dp.name()))
}

/// The matrix through `dp` on a dual-stack uplink; `None` (with a SKIP line) when not root or
/// the reference plugins are missing.
pub fn run(dp: Dp) -> Option<Run6> {
    let label = format!("conformance_ipv6_{}", dp.name());
    if !require_root(&label) {
        return None;
    }
    if dp == Dp::Reference && !Path::new("/usr/lib/cni/portmap").exists() {
        smarter_testbed::skipped(&format!(
            "SKIP {label}: the reference plugins (containernetworking-plugins) are missing"
        ));
        return None;
    }
    let mut w = World::new(&label).expect("world");
    w.add_ipv6().expect("dual-stack uplink");
    // An upstream that routes the pods' ULA to the node (so unsolicited traffic gets there).
    w.wan()
        .ip(&format!("-6 route add {SUBNET6} via {NODE_DUAL_IP6}"));
    let client = w.add_pod_ns("client").unwrap().path().to_path_buf();
    let server = w.add_pod_ns("server").unwrap().path().to_path_buf();
    add(dp, &w, "client", &client, false);
    let server6 = add(dp, &w, "server", &server, true);
    // Each pod's address is usable (duplicate address detection over) before the first case.
    for pod in ["client", "server"] {
        let ns = w.pod(pod).expect("pod");
        let to = SocketAddrV6::new(GATEWAY6, 0, 0, 0);
        let ready = (0..50).any(|_| {
            ns.run(move || six_probe::echo(to, 8, (64, X::No), 0, Duration::from_millis(100)))
        });
        assert!(
            ready,
            "{}: {pod} cannot reach {GATEWAY6} within 5 s",
            dp.name()
        );
    }
    let cap = Capture::start(w.wan(), [172, 39, 0, 0], 16, ULA.to_vec());
    let any = Ipv6Addr::UNSPECIFIED;
    let wan_udp = EchoServer::udp(w.wan(), WAN_SERVER_IP6, ECHO_UDP);
    let wan_tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP6, ECHO_TCP);
    let pod_ns = w.pod("server").expect("server pod");
    let pod_udp = EchoServer::udp(pod_ns, any, UDP_PORT);
    let pod_tcp = EchoServer::tcp(pod_ns, any, TCP_PORT);
    let hits = || pod_udp.seen().len() + pod_tcp.seen().len();
    let mut outcomes = BTreeMap::new();
    for (i, case) in matrix().into_iter().enumerate() {
        let Case6(dir, p, size, hops, x) = case;
        let (who, ip, ports) = match dir {
            Dir::PodToWan => ("client", WAN_SERVER_IP6, (ECHO_UDP, ECHO_TCP)),
            Dir::WanToPod => ("wan", server6, (UDP_PORT, TCP_PORT)),
            Dir::WanToHostPort => ("wan", NODE_DUAL_IP6, (HOST_UDP, HOST_TCP)),
            Dir::PodToHostPort => ("client", NODE_DUAL_IP6, (HOST_UDP, HOST_TCP)),
            Dir::NodeToHostPort => ("node", NODE_DUAL_IP6, (HOST_UDP, HOST_TCP)),
            Dir::PodToPod => ("client", server6, (UDP_PORT, TCP_PORT)),
            Dir::PodToGateway => ("client", GATEWAY6, (0, 0)),
        };
        let ns = match who {
            "wan" => w.wan(),
            "node" => w.node(),
            pod => w.pod(pod).expect("pod"),
        };
        let port = match p {
            P::Udp => ports.0,
            P::Tcp => ports.1,
            P::Echo => 0,
        };
        let to = SocketAddrV6::new(ip, port, 0, 0);
        cap.sync(w.wan());
        let (leaks, before) = (cap.leaked(), hits());
        let salt = i as u8;
        let answered = ns.run(move || match p {
            P::Udp => six_probe::udp(to, size, (hops, x), salt, TIMEOUT),
            P::Tcp => six_probe::tcp(to, size, (hops, x), salt, TIMEOUT),
            P::Echo => six_probe::echo(to, size, (hops, x), salt, TIMEOUT),
        });
        cap.sync(w.wan());
        let reached_pod = dir == Dir::WanToPod && hits() > before;
        let leaked = cap.leaked() > leaks;
        outcomes.insert(
            case,
            Outcome6 {
                answered,
                reached_pod,
                leaked,
            },
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = cap.stop();
    let mut sources: Vec<Ipv6Addr> = wan_udp
        .seen()
        .iter()
        .chain(wan_tcp.seen().iter())
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => Some(v6),
            std::net::IpAddr::V4(_) => None,
        })
        .collect();
    sources.sort();
    sources.dedup();
    Some(Run6 {
        dp,
        outcomes,
        wan: report.per_if.get("wan0").copied().unwrap_or_default(),
        sources,
        active: active_datapath(&w),
    })
}

/// With `CONFORMANCE_VERBOSE` set, prints every case's outcome of `r`.
pub fn print_verbose(r: &Run6) {
    if std::env::var_os("CONFORMANCE_VERBOSE").is_some() {
        for (c, o) in &r.outcomes {
            eprintln!("  {} {c:?} => {o:?}", r.dp.name());
        }
    }
}

/// Compares `r` with the reference: (equal, deliberate, the broken invariants).
pub fn judge(reference: &Run6, r: &Run6) -> (usize, usize, Vec<String>) {
    let dp = r.dp.name();
    let (mut equal, mut deliberate, mut out) = (0, 0, Vec::new());
    for (case, o) in &r.outcomes {
        let want = reference.outcomes[case];
        if case.0 == Dir::WanToPod {
            // Node-local-only: the reference forwards unsolicited traffic to pods; ours never.
            if o.answered || o.reached_pod {
                out.push(format!("{dp}: {case:?} reached the pod (node-local-only)"));
            } else if want.answered || want.reached_pod {
                deliberate += 1;
            } else {
                equal += 1;
            }
        } else if o.answered == want.answered {
            equal += 1;
        } else {
            out.push(format!(
                "{dp}: {case:?} answered {} where the reference answered {}",
                o.answered, want.answered
            ));
        }
    }
    if r.wan.leaks > 0 {
        out.push(format!(
            "{dp}: {} frames with a ULA source on wan0",
            r.wan.leaks
        ));
    }
    if r.wan.frames == 0 {
        out.push(format!(
            "{dp}: the capture on wan0 saw nothing (not vacuous?)"
        ));
    }
    if let Some(s) = r.sources.iter().find(|s| **s != NODE_DUAL_IP6) {
        out.push(format!("{dp}: the wan's servers saw the source {s}"));
    }
    if r.active != dp {
        out.push(format!("{dp}: the active datapath is {:?}", r.active));
    }
    (equal, deliberate, out)
}
