//! The agent's uplink tracker against a real kernel: the agent runs on a thread inside a
//! world's `node` namespace with a recording datapath while the test changes addresses, link
//! state and the default route there. Never touches the root namespace.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smarter_cni::agent::{AgentConfig, DatapathControl, External, Health, Uplink, run};
use smarter_cni::cni::UplinkSelector;
use smarter_testbed::{NODE_UPLINK_IP, Netns, UPLINK, World, require_root, spawn_in};

/// Generous: only bounds a hang, never asserts speed.
const DEADLINE: Duration = Duration::from_secs(15);

/// Records one uplink of every [`External`] the agent delivers: the named one, or (auto)
/// the default route's. The agent also delivers changes of the other interfaces and of the
/// node's addresses; consecutive equal uplinks are recorded once.
struct Recorder {
    tx: mpsc::Sender<Option<Uplink>>,
    gcs: Arc<AtomicUsize>,
    named: bool,
    last: Option<Option<Uplink>>,
}

impl DatapathControl for Recorder {
    fn uplink_changed(&mut self, external: &External) -> anyhow::Result<()> {
        let uplink = if self.named {
            external.uplinks.first().cloned()
        } else {
            external.preferred().cloned()
        };
        if self.last.as_ref() != Some(&uplink) {
            self.last = Some(uplink.clone());
            self.tx.send(uplink)?;
        }
        Ok(())
    }

    fn gc(&mut self) -> anyhow::Result<usize> {
        self.gcs.fetch_add(1, Ordering::Relaxed);
        Ok(0)
    }
}

/// A running agent and what it told its datapath.
struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    rx: mpsc::Receiver<Option<Uplink>>,
    seen: Vec<Option<Uplink>>,
    gcs: Arc<AtomicUsize>,
    health: Arc<Health>,
}

impl Agent {
    fn start(node: &Netns, config: AgentConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let gcs = Arc::new(AtomicUsize::new(0));
        let health = Health::new();
        let (g, h) = (gcs.clone(), health.clone());
        // The thread enters the namespace before the runtime and the sockets exist.
        let thread = spawn_in(node, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let named = config.uplink != UplinkSelector::Auto;
            let mut dp = Recorder {
                tx,
                gcs: g,
                named,
                last: None,
            };
            rt.block_on(run(&config, &mut dp, &h, async {
                let _ = stopped.await;
            }))
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
            rx,
            seen: Vec::new(),
            gcs,
            health,
        }
    }

    /// Waits until the datapath was last told `want`; panics with the history otherwise.
    fn expect(&mut self, want: &Option<Uplink>) {
        let end = Instant::now() + DEADLINE;
        while self.seen.last() != Some(want) {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("datapath never told {want:?}; told {:#?}", self.seen),
            }
        }
    }

    fn stop(mut self) -> Vec<Option<Uplink>> {
        let _ = self.stop.take().expect("running").send(());
        let result = self.thread.take().expect("running").join();
        result
            .expect("agent thread panicked")
            .expect("agent ended with an error");
        self.seen.extend(self.rx.try_iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(uplink: UplinkSelector) -> AgentConfig {
    AgentConfig {
        uplink,
        gc_interval: Duration::from_millis(200),
        ..AgentConfig::default()
    }
}

fn ip(ns: &Netns, args: &[&str]) {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    ns.exec(&all).expect("ip command");
}

/// ifindex and MAC of `name` inside `ns`, from `ip -o link show`.
fn link(ns: &Netns, name: &str) -> (u32, [u8; 6]) {
    let out = ns.exec(&["ip", "-o", "link", "show", name]).expect("ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let index = text
        .split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .expect("ifindex");
    let mac_text = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether");
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(mac_text.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex");
    }
    (index, mac)
}

fn info(ns: &Netns, name: &str, addr: Ipv4Addr, up: bool) -> Option<Uplink> {
    let (ifindex, mac) = link(ns, name);
    Some(Uplink {
        ifindex,
        name: name.into(),
        addr,
        mac,
        up,
        l3: false,
        mtu: 1500,
        selected: true,
    })
}

#[test]
fn named_uplink_follows_address_and_link_state() {
    if !require_root("named_uplink_follows_address_and_link_state") {
        return;
    }
    let world = World::new("agent-named").expect("world");
    let node = world.node();
    let health_file = world.state_dir().with_extension("health");
    let mut cfg = config(UplinkSelector::Named(UPLINK.into()));
    cfg.health_file = Some(health_file.clone());
    let mut agent = Agent::start(node, cfg);

    let first = info(node, UPLINK, NODE_UPLINK_IP, true);
    agent.expect(&first);
    let other_ip = Ipv4Addr::new(100, 64, 9, 2);
    let other = info(node, UPLINK, other_ip, true);
    // DHCP renumbering: new address first, then the old one goes.
    ip(node, &["addr", "add", "100.64.9.2/24", "dev", UPLINK]);
    ip(node, &["addr", "del", "198.51.100.2/24", "dev", UPLINK]);
    agent.expect(&other);
    ip(node, &["addr", "add", "198.51.100.2/24", "dev", UPLINK]);
    ip(node, &["addr", "del", "100.64.9.2/24", "dev", UPLINK]);
    agent.expect(&first);

    ip(node, &["link", "set", UPLINK, "down"]);
    agent.expect(&info(node, UPLINK, NODE_UPLINK_IP, false));
    ip(node, &["link", "set", UPLINK, "up"]);
    agent.expect(&first);

    assert!(agent.health.is_ready());
    assert!(agent.health.last_beat() > 0);
    let end = Instant::now() + DEADLINE;
    while !(health_file.exists() && agent.gcs.load(Ordering::Relaxed) > 0) {
        assert!(Instant::now() < end, "no gc or no health file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&health_file).expect("health file");
    assert!(text.contains(UPLINK), "{text}");

    let seen = agent.stop();
    let down = info(node, UPLINK, NODE_UPLINK_IP, false);
    assert_eq!(
        seen,
        vec![first.clone(), other, first.clone(), down, first],
        "every change of the uplink is delivered, in order"
    );
    assert!(!health_file.exists(), "health file removed on shutdown");
}

#[test]
fn auto_uplink_follows_the_default_route() {
    if !require_root("auto_uplink_follows_the_default_route") {
        return;
    }
    let world = World::new("agent-auto").expect("world");
    let (node, wan) = (world.node(), world.wan());
    let mut agent = Agent::start(node, config(UplinkSelector::Auto));
    let first = info(node, UPLINK, NODE_UPLINK_IP, true);
    agent.expect(&first);

    // A second uplink (say, wwan0 next to eth0), up and addressed but not yet the default.
    let wan_name = wan.name().to_string();
    ip(
        node,
        &[
            "link", "add", "uplink1", "type", "veth", "peer", "name", "wan1", "netns", &wan_name,
        ],
    );
    ip(wan, &["addr", "add", "198.18.0.1/24", "dev", "wan1"]);
    ip(wan, &["link", "set", "wan1", "up"]);
    ip(node, &["addr", "add", "198.18.0.2/24", "dev", "uplink1"]);
    ip(node, &["link", "set", "uplink1", "up"]);
    let second = info(node, "uplink1", Ipv4Addr::new(198, 18, 0, 2), true);

    ip(
        node,
        &[
            "route",
            "replace",
            "default",
            "via",
            "198.18.0.1",
            "dev",
            "uplink1",
        ],
    );
    agent.expect(&second);
    ip(node, &["route", "del", "default"]);
    agent.expect(&None);
    ip(node, &["route", "add", "default", "via", "198.51.100.1"]);
    agent.expect(&first);
    // A backup default with a higher metric changes nothing until the primary one goes.
    ip(
        node,
        &[
            "route",
            "add",
            "default",
            "via",
            "198.18.0.1",
            "metric",
            "100",
        ],
    );
    ip(node, &["route", "del", "default", "via", "198.51.100.1"]);
    agent.expect(&second);

    let seen = agent.stop();
    assert_eq!(
        seen,
        vec![first.clone(), second.clone(), None, first, second],
        "every change of the uplink is delivered, in order"
    );
}
