//! A real gateway in namespaces: `cargo xtask demo` builds this and runs it as root.
//!
//! It builds a throwaway world (a `node` namespace playing the gateway, a `wan` namespace
//! playing the internet, pods), runs the `smarter-cni` binary exactly as a container
//! runtime would, runs the node agent with its node-local DNS, shows what it built, that
//! traffic flows and that pods find each other by name, and removes it all again.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use smarter_cni::dns::query::make_query;

use smarter_cni::datapath::{self, DatapathKind};
use smarter_testbed::{
    CniCall, EchoServer, NODE_UPLINK_IP, Netns, WAN_SERVER_IP, World, require_root, spawn_in,
    tcp_roundtrip,
};

/// A range the pods must never reach (say, the gateway's LAN), half of the simulated internet.
const DENIED: &str = "203.0.113.128/25";
const DENIED_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !require_root("demo") {
        std::process::exit(1);
    }
    let plugin = plugin_path()?;
    println!("== smarter-cni demo: a gateway in network namespaces");
    println!("   plugin: {}", plugin.display());
    let mut world = World::new("demo")?;
    println!(
        "   node namespace {}, wan namespace {}, bpffs {}",
        world.node().name(),
        world.wan().name(),
        world.bpffs_dir().display()
    );
    let mut conf = world.netconf("1.1.0");
    conf["denyCIDRs"] = serde_json::json!([DENIED]);
    println!(
        "\n== network configuration (stdin of every call)\n{}",
        serde_json::to_string_pretty(&conf)?
    );

    let agent = Agent::start(&world, &conf, &plugin)?;

    let mut pods = Vec::new();
    for name in ["web", "db", "sensor"] {
        let ns = world.add_pod_ns(name)?.path().to_path_buf();
        let mut pod_conf = conf.clone();
        if name == "web" {
            // What a runtime passes for `hostPort: 8080` → `containerPort: 80`.
            pod_conf["runtimeConfig"] = serde_json::json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
            ]});
        }
        let call = CniCall::new("ADD", &pod_conf)
            .pod(&format!("ctr-{name}"), &ns)
            .args(&format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"));
        let out = world.cni(&plugin, &call)?;
        if out.status != 0 {
            return Err(format!("ADD {name} failed: {}", out.stdout).into());
        }
        let ip: Ipv4Addr = out.json["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or("no address in result")?;
        println!("\n== CNI ADD {name} → {ip}");
        if name == "web" {
            println!("{}", serde_json::to_string_pretty(&out.json)?);
        }
        pods.push((name, ns, ip));
    }

    show(
        "node: bridge and host veths",
        &["ip", "-br", "link"],
        world.node().path(),
    );
    show("pod web: interfaces", &["ip", "-br", "addr"], &pods[0].1);
    show("pod web: routes", &["ip", "route"], &pods[0].1);

    traffic(&world, &pods)?;
    names(&world, &pods);
    show_maps(&world, &plugin)?;

    let (name, ns, _) = &pods[2];
    let out = world.cni(
        &plugin,
        &CniCall::new("DEL", &conf).pod(&format!("ctr-{name}"), ns),
    )?;
    println!("\n== CNI DEL {name}: exit {}", out.status);
    show(
        "node after DEL",
        &["ip", "-br", "link"],
        world.node().path(),
    );
    let gone = resolve(world.pod("web").ok_or("web")?, "sensor.", RecordType::A);
    println!(
        "   web → `sensor` after its DEL: {}",
        if gone.is_empty() {
            "NXDOMAIN (gone at once)"
        } else {
            "STILL RESOLVES (unexpected)"
        }
    );
    drop(agent);
    println!("\n== removing the world (namespaces, bpffs, files)");
    drop(world);
    println!("   done: nothing was created outside the demo's own namespaces.");
    Ok(())
}

fn traffic(
    world: &World,
    pods: &[(&str, PathBuf, Ipv4Addr)],
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== traffic");
    let web = world.pod("web").ok_or("web")?;
    let db = world.pod("db").ok_or("db")?;
    let ping = |ns: &smarter_testbed::Netns, to: Ipv4Addr| {
        ns.succeeds(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &to.to_string()])
    };
    let verdict = |ok: bool| if ok { "reachable" } else { "UNREACHABLE" };
    println!(
        "   web → db ({}): {}",
        pods[1].2,
        verdict(ping(web, pods[1].2))
    );
    let gw = Ipv4Addr::new(172, 39, 0, 1);
    println!("   web → gateway ({gw}): {}", verdict(ping(web, gw)));

    let wan_srv = EchoServer::tcp(world.wan(), WAN_SERVER_IP, 8000);
    let t = Duration::from_secs(3);
    let to_wan = tcp_roundtrip(web, SocketAddr::from((WAN_SERVER_IP, 8000)), b"hi", t);
    let seen = wan_srv.seen().first().map(|p| p.ip().to_string());
    println!(
        "   web → internet server {WAN_SERVER_IP}:8000 (TCP): {} — the server saw {} (the uplink address: source NAT)",
        if to_wan.is_ok() { "ok" } else { "FAILED" },
        seen.as_deref().unwrap_or("nothing")
    );
    println!(
        "   web → internet {WAN_SERVER_IP} (ICMP echo): {}",
        verdict(ping(web, WAN_SERVER_IP))
    );
    println!(
        "   web → {DENIED_HOST} (in denyCIDRs {DENIED}): {}",
        if ping(web, DENIED_HOST) {
            "REACHABLE (unexpected)"
        } else {
            "blocked, counted as drop_deny"
        }
    );

    let _web_srv = EchoServer::tcp(web, Ipv4Addr::UNSPECIFIED, 80);
    let hp = SocketAddr::from((NODE_UPLINK_IP, 8080));
    let from_wan = tcp_roundtrip(world.wan(), hp, b"hostport", t);
    println!(
        "   internet → {hp} (hostPort of web:80): {}",
        if from_wan.is_ok() { "ok" } else { "FAILED" }
    );
    let hairpin = tcp_roundtrip(db, hp, b"hairpin", t);
    println!(
        "   db → {hp} (hairpin to web): {}",
        if hairpin.is_ok() { "ok" } else { "FAILED" }
    );
    world.wan().exec(&[
        "ip",
        "route",
        "add",
        "172.39.0.0/16",
        "via",
        &NODE_UPLINK_IP.to_string(),
    ])?;
    let inbound = world
        .wan()
        .succeeds(&["ping", "-c", "1", "-W", "1", &pods[0].2.to_string()]);
    println!(
        "   internet → web's pod address {} directly (even with a route): {}",
        pods[0].2,
        if inbound {
            "REACHABLE (unexpected)"
        } else {
            "blocked: node-local only"
        }
    );
    Ok(())
}

/// Pods and the node find each other by name through the agent's node-local DNS.
fn names(world: &World, pods: &[(&str, PathBuf, Ipv4Addr)]) {
    println!("\n== names (smarter-agent --dns on 169.254.0.2:53)");
    let Some(web) = world.pod("web") else {
        return;
    };
    for (asker, ns, name) in [
        ("web", web, "db."),
        ("web", web, "db.default.svc.cluster.local."),
        ("node", world.node(), "sensor.svc.cluster.local."),
    ] {
        let got = resolve(ns, name, RecordType::A);
        println!(
            "   {asker} → {name} A: {}",
            if got.is_empty() {
                "no answer".into()
            } else {
                got.join(", ")
            }
        );
    }
    let db_ip = pods[1].2.octets();
    let rev = format!(
        "{}.{}.{}.{}.in-addr.arpa.",
        db_ip[3], db_ip[2], db_ip[1], db_ip[0]
    );
    println!(
        "   web → {rev} PTR: {}",
        resolve(web, &rev, RecordType::PTR).join(", ")
    );
}

/// One query from inside `ns` to the node-local DNS; the A or PTR answers as text (waits up
/// to 2 s for the name to appear).
fn resolve(ns: &Netns, name: &str, qtype: RecordType) -> Vec<String> {
    let bytes = make_query(name, qtype).to_vec().unwrap_or_default();
    spawn_in(ns, move || {
        let end = Instant::now() + Duration::from_secs(2);
        let ask = || -> Option<Vec<String>> {
            let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .ok()?;
            sock.send_to(&bytes, "169.254.0.2:53").ok()?;
            let mut buf = [0u8; 1500];
            let n = sock.recv(&mut buf).ok()?;
            let m = Message::from_vec(&buf[..n]).ok()?;
            Some(
                m.answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0.to_string()),
                        RData::PTR(p) => Some(p.0.to_ascii()),
                        _ => None,
                    })
                    .collect(),
            )
        };
        loop {
            match ask() {
                Some(v) if !v.is_empty() || Instant::now() > end => return v,
                None if Instant::now() > end => return Vec::new(),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .join()
    .unwrap_or_default()
}

/// `smarter-agent --dns` in the node namespace, stopped with SIGTERM on drop.
struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(
        world: &World,
        conf: &serde_json::Value,
        plugin: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let list = serde_json::json!({"cniVersion": conf["cniVersion"], "name": "smartnet", "plugins": [conf]});
        let conflist = dir.path().join("05-smarter-cni.conflist");
        std::fs::write(&conflist, list.to_string())?;
        // The simulated internet has no resolver: names outside the cluster get SERVFAIL.
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {WAN_SERVER_IP}\n"))?;
        let health = dir.path().join("health");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", world.node().path().display()))
            .arg(plugin.with_file_name("smarter-agent"))
            .arg("--conf")
            .arg(&conflist)
            .args([
                "--dns",
                "--cri-socket",
                "none",
                "--metrics-addr",
                "off",
                "--log",
                "warn",
            ])
            .arg("--resolv-conf")
            .arg(&resolv)
            .arg("--health-file")
            .arg(&health)
            .stdout(Stdio::null())
            .spawn()?;
        let agent = Self { child, _dir: dir };
        let end = Instant::now() + Duration::from_secs(10);
        while !health.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("\n== smarter-agent started in the node namespace (uplink, conntrack GC, DNS)");
        Ok(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}

fn show_maps(world: &World, plugin: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let conf = smarter_cni::cni::NetConf {
        bpffs_dir: world.bpffs_dir().to_path_buf(),
        state_dir: world.state_dir(),
        ..smarter_cni::cni::NetConf::default()
    };
    if datapath::open_existing(&conf, DatapathKind::Ebpf)?.is_none() {
        println!("\n== (nftables datapath in use: no eBPF maps)");
        return Ok(());
    }
    let bpfctl = plugin.with_file_name("smarter-bpfctl");
    let dir = world.bpffs_dir().display().to_string();
    for (title, cmd) in [
        ("datapath status", "status"),
        ("attached pods", "endpoints"),
        ("hostPorts", "hostports"),
        ("conntrack / NAT table", "ct"),
        ("verdict counters (summed over CPUs)", "stats"),
    ] {
        let full = format!("{} --bpffs-dir {dir} {cmd}", bpfctl.display());
        let args: Vec<&str> = full.split(' ').collect();
        show(
            &format!("smarter-bpfctl {cmd}: {title}"),
            &args,
            world.node().path(),
        );
    }
    Ok(())
}

fn show(title: &str, cmd: &[&str], ns: &Path) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("--")
        .args(cmd)
        .output();
    println!("\n== {title}");
    if let Ok(o) = out {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            println!("   {l}");
        }
    }
}

/// The plugin binary sits next to the examples directory of the same profile.
fn plugin_path() -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(p) = std::env::var_os("SMARTER_CNI_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no profile directory")?;
    let p = dir.join("smarter-cni");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} not built (run `cargo xtask demo`)", p.display()).into())
    }
}
