//! Issue 26 in the nftables datapath: a dual-stack network's IPv6 (pods' ULAs, added by hand
//! in [`NftWorld::add_ipv6`]). Pods reach the wan over IPv6 masqueraded to the node's global
//! address (UDP, TCP, ping), reach each other, cannot send from another address, cannot be
//! reached from the wan, answer hostPorts on the node's IPv6 address; no ULA source is ever
//! seen on the wan, by a packet socket in the wan namespace. The node forwards IPv6 and its
//! uplinks keep taking router advertisements (`accept_ra=2`).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use smarter_cni::datapath::nftables::NftablesDatapath;
use smarter_cni::datapath::{HostPortSpec, TrafficDir};
use smarter_testbed::{Netns, spawn_in, udp_roundtrip};

use crate::world::nft::{
    GATEWAY6, NODE_UPLINK_IP6, NftWorld, T, WAN_IP6, can_run, config6, endpoint6, tcp_ok,
};

/// A thread in a namespace that runs until dropped, with what it recorded.
struct Recorder<T> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<T>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> Recorder<T> {
    /// Runs `body(stop, seen)` in `ns` once `bind` (run there first) succeeded.
    fn start<S: Send + 'static>(
        ns: &Netns,
        bind: impl FnOnce() -> S + Send + 'static,
        body: impl FnOnce(S, &AtomicBool, &Mutex<Vec<T>>) + Send + 'static,
    ) -> Self {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let (s, v) = (Arc::clone(&stop), Arc::clone(&seen));
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = spawn_in(ns, move || {
            let socket = bind();
            let _ = ready.send(());
            body(socket, &s, &v);
        });
        bound.recv().expect("bound");
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<T> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IPv6 TCP echo server on `[::]:port` in `ns`, recording its peers.
fn tcp6_server(ns: &Netns, port: u16) -> Recorder<SocketAddr> {
    let bind = move || TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).expect("bind TCP");
    Recorder::start(ns, bind, |l, stop, seen| {
        l.set_nonblocking(true).expect("nonblocking");
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, peer)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            seen.lock().expect("not poisoned").push(peer);
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    })
}

/// An IPv6 UDP echo server on `[::]:port` in `ns`, recording its peers.
fn udp6_server(ns: &Netns, port: u16) -> Recorder<SocketAddr> {
    let bind = move || UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).expect("bind UDP");
    Recorder::start(ns, bind, |s, stop, seen| {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = s.recv_from(&mut buf) {
                seen.lock().expect("not poisoned").push(peer);
                let _ = s.send_to(&buf[..n], peer);
            }
        }
    })
}

/// The source of every IPv6 packet on any interface of `ns` (both directions), read by a
/// packet socket in cooked mode (the IPv6 header at byte 0).
fn ipv6_sources(ns: &Netns) -> Recorder<Ipv6Addr> {
    use socket2::{Domain, Protocol, Socket, Type};
    const ETH_P_IPV6: u16 = 0x86dd;
    let bind = || {
        let proto = Protocol::from(i32::from(ETH_P_IPV6.to_be()));
        let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto)).expect("packet socket");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        s
    };
    Recorder::start(ns, bind, |mut s, stop, seen| {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = s.read(&mut buf)
                && n >= 40
            {
                let src: [u8; 16] = buf[8..24].try_into().expect("16 bytes");
                seen.lock().expect("not poisoned").push(Ipv6Addr::from(src));
            }
        }
    })
}

fn sa6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn ping6(ns: &Netns, to: Ipv6Addr, from: Option<Ipv6Addr>) -> bool {
    let (to, from) = (to.to_string(), from.map(|f| f.to_string()));
    let mut args = vec!["ping", "-6", "-c1", "-W2"];
    if let Some(f) = &from {
        args.extend(["-I", f.as_str()]);
    }
    args.push(&to);
    ns.succeeds(&args)
}

fn sysctl(ns: &Netns, key: &str) -> String {
    let out = ns.exec(&["sysctl", "-n", key]).expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn is_ula(a: &Ipv6Addr) -> bool {
    a.segments()[..4] == [0xfd00, 0xac27, 0, 0]
}

#[test]
fn nft_dual_stack_pods() {
    if !can_run("nft_dual_stack_pods") {
        return;
    }
    let nw = NftWorld::new("nft6");
    nw.add_ipv6();
    let (node, wan, pod2, pod3) = (nw.node(), nw.w.wan(), nw.pod(2), nw.pod(3));
    // Forwarding: an uplink taking router advertisements keeps taking them; one told not
    // to is left alone.
    node.ip("link add ra0 type veth peer name ra1");
    node.exec(&["sysctl", "-qw", "net.ipv6.conf.uplink0.accept_ra=1"])
        .expect("sysctl");
    node.exec(&["sysctl", "-qw", "net.ipv6.conf.ra0.accept_ra=0"])
        .expect("sysctl");
    assert_eq!(sysctl(node, "net.ipv6.conf.all.forwarding"), "0");
    for _ in 0..2 {
        node.run(|| NftablesDatapath::enable_ipv6_forwarding(["uplink0", "ra0", "gone0"]))
            .expect("forwarding");
    }
    assert_eq!(sysctl(node, "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sysctl(node, "net.ipv6.conf.uplink0.accept_ra"), "2");
    assert_eq!(sysctl(node, "net.ipv6.conf.ra0.accept_ra"), "0");

    let dp = nw.ensure(&config6(&["uplink0"]));
    let web = HostPortSpec {
        host_port: 8080,
        container_port: 80,
        protocol: 6,
        host_ip: None,
    };
    let (ep2, ep3) = (endpoint6(2), endpoint6(3));
    let (ula2, ula3) = (ep2.ip6.expect("ip6"), ep3.ip6.expect("ip6"));
    node.run(|| {
        dp.attach_endpoint(&ep2, &[web])?;
        dp.attach_endpoint(&ep2, &[web])?;
        dp.attach_endpoint(&ep3, &[])
    })
    .expect("attach");
    let (eps, ports6, check) =
        node.run(|| (dp.endpoints(), dp.host_ports6(), dp.check_endpoint(&ep2)));
    assert_eq!(eps.expect("endpoints"), vec![ep2.clone(), ep3.clone()]);
    assert_eq!(ports6.expect("host ports"), vec![(web, ula2)]);
    assert_eq!(check.expect("check"), Vec::<String>::new());

    let capture = ipv6_sources(wan);
    // pod → wan: masqueraded to the node's global address, ports from the range.
    let tcp = tcp6_server(wan, 7000);
    let udp = udp6_server(wan, 7001);
    tcp_ok(pod2, sa6(WAN_IP6, 7000)).expect("TCP pod → wan");
    udp_roundtrip(pod2, sa6(WAN_IP6, 7001), b"hello nft6", T).expect("UDP pod → wan");
    assert!(ping6(pod2, WAN_IP6, None), "ping6 pod → wan");
    for peer in tcp.seen().iter().chain(&udp.seen()) {
        assert_eq!(peer.ip(), IpAddr::V6(NODE_UPLINK_IP6), "{peer}");
        assert!((61000..=64999).contains(&peer.port()), "NAT port {peer}");
    }
    assert_eq!((tcp.seen().len(), udp.seen().len()), (1, 1));
    assert!(nw.counter(&dp, "nat_masquerade") > 0);
    // Counted as the pod's traffic through the uplink, both ways (on its IPv4 row).
    let traffic = node.run(|| dp.pod_traffic()).expect("traffic");
    for dir in [TrafficDir::Out, TrafficDir::In] {
        let row = traffic
            .iter()
            .find(|t| t.pod == ep2.ip && t.dir == dir)
            .unwrap_or_else(|| panic!("no {dir:?} row in {traffic:?}"));
        assert_eq!(row.ifname.as_deref(), Some("uplink0"));
        assert!(row.packets >= 3 && row.bytes > 0, "{row:?}");
    }

    // pod ↔ pod, and the gateway.
    assert!(
        ping6(pod2, ula3, None) && ping6(pod3, ula2, None),
        "pod ↔ pod"
    );
    assert!(ping6(pod2, GATEWAY6, None), "pod → gateway");

    // Anti-spoofing: another ULA of the subnet, and a global address, as the source.
    let leaks_before = nw.counter(&dp, "drop_leak");
    for spoof in ["fd00:ac27::50", "2001:db8:1::99"] {
        let a: Ipv6Addr = spoof.parse().expect("address");
        pod2.ip(&format!("-6 addr add {a}/64 dev eth0 nodad"));
        assert!(!ping6(pod2, ula3, Some(a)), "{a} to a pod must be dropped");
        assert!(
            !ping6(pod2, WAN_IP6, Some(a)),
            "{a} to the wan must be dropped"
        );
        pod2.ip(&format!("-6 addr del {a}/64 dev eth0"));
    }
    assert!(nw.counter(&dp, "drop_spoof_ip6") > 0);
    assert_eq!(
        nw.counter(&dp, "drop_leak"),
        leaks_before,
        "dropped on the link, before routing"
    );
    assert!(ping6(pod2, ula3, None), "its own address works again");

    // Node-local-only: a wan host routing the ULA subnet to the node gets nowhere.
    wan.ip(&format!(
        "-6 route add fd00:ac27::/64 via {NODE_UPLINK_IP6}"
    ));
    assert!(!ping6(wan, ula2, None), "wan must not reach pods");
    assert!(nw.counter(&dp, "drop_nodelocal") > 0);

    // hostPort on the node's IPv6 address: from the wan, hairpinned, from the node itself.
    let pod_server = tcp6_server(pod2, 80);
    let hp = sa6(NODE_UPLINK_IP6, 8080);
    tcp_ok(wan, hp).expect("hostPort from the wan");
    tcp_ok(pod3, hp).expect("hostPort hairpin from a pod");
    tcp_ok(node, hp).expect("hostPort from the node");
    let peers: Vec<IpAddr> = pod_server.seen().iter().map(SocketAddr::ip).collect();
    assert_eq!(
        peers,
        [WAN_IP6, GATEWAY6, NODE_UPLINK_IP6].map(IpAddr::V6),
        "the wan client as it is, the hairpin masqueraded"
    );

    // No ULA ever left by the uplink (while the capture saw the node's traffic).
    drop((tcp, udp));
    let sources = capture.seen();
    assert!(sources.contains(&NODE_UPLINK_IP6), "the capture works");
    let leaked: Vec<&Ipv6Addr> = sources.iter().filter(|a| is_ula(a)).collect();
    assert!(leaked.is_empty(), "ULA sources on the wan: {leaked:?}");

    // Detach: the ULA and its hostPort go with the pod.
    let (eps, ports6, traffic) = node
        .run(|| {
            dp.detach_endpoint(ep2.ip, &ep2.host_ifname)?;
            dp.detach_endpoint(ep2.ip, &ep2.host_ifname)?;
            Ok::<_, smarter_cni::datapath::nftables::NftablesError>((
                dp.endpoints()?,
                dp.host_ports6()?,
                dp.pod_traffic()?,
            ))
        })
        .expect("detach");
    assert_eq!(eps, vec![ep3]);
    assert!(ports6.is_empty(), "{ports6:?}");
    assert!(traffic.iter().all(|t| t.pod != ep2.ip), "{traffic:?}");
    assert!(tcp_ok(wan, hp).is_err(), "the IPv6 hostPort is gone");
    drop(pod_server);
    node.run(|| NftablesDatapath::remove("smartnet"))
        .expect("remove");
}
