//! Pods on a gateway whose only way off is an IPv6-only uplink with a real NAT64 behind it
//! (Debian's `tayga` in the wan, [`World::add_nat64`]): through the eBPF datapath's CLAT they
//! reach the IPv4 "internet" by literal address — TCP, UDP of every size through the fragment
//! boundaries, ping, ICMP errors back to the pod, PMTU discovery through a smaller link behind
//! the NAT64 — while a capture on the wan side of the uplink sees no IPv4 frame at all (so no
//! pod address) over the whole run; by name too, through the node-local DNS forwarding to an
//! IPv6-only upstream. On the nftables datapath, which cannot translate between
//! families, STATUS says so with code 51.

#[path = "conformance/capture.rs"]
#[expect(
    dead_code,
    reason = "the conformance capture; this test reads its leak counts only"
)]
mod capture;
mod common;
#[path = "dns/support.rs"]
mod support;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use serde_json::json;
use smarter_testbed::{
    CniCall, EchoServer, FAR_SERVER_IP, Netns, WAN_ROUTER_IP6, WAN_SERVER_IP, World, skipped,
    spawn_in,
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A world with the NAT64 uplink, or `None` (skipped, with the reason) when tayga or TUN is
/// missing.
fn nat64_world(label: &str, far: bool) -> Option<World> {
    let mut w = world(label)?;
    if far {
        w.add_far().expect("far");
    }
    if let Err(e) = w.add_nat64() {
        skipped(&format!("{label}: skipped, no NAT64 world: {e}"));
        return None;
    }
    Some(w)
}

/// Sends a `len`-byte UDP datagram from `ns` to `to` and waits for its echo.
fn udp_echo(ns: &Netns, to: SocketAddr, len: usize) -> Result<(), String> {
    spawn_in(ns, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        s.send_to(&msg, to).map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; 70_000];
        let (n, _) = s.recv_from(&mut buf).map_err(|e| format!("receive: {e}"))?;
        if buf[..n] == msg[..] {
            Ok(())
        } else {
            Err(format!("echo of {n} bytes differs"))
        }
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// Sends `len` bytes over TCP from `ns` to the echo server `to` and reads them all back.
fn tcp_bulk(ns: &Netns, to: SocketAddr, len: usize) -> Result<(), String> {
    spawn_in(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&to, TIMEOUT).map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let msg: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut reader = s.try_clone().map_err(|e| e.to_string())?;
        let echo = std::thread::spawn(move || {
            let mut got = vec![0u8; len];
            reader.read_exact(&mut got).map(|()| got)
        });
        s.write_all(&msg).map_err(|e| format!("send: {e}"))?;
        let got = echo
            .join()
            .map_err(|_| "reader panicked".to_string())?
            .map_err(|e| format!("receive: {e}"))?;
        (got == msg)
            .then_some(())
            .ok_or_else(|| "echo differs".to_string())
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// A UDP datagram to a port nobody listens on: the connected socket's next receive fails with
/// "connection refused" once the ICMP port unreachable came back into the pod.
fn refused(ns: &Netns, to: SocketAddr) -> Result<(), String> {
    spawn_in(ns, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        s.connect(to).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.send(b"anyone?").map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 64];
        match s.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("expected connection refused, got {other:?}")),
        }
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// TCP, UDP of every size through the fragment boundaries, ping and an ICMP error, from `pod`
/// (address `ip`, MTU 1472) to the wan's IPv4 server through the CLAT.
fn basic_traffic(w: &World, pod: &Netns, ip: Ipv4Addr) {
    let tcp = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let udp = EchoServer::udp(w.wan(), WAN_SERVER_IP, 8001);

    tcp_bulk(pod, SocketAddr::from((WAN_SERVER_IP, 8000)), 4)
        .unwrap_or_else(|e| panic!("TCP through the CLAT: {e}"));
    // The server saw the NAT64's pool address, never the pod's.
    assert!(
        tcp.seen()
            .iter()
            .all(|p| p.ip() != std::net::IpAddr::V4(ip)),
        "{:?}",
        tcp.seen()
    );
    // UDP of every size: below, at and above the pod's fragmentation boundary (1472 - 28 =
    // 1444 bytes of payload), and several fragments.
    for len in [
        1, 512, 1400, 1443, 1444, 1445, 1452, 1500, 2000, 2952, 4000, 9000, 30000,
    ] {
        udp_echo(pod, SocketAddr::from((WAN_SERVER_IP, 8001)), len)
            .unwrap_or_else(|e| panic!("UDP {len} bytes through the CLAT: {e}"));
    }
    assert!(!udp.seen().is_empty());
    assert!(ping(pod, WAN_SERVER_IP), "ping through the CLAT");
    refused(pod, SocketAddr::from((WAN_SERVER_IP, 9)))
        .unwrap_or_else(|e| panic!("ICMP port unreachable back through the CLAT: {e}"));
}

#[test]
fn pods_reach_the_ipv4_internet_through_the_clat() {
    let Some(mut w) = nat64_world("clat", true) else {
        return;
    };
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    let res = add_ok(&w, &conf, "p", &ns);
    let ip = result_ip(&res);
    // The datapath is eBPF, and the pods' MTU leaves room for the translation (uplink 1500).
    assert!(ebpf(&w).is_some(), "the eBPF datapath serves the network");
    let link = w
        .pod("p")
        .unwrap()
        .exec(&["ip", "-o", "link", "show", "eth0"])
        .expect("pod link");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains(" mtu 1472 "), "pod MTU: {link}");

    let cap = capture::Capture::start(w.wan(), [0, 0, 0, 0], 0, vec![0xff; 16]);
    let pod = w.pod("p").unwrap();
    basic_traffic(&w, pod, ip);
    // PMTU: the far server sits behind a 1280-byte IPv4 link behind the NAT64. Datagrams of
    // 1400 bytes with DF make the wan router answer "fragmentation needed, 1280", which tayga
    // turns into an ICMPv6 packet too big (1300) for the CLAT address: only when the CLAT
    // translates it back into the pod does the pod's route learn the 1280.
    let far = EchoServer::tcp(w.far().expect("far"), FAR_SERVER_IP, 8002);
    let _ = pod.exec(&[
        "ping",
        "-M",
        "do",
        "-s",
        "1400",
        "-c",
        "2",
        "-W",
        "1",
        &FAR_SERVER_IP.to_string(),
    ]);
    let route = pod
        .exec(&["ip", "-4", "route", "get", &FAR_SERVER_IP.to_string()])
        .expect("ip route get");
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("mtu 1280"),
        "the pod's route to the far server: {route}"
    );
    // And a bulk upload to it completes (the far end's MSS keeps its segments small, the
    // pod's PMTU the rest).
    tcp_bulk(pod, SocketAddr::from((FAR_SERVER_IP, 8002)), 256 * 1024)
        .unwrap_or_else(|e| panic!("TCP upload through a 1280 link behind the NAT64: {e}"));
    assert!(!far.seen().is_empty());

    // By name: the node-local DNS forwards the pod's question to an IPv6-only upstream in the
    // wan, and the answer is reached through the CLAT.
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {WAN_ROUTER_IP6}\n")).expect("resolv.conf");
    let upstream =
        support::FakeUpstream::start(w.wan(), WAN_ROUTER_IP6, "ipv4.example.", WAN_SERVER_IP);
    let _dns = support::DnsServer::start(w.node(), support::config(&w, &resolv));
    let (answer, ok) = support::until(pod, "ipv4.example.", RecordType::A, false, TIMEOUT, |m| {
        support::addrs(m) == [WAN_SERVER_IP]
    });
    assert!(
        ok,
        "ipv4.example through the node-local DNS and an IPv6 upstream: {answer:?}; asked {}",
        upstream.asked.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _server = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    tcp_bulk(pod, SocketAddr::from((WAN_SERVER_IP, 8000)), 1000)
        .unwrap_or_else(|e| panic!("TCP to ipv4.example through the CLAT: {e}"));

    let report = cap.stop();
    let wan0 = report.per_if.get("wan0").copied().unwrap_or_default();
    assert!(wan0.frames > 0, "the capture saw the uplink: {report:?}");
    assert_eq!(
        wan0.leaks, 0,
        "no IPv4 frame (and so no pod address) on the IPv6-only uplink: {:?}",
        report.leaks
    );
    let out = counted(&w, "ebpf", &["clat_out"]);
    let back = counted(&w, "ebpf", &["clat_in"]);
    assert!(out > 0 && back > 0, "CLAT counters: out {out}, in {back}");
    // Port unreachable and fragmentation needed came in as ICMPv6 errors.
    let errors = counted(&w, "ebpf", &["icmp_error_in"]);
    assert!(errors >= 2, "ICMP errors translated into the pod: {errors}");
    let del = call(&w, &CniCall::new("DEL", &conf).pod("p", &ns));
    assert_eq!(del.status, 0, "DEL: {}", del.stderr);
}

#[test]
fn nftables_status_says_it_cannot_translate() {
    let Some(w) = nat64_world("clat_nft", false) else {
        return;
    };
    if let Err(e) = nftables_usable(&w) {
        skipped(&format!("clat_nft: skipped, nftables unusable: {e}"));
        return;
    }
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("nftables");
    let out = call(&w, &CniCall::new("STATUS", &conf));
    assert_ne!(
        out.status, 0,
        "STATUS on an IPv6-only uplink: {}",
        out.stdout
    );
    let err: serde_json::Value = serde_json::from_str(&out.stdout).expect("error JSON");
    assert_eq!(err["code"], 51, "{err}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("IPv6-only") && msg.contains("nftables"),
        "{msg}"
    );
    // With `nat64Prefix: off` there is no CLAT to miss.
    conf["nat64Prefix"] = json!("off");
    let out = call(&w, &CniCall::new("STATUS", &conf));
    assert_eq!(out.status, 0, "STATUS without a CLAT: {}", out.stdout);
}

#[test]
fn the_agent_turns_the_clat_on_when_ipv4_goes() {
    let Some(mut w) = world("clat_agent") else {
        return;
    };
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "p", &ns);
    let _ = wan_roundtrip(&w, "p");
    let dir = tempfile::tempdir().unwrap();
    let _agent = Agent::start(&w, &conf, dir.path(), &["--log", "warn"]);
    // The operator's uplink loses IPv4 (an IPv6-only APN): the agent alone must make pods'
    // IPv4 leave by the CLAT, without any ADD.
    if let Err(e) = w.add_nat64() {
        skipped(&format!("clat_agent: skipped, no NAT64 world: {e}"));
        return;
    }
    let srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let pod = w.pod("p").unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let mut last = Err(String::new());
    while std::time::Instant::now() < end {
        last = tcp_bulk(pod, SocketAddr::from((WAN_SERVER_IP, 8000)), 100);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last.unwrap_or_else(|e| panic!("TCP through the CLAT the agent set up: {e}"));
    assert!(!srv.seen().is_empty());
    assert!(counted(&w, "ebpf", &["clat_out"]) > 0);
}

#[test]
fn a_raw_ip_modem_on_an_ipv6_only_apn() {
    let Some(mut w) = world("clat_l3") else {
        return;
    };
    if let Err(e) = w.add_nat64_l3(1500) {
        skipped(&format!("clat_l3: skipped, no layer-3 NAT64 world: {e}"));
        return;
    }
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    let ip = result_ip(&add_ok(&w, &conf, "p", &ns));
    let status = bpfctl_status(&w, w.bpffs_dir());
    let rows = status[0]["uplinks"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["ifname"] == "wwan0" && r["link"] == "l3" && r["clat"].is_string()),
        "the CLAT is on the modem: {rows:?}"
    );
    let cap = capture::Capture::start(w.wan(), [0, 0, 0, 0], 0, vec![0xff; 16]);
    basic_traffic(&w, w.pod("p").unwrap(), ip);
    let report = cap.stop();
    let tun = report.per_if.get("tun1").copied().unwrap_or_default();
    assert!(
        tun.frames > 0,
        "the capture saw the modem's link: {report:?}"
    );
    assert_eq!(
        tun.leaks, 0,
        "no IPv4 on the IPv6-only modem link: {:?}",
        report.leaks
    );
    let wan0 = report.per_if.get("wan0").copied().unwrap_or_default();
    assert_eq!(
        wan0.leaks, 0,
        "no IPv4 on the other uplink: {:?}",
        report.leaks
    );
}
