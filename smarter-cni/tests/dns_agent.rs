//! `smarter-agent --dns`: the agent serves node-local DNS from the network's conflist
//! (`nodeDns`, `clusterDomain`), counts queries in its metrics, and takes the listen address
//! off the bridge again on SIGTERM.

mod common;
#[path = "dns/support.rs"]
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;
use serde_json::json;
use smarter_testbed::{CniCall, World};
use support::*;

/// Node-namespace loopback: private to the world.
const METRICS: &str = "127.0.0.1:19402";
const DEADLINE: Duration = Duration::from_secs(15);

fn scrape(w: &World) -> String {
    smarter_testbed::scrape_metrics(w.node(), METRICS)
}

fn listen_address_on_bridge(w: &World, ip: &str) -> bool {
    let out = w
        .node()
        .exec(&["ip", "-o", "addr", "show", "dev", "smartnet0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}/32"))
}

#[test]
fn agent_serves_dns_from_the_conflist() {
    let Some(mut w) = world("dns-agent") else {
        return;
    };
    // Another address and domain than the defaults, to see the agent take them from the file.
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("nftables");
    conf["nodeDns"] = json!("169.254.0.53");
    conf["clusterDomain"] = json!("edge.test");
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("05-smarter-cni.conflist");
    let list = json!({"cniVersion": "1.1.0", "name": "smartnet", "plugins": [conf.clone()]});
    std::fs::write(&conf_path, list.to_string()).unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 203.0.113.53\n").unwrap();

    let ns = w.add_pod_ns("web").unwrap().path().to_path_buf();
    let add = CniCall::new("ADD", &conf)
        .pod("ctr-web", &ns)
        .args("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0");
    let out = call(&w, &add);
    assert_eq!(out.status, 0, "ADD: {}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.json["dns"],
        json!({
            "nameservers": ["169.254.0.53"],
            "search": ["shop.svc.edge.test", "svc.edge.test", "edge.test"]
        })
    );
    let ip = result_ip(&out.json);

    let health = dir.path().join("agent.health");
    let mut agent = agent_command(&w, &conf_path, &health)
        .args(["--dns", "--cri-socket", "none", "--resolv-conf"])
        .arg(&resolv)
        .args(["--metrics-addr", METRICS, "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start smarter-agent");
    let guard = scopeguard(&mut agent);

    let server = "169.254.0.53:53".parse().unwrap();
    let end = Instant::now() + DEADLINE;
    let answer = loop {
        let m = query(
            w.pod("web").unwrap(),
            server,
            "web-0.shop.svc.edge.test.",
            RecordType::A,
            false,
        );
        if let Some(m) = m.filter(|m| addrs(m) == [ip]) {
            break m;
        }
        assert!(Instant::now() < end, "the agent never answered for web-0");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answer.answers[0].ttl, 5);
    let m = query(w.node(), server, "web-0.", RecordType::A, true).expect("TCP answer");
    assert_eq!(addrs(&m), [ip], "short name over TCP from the node");
    assert!(listen_address_on_bridge(&w, "169.254.0.53"));

    let text = scrape(&w);
    let local = text
        .lines()
        .find(|l| {
            l.starts_with(
                "smarter_dns_queries_total{network=\"smartnet\",transport=\"udp\",result=\"local\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(local.is_some_and(|n| n >= 1.0), "metrics: {text}");

    // SIGTERM: a clean exit that takes the address it added off the bridge.
    let child = guard.into_inner();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "agent exit after SIGTERM: {status}");
    assert!(!listen_address_on_bridge(&w, "169.254.0.53"));
    let out = call(&w, &CniCall::new("DEL", &conf).pod("ctr-web", &ns));
    assert_eq!(out.status, 0, "DEL: {}", out.stdout);
}

/// Kills the child on drop unless taken back with [`Guard::into_inner`].
struct Guard<'a>(Option<&'a mut std::process::Child>);

impl<'a> Guard<'a> {
    fn into_inner(mut self) -> &'a mut std::process::Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn scopeguard(c: &mut std::process::Child) -> Guard<'_> {
    Guard(Some(c))
}
