//! The contenders, each in its own namespace world: the upstream reference chain (Debian's
//! bridge + host-local + portmap with `ipMasq` and `hairpinMode`), smarter-cni with the
//! iptables and with the eBPF datapath, and the limit (bare veths, plain routing, no bridge, no
//! filtering, no NAT). A world has the shape of a [`Topology`]: the uplink alone, with a LAN
//! of sensors beside it, with a layer-3 uplink (a raw-IP modem) carrying the default route,
//! IPv6-only with a NAT64 in the wan ([`nat64`]: the CLAT's world, where the reference chain
//! has tayga on the node as its CLAT and the limit's pods speak IPv6 themselves), or
//! dual-stack ([`dual`]: the NAT66 world, where pods get an IPv6 ULA masqueraded to the node's
//! global address, and the limit's pods have global IPv6 addresses of their own).

pub mod dual;
pub mod nat64;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use smarter_testbed::topology::WAN_L3_IF;
use smarter_testbed::{
    CniCall, LAN_NODE_IP, NODE_DUAL_IP6, NODE_UPLINK_IP, NODE_UPLINK_IP6, Netns, World,
};

use crate::error::CallFailed;
use crate::plugin::run_measured;

/// Debian's reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";
/// The port pod 0 serves on, and its hostPort.
pub const POD_PORT: u16 = 80;
/// hostPort of pod `i` is `HOST_PORT_BASE + i`.
pub const HOST_PORT_BASE: u16 = 20000;

/// Which contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// bridge + host-local + portmap, iptables masquerade (the upstream project).
    Reference,
    /// smarter-cni, `datapath: iptables`.
    SmarterIptables,
    /// smarter-cni, `datapath: ebpf`.
    SmarterEbpf,
    /// Bare veths and routing.
    Limit,
}

impl Kind {
    /// Every contender, in report order.
    pub const ALL: [Kind; 4] = [
        Kind::Reference,
        Kind::SmarterIptables,
        Kind::SmarterEbpf,
        Kind::Limit,
    ];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reference => "reference",
            Kind::SmarterIptables => "smarter-iptables",
            Kind::SmarterEbpf => "smarter-ebpf",
            Kind::Limit => "limit",
        }
    }
}

/// The limit's pods' addresses (routed, not NATed: the far sides route them back to the node).
const LIMIT_PODS: &str = "10.98.0.0/16";

/// The shape of a contender's world besides its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The Ethernet uplink `uplink0` (the default route) to the wan, nothing else.
    Uplink,
    /// The uplink and a LAN with a sensor ([`World::add_lan`]): a second external interface,
    /// `lan0` with [`LAN_NODE_IP`].
    Lan,
    /// The uplink and a layer-3 uplink `wwan0` of this MTU ([`World::add_l3_uplink`]: TUN
    /// devices joined by a userspace relay) that carries the default route.
    L3Uplink(u32),
    /// The uplink IPv6-only with the wan's NAT64 ([`World::add_nat64`]); for the reference,
    /// tayga on the node as its CLAT ([`nat64::NodeClat`]); smarter-cni's CLAT translates to
    /// [`nat64::PREF64`].
    Nat64,
    /// The uplink dual-stack ([`World::add_ipv6`]: the node has a global IPv6 address and an
    /// IPv6 default route via the wan); the reference's bridge has an IPv6 range too
    /// ([`dual`]), smarter-cni its defaults (`ipv6: auto`).
    Dual,
}

/// One pod of a contender.
pub struct Pod {
    /// The address other pods and the wan reach it at.
    pub ip: Ipv4Addr,
    /// Its IPv6 address, when it got one (the CNI result's; the limit's own in a world with
    /// IPv6 on the uplink).
    pub ip6: Option<Ipv6Addr>,
}

/// A contender's world and pods.
pub struct Contender {
    /// Which one.
    pub kind: Kind,
    /// tayga on the node as the reference chain's CLAT ([`Topology::Nat64`]); stopped before
    /// the world goes (fields drop in order).
    pub node_clat: Option<nat64::NodeClat>,
    /// The namespaces.
    pub world: World,
    /// Pods added so far.
    pub pods: Vec<Pod>,
    plugin: PathBuf,
    /// Peak RSS (KiB) of the first plugin call (for smarter-ebpf without an agent: the ADD
    /// that loads and pins the programs).
    pub plugin_first_rss_kib: Option<u64>,
    /// Peak RSS (KiB) of any later plugin process.
    pub plugin_max_rss_kib: u64,
    /// Plugin calls (chains) made.
    pub plugin_calls: usize,
    /// Peak RSS (KiB) of the later plugin processes, by verb.
    pub plugin_max_rss_by_verb: std::collections::BTreeMap<String, u64>,
}

impl Contender {
    /// A fresh world for `kind` with only the uplink ([`Topology::Uplink`]).
    pub fn new(kind: Kind, plugin: &Path) -> anyhow::Result<Self> {
        Self::build(kind, plugin, Topology::Uplink)
    }

    /// A fresh world for `kind` in the shape of `topology`, built before any pod is added
    /// (the first ADD finds every external interface there).
    pub fn build(kind: Kind, plugin: &Path, topology: Topology) -> anyhow::Result<Self> {
        let label = match topology {
            Topology::Uplink => format!("bench-{}", kind.name()),
            Topology::Lan => format!("bench-{}-lan", kind.name()),
            Topology::L3Uplink(_) => format!("bench-{}-l3", kind.name()),
            Topology::Nat64 => format!("bench-{}-clat", kind.name()),
            Topology::Dual => format!("bench-{}-nat6", kind.name()),
        };
        let mut world = World::new(&label)?;
        match topology {
            Topology::Uplink => {}
            Topology::Lan => {
                world.add_lan()?;
            }
            Topology::L3Uplink(mtu) => world.add_l3_uplink(mtu)?,
            Topology::Nat64 => world.add_nat64()?,
            Topology::Dual => world.add_ipv6()?,
        }
        if kind == Kind::Limit {
            route_limit_pods(&world, topology)?;
        }
        let node_clat = if topology == Topology::Nat64 && kind == Kind::Reference {
            Some(nat64::NodeClat::start(&world)?)
        } else {
            None
        };
        Ok(Self {
            kind,
            node_clat,
            world,
            pods: Vec::new(),
            plugin: plugin.to_path_buf(),
            plugin_first_rss_kib: None,
            plugin_max_rss_kib: 0,
            plugin_calls: 0,
            plugin_max_rss_by_verb: std::collections::BTreeMap::new(),
        })
    }

    /// The pod's namespace.
    pub fn ns(&self, i: usize) -> &Netns {
        self.world
            .pod(&format!("p{i}"))
            .expect("pod namespace exists")
    }

    /// The address pod 0 reaches pod 1 at: its pod address, or for the limit the far end of a
    /// bare veth pair between the two namespaces.
    pub fn peer_ip(&self) -> Ipv4Addr {
        match self.kind {
            Kind::Limit => Ipv4Addr::new(10, 97, 0, 2),
            _ => self.pods[1].ip,
        }
    }

    /// Where the wan reaches pod `i`'s service: its hostPort on the node's uplink address
    /// (the limit: the pod itself, routed).
    pub fn host_port_target(&self, i: usize) -> SocketAddr {
        self.host_port_on(NODE_UPLINK_IP, i)
    }

    /// Where a host beside the node's address `node_ip` (the wan, the LAN) reaches pod `i`'s
    /// service: its hostPort on `node_ip` (the limit: the pod itself, routed).
    pub fn host_port_on(&self, node_ip: Ipv4Addr, i: usize) -> SocketAddr {
        match self.kind {
            Kind::Limit => SocketAddr::from((self.pods[i].ip, POD_PORT)),
            _ => SocketAddr::from((node_ip, HOST_PORT_BASE + i as u16)),
        }
    }

    /// Adds pod `i` with a hostPort; returns how long the CNI ADD took (zero for the limit).
    pub fn add_pod(&mut self) -> anyhow::Result<Duration> {
        let i = self.pods.len();
        let ns = self
            .world
            .add_pod_ns(&format!("p{i}"))?
            .path()
            .to_path_buf();
        let id = format!("bench{i}");
        let (ip, ip6, took) = match self.kind {
            Kind::Limit => {
                let ip = self.wire_bare(i)?;
                let ip6 = self.limit_has_ip6().then(|| nat64::limit_pod_ip6(i));
                (ip, ip6, Duration::ZERO)
            }
            _ => {
                let started = Instant::now();
                let result = self.cni("ADD", &id, &ns, i)?;
                let took = started.elapsed();
                let (ip, ip6) = result_ips(&result)?;
                (ip, ip6, took)
            }
        };
        self.pods.push(Pod { ip, ip6 });
        Ok(took)
    }

    /// Deletes pod `i` (CNI DEL; its namespace stays).
    pub fn del_pod(&mut self, i: usize) -> anyhow::Result<()> {
        let ns = self.ns(i).path().to_path_buf();
        self.cni("DEL", &format!("bench{i}"), &ns, i)?;
        Ok(())
    }

    /// Runs the network's plugins for `verb` as a runtime does; the final result for ADD.
    pub fn cni(&mut self, verb: &str, id: &str, ns: &Path, i: usize) -> anyhow::Result<Value> {
        let (result, rss) = run_chain(self.kind, &self.world, &self.plugin, verb, id, ns, i)?;
        self.plugin_calls += 1;
        match self.plugin_first_rss_kib {
            None => self.plugin_first_rss_kib = Some(rss),
            Some(_) => {
                self.plugin_max_rss_kib = self.plugin_max_rss_kib.max(rss);
                let by_verb = self
                    .plugin_max_rss_by_verb
                    .entry(verb.to_string())
                    .or_default();
                *by_verb = (*by_verb).max(rss);
            }
        }
        Ok(result)
    }

    /// Whether the limit's pods get IPv6 of their own: when the uplink has IPv6.
    fn limit_has_ip6(&self) -> bool {
        self.world.has_nat64() || self.world.has_ipv6()
    }

    /// The limit's pod: a veth straight to the node, routed (no bridge, no filter, no NAT).
    fn wire_bare(&self, i: usize) -> anyhow::Result<Ipv4Addr> {
        let node = self.world.node();
        let pod = self.ns(i);
        let (a, b) = (i / 64, (i % 64) * 4);
        let (host_ip, pod_ip) = (
            Ipv4Addr::new(10, 98, a as u8, b as u8 + 1),
            Ipv4Addr::new(10, 98, a as u8, b as u8 + 2),
        );
        let host = format!("bv{i}");
        node.exec(&[
            "ip",
            "link",
            "add",
            &host,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ])?;
        node.exec(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &host])?;
        node.exec(&["ip", "link", "set", &host, "up"])?;
        pod.exec(&["ip", "addr", "add", &format!("{pod_ip}/30"), "dev", "eth0"])?;
        pod.exec(&["ip", "link", "set", "eth0", "up"])?;
        pod.exec(&["ip", "route", "add", "default", "via", &host_ip.to_string()])?;
        if self.limit_has_ip6() {
            nat64::wire_limit_pod6(node, pod, &host, i)?;
        }
        if i == 1 {
            let p0 = self.ns(0);
            p0.exec(&[
                "ip",
                "link",
                "add",
                "ptp0",
                "type",
                "veth",
                "peer",
                "name",
                "ptp1",
                "netns",
                pod.name(),
            ])?;
            p0.exec(&["ip", "addr", "add", "10.97.0.1/30", "dev", "ptp0"])?;
            p0.exec(&["ip", "link", "set", "ptp0", "up"])?;
            pod.exec(&["ip", "addr", "add", "10.97.0.2/30", "dev", "ptp1"])?;
            pod.exec(&["ip", "link", "set", "ptp1", "up"])?;
        }
        Ok(pod_ip)
    }
}

/// The limit's plain routing: the node forwards, and whatever is on the far side of each
/// external interface routes the pods' own addresses back to the node (no NAT).
fn route_limit_pods(world: &World, topology: Topology) -> anyhow::Result<()> {
    let node_uplink = NODE_UPLINK_IP.to_string();
    match topology {
        Topology::Nat64 => nat64::route_limit_pods6(world, NODE_UPLINK_IP6)?,
        Topology::L3Uplink(_) => {
            world
                .wan()
                .exec(&["ip", "route", "add", LIMIT_PODS, "dev", WAN_L3_IF])?;
        }
        Topology::Uplink | Topology::Lan | Topology::Dual => {
            world
                .wan()
                .exec(&["ip", "route", "add", LIMIT_PODS, "via", &node_uplink])?;
            if topology == Topology::Dual {
                nat64::route_limit_pods6(world, NODE_DUAL_IP6)?;
            }
        }
    }
    if let (Topology::Lan, Some(lan)) = (topology, world.lan()) {
        lan.exec(&[
            "ip",
            "route",
            "add",
            LIMIT_PODS,
            "via",
            &LAN_NODE_IP.to_string(),
        ])?;
    }
    world
        .node()
        .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    Ok(())
}

/// Runs `kind`'s plugins for `verb` on pod `i` (`id`, `ns`) in `world` as libcni does: in
/// order for ADD, reversed for DEL, each later plugin getting the previous result. Returns the
/// final ADD result and the peak RSS (KiB) of the plugin processes.
///
/// # Errors
///
/// When a plugin fails or cannot run.
pub fn run_chain(
    kind: Kind,
    world: &World,
    plugin: &Path,
    verb: &str,
    id: &str,
    ns: &Path,
    i: usize,
) -> anyhow::Result<(Value, u64)> {
    let ports = json!({"portMappings": [{
        "hostPort": HOST_PORT_BASE + i as u16, "containerPort": POD_PORT, "protocol": "tcp"
    }]});
    let plugins: Vec<(PathBuf, Value)> = match kind {
        Kind::Reference => reference_chain(world, &ports),
        Kind::SmarterIptables | Kind::SmarterEbpf => {
            let mut conf = world.netconf("1.0.0");
            conf["datapath"] = json!(if kind == Kind::SmarterEbpf {
                "ebpf"
            } else {
                "iptables"
            });
            conf["runtimeConfig"] = ports;
            if world.has_nat64() {
                // The prefix every contender of the CLAT world sends to (see `nat64`).
                conf["nat64Prefix"] = json!(format!("{}/96", nat64::PREF64));
            }
            vec![(plugin.to_path_buf(), conf)]
        }
        Kind::Limit => bail!("the limit has no CNI"),
    };
    let order: Vec<_> = if verb == "DEL" {
        plugins.into_iter().rev().collect()
    } else {
        plugins
    };
    let mut prev = Value::Null;
    let mut max_rss = 0;
    for (bin, mut conf) in order {
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let call = CniCall::new(verb, &conf).pod(id, ns);
        let (out, rss) = run_measured(world.node(), &bin, &call)?;
        max_rss = max_rss.max(rss);
        if out.status != 0 {
            return Err(CallFailed {
                call: format!("{verb} {} ({id})", bin.display()),
                reason: format!("exit status {}: {}", out.status, out.stdout.trim()),
                stderr: out.stderr,
            }
            .into());
        }
        if verb == "ADD" {
            prev = out.json;
        }
    }
    Ok((prev, max_rss))
}

/// The upstream smarter-cni configuration: bridge (gateway, masquerade, hairpin) with
/// host-local, then portmap; on a dual-stack uplink host-local has an IPv6 range too
/// ([`dual::reference_ipam`]), which `ipMasq` masquerades with ip6tables.
fn reference_chain(w: &World, ports: &Value) -> Vec<(PathBuf, Value)> {
    let base = |v: Value| {
        let mut v = v;
        v["cniVersion"] = json!("1.0.0");
        v["name"] = json!("smartnet");
        v
    };
    vec![
        (
            Path::new(REFERENCE_DIR).join("bridge"),
            base(json!({
                "type": "bridge", "bridge": "smartnet0", "isGateway": true, "ipMasq": true,
                "hairpinMode": true,
                "ipam": if w.has_ipv6() {
                    dual::reference_ipam(w)
                } else {
                    json!({"type": "host-local", "subnet": "172.39.0.0/16",
                           "gateway": "172.39.0.1", "routes": [{"dst": "0.0.0.0/0"}],
                           "dataDir": w.data_dir()})
                }
            })),
        ),
        (
            Path::new(REFERENCE_DIR).join("portmap"),
            base(
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true,
                        "runtimeConfig": ports}),
            ),
        ),
    ]
}

/// The pod's IPv4 address in a CNI ADD `result` (an error without one) and its IPv6 address,
/// if it has one (an entry of `ips` whose address contains `:`).
fn result_ips(result: &Value) -> anyhow::Result<(Ipv4Addr, Option<Ipv6Addr>)> {
    let addrs: Vec<&str> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next())
        .collect();
    let v4 = addrs
        .iter()
        .find_map(|a| a.parse().ok())
        .with_context(|| format!("no IPv4 address in {result}"))?;
    Ok((v4, addrs.iter().find_map(|a| a.parse().ok())))
}
