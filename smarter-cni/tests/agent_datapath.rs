//! The real `smarter-agent` binary driving both datapaths in a namespace world: the uplink
//! address changes under it (new flows leave with the new address), the uplink flaps under a
//! TCP stream, a new interface appears (a USB LTE stick) and takes the default route, and the
//! agent is restarted — gracefully and by SIGKILL — under a running TCP stream; the streams
//! must survive.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use smarter_testbed::{
    EchoServer, NODE_UPLINK_IP, UPLINK, WAN_ROUTER_IP, WAN_SERVER_IP, World, spawn_in,
    tcp_roundtrip,
};

/// Bounds a wait; never asserts speed.
const DEADLINE: Duration = Duration::from_secs(15);
const NEW_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

/// The agent as these tests run it: conntrack GC every second.
fn start_agent(w: &World, conf: &Value, dir: &Path) -> Agent {
    Agent::start(w, conf, dir, &["--gc-interval", "1", "--log", "warn"])
}

fn setup(test: &str, dp: &str) -> Option<(World, Value, tempfile::TempDir)> {
    let mut w = world(test)?;
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    let ns = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "ctr0", &ns);
    Some((w, conf, tempfile::tempdir().unwrap()))
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn uplink_address_change(dp: &str) {
    let Some((w, conf, dir)) = setup("agent_uplink_addr", dp) else {
        return;
    };
    let _agent = start_agent(&w, &conf, dir.path());
    let pod = w.pod("pod0").unwrap();
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    tcp_roundtrip(
        pod,
        sa(WAN_SERVER_IP, 8000),
        b"before",
        Duration::from_secs(3),
    )
    .unwrap_or_else(|e| panic!("{dp}: {e}"));
    assert_eq!(srv.seen()[0].ip(), IpAddr::V4(NODE_UPLINK_IP));

    // DHCP hands out a new address: the new one comes first, the old one goes.
    let node = w.node();
    let sysctl = format!("net.ipv4.conf.{UPLINK}.promote_secondaries=1");
    node.exec(&["sysctl", "-qw", &sysctl]).unwrap();
    let new = format!("{NEW_UPLINK_IP}/24");
    let old = format!("{NODE_UPLINK_IP}/24");
    node.exec(&["ip", "addr", "add", &new, "dev", UPLINK])
        .unwrap();
    node.exec(&["ip", "addr", "del", &old, "dev", UPLINK])
        .unwrap();
    let gw = WAN_ROUTER_IP.to_string();
    node.exec(&["ip", "route", "replace", "default", "via", &gw])
        .unwrap();

    let end = Instant::now() + DEADLINE;
    loop {
        let ok = tcp_roundtrip(
            pod,
            sa(WAN_SERVER_IP, 8000),
            b"after",
            Duration::from_secs(1),
        );
        if ok.is_ok() && srv.seen().last().map(SocketAddr::ip) == Some(IpAddr::V4(NEW_UPLINK_IP)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "{dp}: new flows never used {NEW_UPLINK_IP} (last: {ok:?}, seen {:?})",
            srv.seen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client streaming request/echo round trips through the NAT until stopped; counts them and
/// remembers the first error.
struct Stream {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Stream {
    fn start(w: &World) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = spawn_in(w.pod("pod0").unwrap(), move || {
            let to = sa(WAN_SERVER_IP, 8000);
            let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .map_err(|e| format!("connect: {e}"))?;
            // Generous: after an outage TCP retransmits with exponential backoff.
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let msg = [0x5a_u8; 1024];
            let mut buf = [0u8; 1024];
            while !s.load(Ordering::Relaxed) {
                conn.write_all(&msg).map_err(|e| format!("send: {e}"))?;
                conn.read_exact(&mut buf).map_err(|e| {
                    format!("receive after {} rounds: {e}", r.load(Ordering::Relaxed))
                })?;
                r.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });
        Self {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `more` further round trips happened.
    fn advance(&mut self, more: u64, what: &str) {
        let start = self.rounds();
        let end = Instant::now() + DEADLINE;
        while self.rounds() < start + more {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let err = self.thread.take().unwrap().join().unwrap();
                panic!("stream ended {what}: {err:?}");
            }
            assert!(Instant::now() < end, "stream stalled {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Stream {
    /// A failed assertion must not leave the client running (the echo server's drop would
    /// wait for it forever).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent_restart_keeps_stream(dp: &str) {
    let Some((w, conf, dir)) = setup("agent_restart", dp) else {
        return;
    };
    let _srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let agent = start_agent(&w, &conf, dir.path());
    let mut stream = Stream::start(&w);
    stream.advance(20, "before the restart");
    agent.stop(nix::sys::signal::Signal::SIGTERM);
    stream.advance(20, "while the agent was stopped");
    let agent = start_agent(&w, &conf, dir.path());
    stream.advance(20, "after a graceful restart");
    agent.stop(nix::sys::signal::Signal::SIGKILL);
    let _agent = start_agent(&w, &conf, dir.path());
    stream.advance(20, "after a SIGKILL restart");
    let total = stream.rounds();
    stream
        .finish()
        .unwrap_or_else(|e| panic!("{dp}: the stream broke: {e}"));
    assert!(total >= 80);
}

fn uplink_flapping_under_traffic(dp: &str) {
    let Some((w, conf, dir)) = setup("agent_flap", dp) else {
        return;
    };
    let _srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let _agent = start_agent(&w, &conf, dir.path());
    let mut stream = Stream::start(&w);
    stream.advance(20, "before flapping");
    let gw = WAN_ROUTER_IP.to_string();
    // The kernel's masquerade forgets the flows of an interface that goes down (by design:
    // its address may change), so only the eBPF datapath keeps established flows.
    let keeps_flows = dp == "ebpf";
    for _ in 0..3 {
        w.node()
            .exec(&["ip", "link", "set", UPLINK, "down"])
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        w.node().exec(&["ip", "link", "set", UPLINK, "up"]).unwrap();
        w.node()
            .exec(&["ip", "route", "replace", "default", "via", &gw])
            .unwrap();
        if keeps_flows {
            stream.advance(10, "after the uplink came back");
        }
    }
    // New flows work too (another server: the echo server serves one connection at a time).
    let _srv2 = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8001);
    tcp_roundtrip(
        w.pod("pod0").unwrap(),
        sa(WAN_SERVER_IP, 8001),
        b"new flow",
        Duration::from_secs(3),
    )
    .unwrap_or_else(|e| panic!("{dp}: new flow after flapping: {e}"));
    let survived = stream.finish();
    if keeps_flows {
        survived.unwrap_or_else(|e| panic!("{dp}: the stream broke: {e}"));
    }
}

/// A USB LTE stick plugged in after boot: a new interface with its own address and a default
/// route of its own, the wired one gone. The agent serves it without any ADD; new flows leave
/// masqueraded to its address.
fn agent_follows_a_new_interface(dp: &str) {
    let Some((w, conf, dir)) = setup("agent_new_if", dp) else {
        return;
    };
    let _agent = start_agent(&w, &conf, dir.path());
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let (node, wan) = (w.node(), w.wan());
    let wan_name = wan.name().to_string();
    node.exec(&[
        "ip", "link", "add", "wwan0", "type", "veth", "peer", "name", "wan9", "netns", &wan_name,
    ])
    .unwrap();
    wan.exec(&["ip", "addr", "add", "198.18.9.1/24", "dev", "wan9"])
        .unwrap();
    wan.exec(&["ip", "link", "set", "wan9", "up"]).unwrap();
    node.exec(&["ip", "addr", "add", "198.18.9.2/24", "dev", "wwan0"])
        .unwrap();
    node.exec(&["ip", "link", "set", "wwan0", "up"]).unwrap();
    node.exec(&["ip", "route", "replace", "default", "via", "198.18.9.1"])
        .unwrap();
    let stick = Ipv4Addr::new(198, 18, 9, 2);
    let end = Instant::now() + DEADLINE;
    loop {
        let ok = tcp_roundtrip(
            w.pod("pod0").unwrap(),
            sa(WAN_SERVER_IP, 8000),
            b"via the stick",
            Duration::from_secs(1),
        );
        if ok.is_ok() && srv.seen().last().map(SocketAddr::ip) == Some(IpAddr::V4(stick)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "{dp}: new flows never left by wwan0 as {stick} (last: {ok:?}, seen {:?})",
            srv.seen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if dp == "ebpf" {
        // The programs run on it: the ingress program (replies) and the backstop.
        let status = bpfctl_status(&w, w.bpffs_dir());
        let text = status.to_string();
        assert!(text.contains("wwan0"), "{dp}: wwan0 not served: {text}");
    }
}

macro_rules! both_datapaths {
    ($($name:ident),* $(,)?) => {
        mod ebpf {
            $( #[test] fn $name() { super::$name("ebpf") } )*
        }
        mod nftables {
            $( #[test] fn $name() { super::$name("nftables") } )*
        }
    };
}

both_datapaths!(
    uplink_address_change,
    agent_follows_a_new_interface,
    agent_restart_keeps_stream,
    uplink_flapping_under_traffic
);
