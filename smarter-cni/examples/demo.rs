//! A real gateway in namespaces: `cargo xtask demo` builds this and runs it as root.
//!
//! It builds a throwaway world (a `node` namespace playing the gateway, a `wan` namespace
//! playing the internet, pods), runs the `smarter-cni` binary exactly as a container
//! runtime would, shows what it built and that traffic flows, and removes it all again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use smarter_cni::datapath::EbpfDatapath;
use smarter_cni::testbed::{CniCall, World, require_root};

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
    let conf = world.netconf("1.1.0");
    println!(
        "\n== network configuration (stdin of every call)\n{}",
        serde_json::to_string_pretty(&conf)?
    );

    let mut pods = Vec::new();
    for name in ["web", "db", "sensor"] {
        let ns = world.add_pod_ns(name)?.path().to_path_buf();
        let call = CniCall::new("ADD", &conf)
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

    println!("\n== traffic");
    let web = world.pod("web").ok_or("web")?;
    for (what, to) in [
        ("web → db", pods[1].2),
        ("web → gateway", Ipv4Addr::new(172, 39, 0, 1)),
    ] {
        let ok = web.succeeds(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &to.to_string()]);
        println!(
            "   {what} ({to}): {}",
            if ok { "reachable" } else { "UNREACHABLE" }
        );
    }

    println!("\n== pinned eBPF maps (what smarter-bpfctl will show)");
    if let Some(dp) = EbpfDatapath::open_existing(world.bpffs_dir(), "smartnet")? {
        for ep in dp.endpoints()? {
            let counters = dp.endpoint_counters(ep.host_ifindex)?.unwrap_or_default();
            println!(
                "   {:<12} {:<16} {}/{:<8} via {} (ifindex {}): {} packets, {} bytes from the pod",
                ep.ip,
                ep.container_id,
                ep.pod_namespace,
                ep.pod_name,
                ep.host_ifname,
                ep.host_ifindex,
                counters.0,
                counters.1
            );
        }
    }

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
