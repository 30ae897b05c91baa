//! The nftables datapath in a world of throwaway network namespaces (node, wan, two pods):
//! masquerade, anti-spoofing, deny ranges, node-local-only, hostPort (also hairpin), detach
//! and removal. Skips with a message when not root or without `nft`. Never touches the root
//! namespace: `nft` and the API run on threads that entered the node namespace.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use smarter_cni::datapath::nftables::{NftablesConfig, NftablesDatapath, NftablesError};
use smarter_cni::datapath::{HostPortSpec, PodLink};

/// Namespaces deleted on drop (also on panic).
struct World {
    prefix: String,
    names: Vec<String>,
}

impl World {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn add(&mut self, role: &str) -> String {
        let name = self.ns(role);
        run("ip", &["netns", "add", &name]);
        self.names.push(name.clone());
        name
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn output(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

fn run(cmd: &str, args: &[&str]) {
    let out = output(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -n <ns> ...`
fn ip(ns: &str, args: &str) {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    run("ip", &all);
}

/// Runs a command inside `ns` with nsenter; true when it succeeds.
fn ok_in(ns: &str, cmd: &str) -> bool {
    let netns = format!("--net=/run/netns/{ns}");
    let mut all = vec![netns.as_str()];
    all.extend(cmd.split_whitespace());
    output("nsenter", &all).status.success()
}

fn ping(ns: &str, args: &str) -> bool {
    ok_in(ns, &format!("ping -c1 -W1 -q {args}"))
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in namespace panicked")
}

/// A TCP server in `ns` answering up to `n` connections with the peer's address; returns the
/// peers it saw within 15 s.
fn serve(ns: &str, port: u16, n: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let path = format!("/run/netns/{ns}");
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let file = File::open(&path).expect("netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        tx.send(()).expect("ready");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut peers = Vec::new();
        while peers.len() < n && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.write_all(peer.to_string().as_bytes());
                    peers.push(peer);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        peers
    });
    rx.recv().expect("server ready");
    handle
}

/// Connects from `ns` to `to` and returns what the server said (its view of our address).
fn connect(ns: &str, to: SocketAddr) -> Result<String, String> {
    in_ns(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        Ok(reply)
    })
}

fn counter(node: &str, dp: &NftablesDatapath, name: &str) -> u64 {
    let dp = dp.clone();
    let all = in_ns(node, move || dp.counters().expect("counters"));
    all.iter().find(|(n, _, _)| n == name).map_or(0, |c| c.1)
}

fn endpoint(last: u8) -> PodLink {
    PodLink {
        ip: Ipv4Addr::new(172, 39, 0, last),
        mac: [2, 0, 0, 0, 0, last],
        host_ifname: format!("smv{last:012x}"),
    }
}

fn build(world: &mut World) -> (String, String, String, String) {
    let node = world.add("node");
    let wan = world.add("wan");
    ip(&node, "link set lo up");
    ip(&node, "link add smartnet0 type bridge");
    ip(&node, "addr add 172.39.0.1/16 dev smartnet0");
    ip(&node, "link set smartnet0 up");
    let mut pods = Vec::new();
    for last in [2u8, 3] {
        let pod = world.add(&format!("pod{last}"));
        let ep = endpoint(last);
        let host = &ep.host_ifname;
        ip(
            &node,
            &format!("link add {host} type veth peer name eth0 netns {pod}"),
        );
        ip(&node, &format!("link set {host} master smartnet0 up"));
        let mac = ep
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ip(&pod, &format!("link set eth0 address {mac}"));
        ip(&pod, &format!("addr add {}/16 dev eth0", ep.ip));
        ip(&pod, "link set eth0 up");
        ip(&pod, "link set lo up");
        ip(&pod, "route add default via 172.39.0.1");
        pods.push(pod);
    }
    ip(
        &node,
        &format!("link add uplink0 type veth peer name wan0 netns {wan}"),
    );
    ip(&node, "addr add 198.51.100.2/24 dev uplink0");
    ip(&node, "link set uplink0 up");
    ip(&node, "route add default via 198.51.100.1");
    ip(&wan, "addr add 198.51.100.1/24 dev wan0");
    ip(&wan, "link set wan0 up");
    ip(&wan, "addr add 203.0.113.1/24 dev lo");
    ip(&wan, "link set lo up");
    assert!(ok_in(&node, "sysctl -qw net.ipv4.ip_forward=1"));
    // Per namespace since Linux 5.3; absent when br_netfilter is not loaded.
    let _ = ok_in(&node, "sysctl -qw net.bridge.bridge-nf-call-iptables=1");
    let pod3 = pods.pop().expect("pod3");
    (node, wan, pods.pop().expect("pod2"), pod3)
}

fn config(deny: &[&str]) -> NftablesConfig {
    NftablesConfig {
        network: "smartnet".into(),
        bridge: "smartnet0".into(),
        subnet: "172.39.0.0/16".parse().expect("subnet"),
        gateway: Ipv4Addr::new(172, 39, 0, 1),
        uplinks: vec!["uplink0".into()],
        deny: deny.iter().map(|d| d.parse().expect("cidr")).collect(),
        nat_ports: (61000, 64999),
    }
}

#[test]
fn nft_datapath_in_namespaces() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping nft_datapath: needs root");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipping nft_datapath: `nft` is not installed");
        return;
    }
    let mut world = World {
        prefix: format!("smt-{}-nft", std::process::id()),
        names: Vec::new(),
    };
    let (node, wan, pod2, pod3) = build(&mut world);
    in_ns(&node, NftablesDatapath::available).expect("nftables available in the node namespace");
    let dp = in_ns(&node, || NftablesDatapath::ensure(&config(&[]))).expect("ensure");
    let again =
        in_ns(&node, || NftablesDatapath::ensure(&config(&[]))).expect("ensure is idempotent");
    assert_eq!(dp, again);
    let web = HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: 6,
        host_ip: None,
    };
    let d = dp.clone();
    in_ns(&node, move || {
        d.attach_endpoint(&endpoint(2), &[web])?;
        d.attach_endpoint(&endpoint(2), &[web])?;
        d.attach_endpoint(&endpoint(3), &[])
    })
    .expect("attach");
    let d = dp.clone();
    let (eps, ports, check) = in_ns(&node, move || {
        (
            d.endpoints(),
            d.host_ports(),
            d.check_endpoint(&endpoint(2)),
        )
    });
    assert_eq!(eps.expect("endpoints").len(), 2);
    assert_eq!(
        ports.expect("host ports"),
        vec![(web, Ipv4Addr::new(172, 39, 0, 2))]
    );
    assert_eq!(check.expect("check"), Vec::<String>::new());

    // pod → wan: masqueraded to the uplink address and the NAT port range.
    let server = serve(&wan, 7000, 1);
    let reply = connect(&pod2, "198.51.100.1:7000".parse().expect("addr")).expect("pod → wan");
    let seen: SocketAddr = reply.parse().expect("peer");
    assert_eq!(seen.ip().to_string(), "198.51.100.2");
    assert!((61000..=64999).contains(&seen.port()), "NAT port {seen}");
    assert_eq!(server.join().expect("server").len(), 1);
    assert!(ping(&pod2, "203.0.113.1"), "ICMP to the internet");
    assert!(
        ping(&pod2, "172.39.0.3") && ping(&pod3, "172.39.0.2"),
        "pod ↔ pod"
    );
    assert!(counter(&node, &dp, "nat_masquerade") > 0);

    // Anti-spoofing: another source address, then another MAC.
    ip(&pod2, "addr add 172.39.0.50/16 dev eth0");
    assert!(
        !ping(&pod2, "-I 172.39.0.50 172.39.0.3"),
        "spoofed source must be dropped"
    );
    ip(&pod2, "addr del 172.39.0.50/16 dev eth0");
    assert!(counter(&node, &dp, "drop_spoof_ip") + counter(&node, &dp, "drop_spoof_arp") > 0);
    ip(&pod2, "link set eth0 address 02:00:00:00:00:99");
    assert!(!ping(&pod2, "172.39.0.3"), "spoofed MAC must be dropped");
    ip(&pod2, "link set eth0 address 02:00:00:00:00:02");
    assert!(ping(&pod2, "172.39.0.3"), "own MAC works again");

    // Deny ranges (ensure again keeps the elements).
    in_ns(&node, || {
        NftablesDatapath::ensure(&config(&["203.0.113.0/24"]))
    })
    .expect("ensure deny");
    assert!(!ping(&pod2, "203.0.113.1"), "denied range");
    assert!(ping(&pod2, "198.51.100.1"), "allowed range");
    assert!(counter(&node, &dp, "drop_deny") > 0);

    // Node-local-only: a wan host routing to the pod subnet gets nowhere.
    ip(&wan, "route add 172.39.0.0/16 via 198.51.100.2");
    assert!(!ping(&wan, "172.39.0.2"), "wan must not reach pods");
    assert!(counter(&node, &dp, "drop_nodelocal") > 0);

    // hostPort from the wan, hairpin from the other pod and from the node itself.
    let pod_server = serve(&pod2, 80, 3);
    let hp: SocketAddr = "198.51.100.2:8080".parse().expect("addr");
    let from_wan = connect(&wan, hp).expect("hostPort from wan");
    assert!(from_wan.starts_with("198.51.100.1:"), "{from_wan}");
    let hairpin = connect(&pod3, hp).expect("hostPort hairpin from a pod");
    assert!(
        hairpin.starts_with("172.39.0.1:"),
        "hairpin is masqueraded: {hairpin}"
    );
    connect(&node, hp).expect("hostPort from the node");
    assert_eq!(pod_server.join().expect("pod server").len(), 3);
    let d = dp.clone();
    let conflict = in_ns(&node, move || d.attach_endpoint(&endpoint(3), &[web]));
    assert!(
        matches!(&conflict, Err(NftablesError::HostPortTaken { port: 8080, owner, .. }) if owner == "172.39.0.2:80"),
        "{conflict:?}"
    );

    // Detach: elements and hostPorts go, twice is fine.
    let d = dp.clone();
    let (eps, ports, check) = in_ns(&node, move || {
        d.detach_endpoint(Ipv4Addr::new(172, 39, 0, 2), &endpoint(2).host_ifname)?;
        d.detach_endpoint(Ipv4Addr::new(172, 39, 0, 2), &endpoint(2).host_ifname)?;
        Ok::<_, NftablesError>((
            d.endpoints()?,
            d.host_ports()?,
            d.check_endpoint(&endpoint(2))?,
        ))
    })
    .expect("detach");
    assert_eq!(eps, vec![endpoint(3)]);
    assert!(ports.is_empty());
    assert!(!check.is_empty(), "check reports the missing endpoint");
    assert!(connect(&wan, hp).is_err(), "hostPort is gone");

    // Remove: no table left, twice is fine, open says so.
    let gone = in_ns(&node, || {
        NftablesDatapath::remove("smartnet")?;
        NftablesDatapath::remove("smartnet")?;
        NftablesDatapath::open("smartnet")
    })
    .expect("remove");
    assert_eq!(gone, None);
    let listing = output(
        "nsenter",
        &[&format!("--net=/run/netns/{node}"), "nft", "list", "tables"],
    );
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains("smarter_"),
        "tables left"
    );
}
