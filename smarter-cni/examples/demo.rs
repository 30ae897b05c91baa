//! A real gateway in namespaces: `cargo xtask demo` builds this and runs it as root.
//!
//! It builds a throwaway world (a `node` namespace playing the gateway, a `wan` namespace
//! playing the internet, pods), runs the `smarter-cni` binary exactly as a container
//! runtime would, shows what it built and that traffic flows, and removes it all again.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use smarter_cni::datapath::EbpfDatapath;
use smarter_cni::testbed::{
    CniCall, EchoServer, NODE_UPLINK_IP, WAN_SERVER_IP, World, require_root, tcp_roundtrip,
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
    let ping = |ns: &smarter_cni::testbed::Netns, to: Ipv4Addr| {
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

fn show_maps(world: &World, plugin: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if EbpfDatapath::open_existing(world.bpffs_dir(), "smartnet")?.is_none() {
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
