//! End to end with a real container runtime: Debian's podman (CNI backend, runc) runs
//! containers from a static busybox root file system on the `smartnet` network, inside the
//! test world's `node` namespace. Containers get addresses, reach each other and the simulated
//! internet through NAT, publish a port with `-p` (the `portMappings` capability) reachable from
//! the `wan` namespace, resolve each other by name through the node-local DNS (the resolv.conf
//! podman writes from the plugin's `dns` result), and leave nothing behind when removed or
//! killed.
//!
//! Skips with a message when podman, runc or busybox are not installed (`cargo xtask setup`
//! installs them).

mod common;
#[path = "dns/support.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use smarter_testbed::{EchoServer, NODE_UPLINK_IP, WAN_SERVER_IP, World, spawn_in};

const BUSYBOX: &str = "/bin/busybox";

/// podman instances with different roots still share one lock segment (`/dev/shm`): the
/// tests of this binary take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// podman confined to a scratch directory (storage, run root, CNI config and plugin dirs) and
/// to the world's node namespace. Removes every container on drop.
struct Podman {
    dir: tempfile::TempDir,
    node: PathBuf,
    network: String,
}

impl Podman {
    /// podman with the project's test conflist (1.0.0, the world's directories, hostPorts).
    fn new(w: &World) -> Self {
        let mut plugin = w.netconf("1.0.0");
        let obj = plugin.as_object_mut().unwrap();
        obj.remove("cniVersion");
        obj.remove("name");
        plugin["capabilities"] = json!({"portMappings": true});
        let list = json!({"cniVersion": "1.0.0", "name": "smartnet", "plugins": [plugin]});
        Self::with_conflist(w, &list)
    }

    /// podman whose CNI configuration directory holds `list` only.
    fn with_conflist(w: &World, list: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "rootfs/bin",
            "rootfs/etc",
            "rootfs/www",
            "cni/bin",
            "cni/net.d",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::copy(BUSYBOX, d.join("rootfs/bin/busybox")).unwrap();
        for applet in [
            "sh", "ip", "ping", "nc", "sleep", "httpd", "cat", "echo", "nslookup",
        ] {
            std::os::unix::fs::symlink("busybox", d.join("rootfs/bin").join(applet)).unwrap();
        }
        std::fs::write(d.join("rootfs/www/index.html"), "hello-from-pod\n").unwrap();
        std::os::unix::fs::symlink(bin(), d.join("cni/bin/smarter-cni")).unwrap();
        std::fs::write(d.join("cni/net.d/smartnet.conflist"), list.to_string()).unwrap();
        let conf = format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{0}/cni/bin\"]\n\
             network_config_dir = \"{0}/cni/net.d\"\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             runtime = \"runc\"\nevents_logger = \"file\"\n",
            d.display()
        );
        std::fs::write(d.join("containers.conf"), conf).unwrap();
        Self {
            dir,
            node: w.node().path().to_path_buf(),
            network: list["name"].as_str().expect("a network name").to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("nsenter")
            .arg(format!("--net={}", self.node.display()))
            .arg("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a detached container on `smartnet` running `cmd`.
    fn start(&self, name: &str, extra: &[&str], cmd: &[&str]) {
        let rootfs = self.dir.path().join("rootfs");
        let mut args = vec!["run", "-d", "--name", name, "--network", &self.network];
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        args.extend(extra);
        let rootfs = rootfs.to_str().unwrap().to_string();
        args.extend(["--rootfs", &rootfs]);
        args.extend(cmd);
        self.ok(&args);
    }

    fn ip(&self, name: &str) -> Ipv4Addr {
        let out = self.ok(&["exec", name, "ip", "-4", "-o", "addr", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address on {name}: {out}"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["system", "reset", "-f"]);
    }
}

fn installed() -> bool {
    let on_path = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    for tool in ["podman", "runc"] {
        if !on_path(tool) {
            missing.push(tool);
        }
    }
    if !Path::new(BUSYBOX).exists() {
        missing.push("busybox-static");
    }
    if missing.is_empty() {
        return true;
    }
    smarter_testbed::skipped(&format!(
        "SKIP podman_e2e: {} not installed (cargo xtask setup installs them)",
        missing.join(", ")
    ));
    false
}

fn http_get(w: &World, to: SocketAddr) -> Result<String, String> {
    spawn_in(w.wan(), move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        Ok(body)
    })
    .join()
    .map_err(|_| "client panicked".to_string())?
}

#[test]
fn podman_containers_on_smartnet() {
    if !installed() {
        return;
    }
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(w) = world("podman") else { return };
    let resolv = w.data_dir().with_file_name("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {WAN_SERVER_IP}\n")).unwrap();
    let _dns = support::DnsServer::start(w.node(), support::config(&w, &resolv));
    let pm = Podman::new(&w);
    pm.start(
        "web",
        &["-p", "8080:80"],
        &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    );
    pm.start("client", &[], &["/bin/sleep", "1000"]);
    let (web, client) = (pm.ip("web"), pm.ip("client"));
    assert_ne!(web, client);
    assert_eq!(node_veths(&w).len(), 2, "one host veth per container");

    // Container → container, and → the simulated internet through NAT.
    pm.ok(&[
        "exec",
        "client",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &web.to_string(),
    ]);
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let out = pm.ok(&[
        "exec",
        "client",
        "sh",
        "-c",
        &format!("echo through-nat | nc -w 2 {WAN_SERVER_IP} 8000"),
    ]);
    assert!(out.contains("through-nat"), "echo came back: {out:?}");
    assert_eq!(
        srv.seen().first().map(SocketAddr::ip),
        Some(IpAddr::V4(NODE_UPLINK_IP)),
        "the internet sees the uplink address"
    );

    // By name: podman wrote the plugin's `dns` result into the container's resolv.conf.
    let resolv_conf = pm.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv_conf.contains("nameserver 169.254.0.2"),
        "{resolv_conf}"
    );
    let looked_up = pm.ok(&["exec", "client", "nslookup", "web"]);
    assert!(
        looked_up.contains(&web.to_string()),
        "nslookup web: {looked_up}"
    );

    // `-p 8080:80` from the wan.
    let end = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&w, SocketAddr::from((NODE_UPLINK_IP, 8080))) {
            Ok(b) => break b,
            Err(e) if Instant::now() > end => panic!("published port: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(body.contains("hello-from-pod"), "{body}");

    // Removed and killed containers leave nothing behind.
    pm.ok(&["rm", "-f", "-t", "0", "web"]);
    pm.ok(&["kill", "client"]);
    pm.ok(&["rm", "-f", "-t", "0", "client"]);
    census_empty(&w);
}

fn census_empty(w: &World) {
    let end = Instant::now() + Duration::from_secs(10);
    while !node_veths(w).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_leaks(w, "after podman rm");
}

/// Every conflist example of the README through podman: ADD (`run -p`), traffic (to the
/// gateway, NAT to the wan, the published port from the wan when the example declares the
/// portMappings capability), DEL (`rm`) and an empty census. Read from the README's code
/// blocks, so the test follows the docs (podman 4.3 refuses a 1.1.0 conflist).
#[test]
fn readme_conflists_through_podman() {
    if !installed() {
        return;
    }
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(w) = world("podman_readme") else {
        return;
    };
    for (i, example) in readme_conflists().iter().enumerate() {
        let pm = Podman::with_conflist(&w, &with_world_dirs(&w, example));
        let ports = example["plugins"][0]["capabilities"]["portMappings"] == true;
        pm.start(
            "web",
            &["-p", "8080:80"],
            &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
        );
        let web = pm.ip("web");
        assert_eq!(web.octets()[..2], [172, 39], "example {i}: {web}");
        pm.ok(&["exec", "web", "ping", "-c", "1", "-W", "2", "172.39.0.1"]);
        let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
        let out = pm.ok(&[
            "exec",
            "web",
            "sh",
            "-c",
            &format!("echo through-nat | nc -w 2 {WAN_SERVER_IP} 8000"),
        ]);
        assert!(out.contains("through-nat"), "example {i}: {out:?}");
        assert_eq!(
            srv.seen().first().map(SocketAddr::ip),
            Some(IpAddr::V4(NODE_UPLINK_IP)),
            "example {i}: NAT"
        );
        if ports {
            let end = Instant::now() + Duration::from_secs(10);
            let body = loop {
                match http_get(&w, SocketAddr::from((NODE_UPLINK_IP, 8080))) {
                    Ok(b) => break b,
                    Err(e) if Instant::now() > end => panic!("example {i}: published port: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            };
            assert!(body.contains("hello-from-pod"), "example {i}: {body}");
        }
        pm.ok(&["rm", "-f", "-t", "0", "web"]);
        drop(pm);
        census_empty(&w);
    }
}
