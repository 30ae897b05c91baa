//! One datapath's world for a topology: the plugin chain as libcni runs it (the reference
//! chain, or smarter-cni with the datapath asked for), a client pod and a server pod holding
//! the hostPorts, the echo servers every case talks to, and the node agent where the uplink
//! changes under the run.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use smarter_testbed::{
    CniCall, EchoServer, FAR_SERVER_IP, LAN_HOST_IP, Netns, WAN_SERVER_IP, World, require_root,
};

use crate::common::{bin, result_ip};
use crate::probe;
use crate::topo::{ECHO_TCP, ECHO_UDP, HOST_TCP, HOST_UDP, TCP_PORT, Topo, UDP_PORT};

const REFERENCE_DIR: &str = "/usr/lib/cni";
/// Port-less protocols the wan echoes: GRE, ESP, SCTP, experimental.
pub const RAW: [u8; 4] = [47, 50, 132, 253];

/// A datapath under test; the reference chain is the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dp {
    Reference,
    Nft,
    Ebpf,
}

impl Dp {
    pub fn name(self) -> &'static str {
        match self {
            Dp::Reference => "reference",
            Dp::Nft => "nftables",
            Dp::Ebpf => "ebpf",
        }
    }
}

fn ports() -> Value {
    json!({"portMappings": [
        {"hostPort": HOST_TCP, "containerPort": TCP_PORT, "protocol": "tcp"},
        {"hostPort": HOST_UDP, "containerPort": UDP_PORT, "protocol": "udp"},
    ]})
}

/// Our network configuration in topology `t` (the `"uplink"` key as users write it there).
pub fn our_conf(dp: Dp, w: &World, t: Topo) -> Value {
    let mut conf = w.netconf("1.0.0");
    conf["datapath"] = json!(dp.name());
    if let Some(uplink) = t.uplink_key() {
        conf["uplink"] = json!(uplink);
    }
    conf
}

/// The plugins of `dp` for pod `with_ports` or not, as libcni would run them.
fn chain(dp: Dp, w: &World, t: Topo, with_ports: bool) -> Vec<(PathBuf, Value)> {
    let rc = if with_ports { ports() } else { json!({}) };
    if dp != Dp::Reference {
        let mut conf = our_conf(dp, w, t);
        conf["runtimeConfig"] = rc;
        return vec![(bin(), conf)];
    }
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

/// ADDs a pod through `dp`'s chain; returns its address.
fn add(dp: Dp, w: &World, t: Topo, id: &str, ns: &Path, with_ports: bool) -> Ipv4Addr {
    let mut prev = Value::Null;
    for (plugin, mut conf) in chain(dp, w, t, with_ports) {
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

/// A world of topology `t` for `dp` with a client pod and a server pod holding the hostPorts
/// (the server's address is returned), or `None` (with a SKIP line) when not root or the
/// reference plugins are missing.
pub fn setup(dp: Dp, t: Topo, label: &str) -> Option<(World, Ipv4Addr)> {
    if !require_root(label) {
        return None;
    }
    if dp == Dp::Reference && !Path::new(REFERENCE_DIR).join("portmap").exists() {
        smarter_testbed::skipped(&format!(
            "SKIP {label}: the reference plugins (containernetworking-plugins) are missing"
        ));
        return None;
    }
    // Opening the clone device creates nothing; it fails where the kernel has no tun driver.
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun");
    if t == Topo::L3 && tun.is_err() {
        smarter_testbed::skipped(&format!(
            "SKIP {label}: no TUN devices here (/dev/net/tun: {})",
            tun.err().map(|e| e.to_string()).unwrap_or_default()
        ));
        return None;
    }
    let mut w = World::new(label).expect("world");
    t.build(&mut w);
    let client = w.add_pod_ns("client").unwrap().path().to_path_buf();
    let server = w.add_pod_ns("server").unwrap().path().to_path_buf();
    add(dp, &w, t, "client", &client, false);
    let s = add(dp, &w, t, "server", &server, true);
    Some((w, s))
}

/// Which datapath the plugin says serves the network (from its attachment records).
pub fn active_datapath(w: &World) -> String {
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

/// Servers for every case: the wan echoes UDP, TCP and each raw protocol; the server pod
/// echoes UDP and TCP on the container ports; the far server and the sensor echo UDP (and the
/// sensor TCP).
pub struct Servers {
    stop: Arc<AtomicBool>,
    /// Echo threads whose sources are the wan's.
    wan: Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>>,
    /// Echo threads whose sources are the sensor's.
    lan: Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>>,
    /// The pods' and the far server's echo threads.
    others: Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>>,
    wan_tcp: EchoServer,
    lan_tcp: Option<EchoServer>,
    /// Datagrams the server pod's UDP echo received.
    pod_udp: Arc<AtomicUsize>,
    pod_tcp: EchoServer,
}

/// The sources the servers saw, by who saw them.
pub struct Sources {
    /// The wan's servers.
    pub wan: Vec<Ipv4Addr>,
    /// The sensor's servers.
    pub lan: Vec<Ipv4Addr>,
}

impl Servers {
    /// Starts them in `w` (the sensor's when the world has a LAN), plus a UDP echo on the wan
    /// server's `extra_udp` port when given (a stream's).
    pub fn start(w: &World, extra_udp: Option<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pod_udp = Arc::new(AtomicUsize::new(0));
        // Every socket is bound in its namespace before this returns: the first case finds
        // its server listening.
        let counted = |ns: &Netns, at: SocketAddrV4, hits: Arc<AtomicUsize>| {
            let stop = stop.clone();
            let s = ns.run(move || probe::bind_udp(at));
            std::thread::spawn(move || probe::udp_echo(&s, &stop, &hits))
        };
        let udp = |ns: &Netns, at: SocketAddrV4| counted(ns, at, Arc::default());
        let mut wan = vec![udp(w.wan(), SocketAddrV4::new(WAN_SERVER_IP, ECHO_UDP))];
        if let Some(port) = extra_udp {
            wan.push(udp(w.wan(), SocketAddrV4::new(WAN_SERVER_IP, port)));
        }
        for p in RAW {
            let stop = stop.clone();
            let s = w.wan().run(move || probe::bind_raw(p, WAN_SERVER_IP));
            wan.push(std::thread::spawn(move || {
                probe::raw_echo(&s, WAN_SERVER_IP, &stop)
            }));
        }
        let server = w.pod("server").unwrap();
        let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let mut others = vec![counted(server, any(UDP_PORT), pod_udp.clone())];
        let pod_tcp = EchoServer::tcp(server, Ipv4Addr::UNSPECIFIED, TCP_PORT);
        let far = w.far().expect("every topology has the far server");
        others.push(udp(far, SocketAddrV4::new(FAR_SERVER_IP, ECHO_UDP)));
        let (mut lan, mut lan_tcp) = (Vec::new(), None);
        if let Some(sensor) = w.lan() {
            lan.push(udp(sensor, SocketAddrV4::new(LAN_HOST_IP, ECHO_UDP)));
            lan_tcp = Some(EchoServer::tcp(sensor, LAN_HOST_IP, ECHO_TCP));
        }
        Self {
            stop,
            wan,
            lan,
            others,
            wan_tcp: EchoServer::tcp(w.wan(), WAN_SERVER_IP, ECHO_TCP),
            lan_tcp,
            pod_udp,
            pod_tcp,
        }
    }

    /// What the server pod's echoes received so far: datagrams and connections.
    pub fn pod_hits(&self) -> usize {
        self.pod_udp.load(Ordering::Relaxed) + self.pod_tcp.seen().len()
    }

    /// Stops the servers; returns the sources the wan's and the sensor's servers saw.
    pub fn stop(mut self) -> Sources {
        self.stop.store(true, Ordering::Relaxed);
        let join = |threads: Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>>| -> Vec<Ipv4Addr> {
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("server thread"))
                .collect()
        };
        let tcp_sources = |s: &EchoServer| -> Vec<Ipv4Addr> {
            s.seen()
                .iter()
                .filter_map(|a| match a.ip() {
                    std::net::IpAddr::V4(v4) => Some(v4),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        };
        let mut wan = join(std::mem::take(&mut self.wan));
        wan.extend(tcp_sources(&self.wan_tcp));
        let mut lan = join(std::mem::take(&mut self.lan));
        if let Some(s) = &self.lan_tcp {
            lan.extend(tcp_sources(s));
        }
        join(std::mem::take(&mut self.others));
        Sources { wan, lan }
    }
}

impl Drop for Servers {
    /// Stops the echo threads also when a run panics (they end within their read timeout).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A `smarter-agent` process in the world's node namespace (as the DaemonSet runs it: it
/// follows the uplink and drives the datapath), killed on drop.
pub struct Agent {
    _agent: crate::common::Agent,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent with `conf` written as the node's conflist; waits until it is ready.
    pub fn start(w: &World, conf: &Value) -> Self {
        let dir = tempfile::tempdir().expect("agent directory");
        let args = [
            "--gc-interval",
            "1",
            "--log",
            "warn",
            "--metrics-addr",
            "off",
        ];
        Self {
            _agent: crate::common::Agent::start(w, conf, dir.path(), &args),
            _dir: dir,
        }
    }
}
