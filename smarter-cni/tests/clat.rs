//! Pods on a gateway whose only way off is an IPv6-only uplink with a real NAT64 behind it
//! (Debian's `tayga` in the wan, [`World::add_nat64`]): through the eBPF datapath's CLAT they
//! reach the IPv4 "internet" by literal address — TCP, UDP of every size through the fragment
//! boundaries, ping, ICMP errors back to the pod, PMTU discovery through a smaller link behind
//! the NAT64 — while a capture on the wan side of the uplink sees no IPv4 frame at all (so no
//! pod address) over the whole run. On the nftables datapath, which cannot translate between
//! families, STATUS says so with code 51.

#[path = "conformance/capture.rs"]
mod capture;
mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use serde_json::json;
use smarter_testbed::{
    CniCall, EchoServer, FAR_SERVER_IP, Netns, WAN_SERVER_IP, World, skipped, spawn_in,
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A world with the NAT64 uplink, or `None` (skipped, with the reason) when tayga or TUN is
/// missing.
fn nat64_world(label: &str) -> Option<World> {
    let mut w = world(label)?;
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

#[test]
fn pods_reach_the_ipv4_internet_through_the_clat() {
    let Some(mut w) = nat64_world("clat") else {
        return;
    };
    w.add_far().expect("far");
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    let res = add_ok(&w, &conf, "p", &ns);
    let ip = result_ip(&res);
    // The datapath is eBPF, and the pods' MTU leaves room for the translation (uplink 1500).
    assert!(ebpf(&w).is_some(), "the eBPF datapath serves the network");
    let mtu = w
        .pod("p")
        .unwrap()
        .exec(&["cat", "/sys/class/net/eth0/mtu"])
        .expect("pod MTU");
    assert_eq!(
        String::from_utf8_lossy(&mtu.stdout).trim(),
        "1472",
        "pod MTU"
    );

    let cap = capture::Capture::start(w.wan(), [0, 0, 0, 0], 0, vec![0xff; 16]);
    let pod = w.pod("p").unwrap();
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
    // PMTU: the far server sits behind a 1280-byte IPv4 link behind the NAT64; a bulk upload
    // only completes when "fragmentation needed" comes back translated (ICMPv6 packet too
    // big → ICMP) into the pod.
    let far = EchoServer::tcp(w.far().expect("far"), FAR_SERVER_IP, 8002);
    tcp_bulk(pod, SocketAddr::from((FAR_SERVER_IP, 8002)), 256 * 1024)
        .unwrap_or_else(|e| panic!("TCP upload through a 1280 link behind the NAT64: {e}"));
    assert!(!far.seen().is_empty());

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
    let del = call(&w, &CniCall::new("DEL", &conf).pod("p", &ns));
    assert_eq!(del.status, 0, "DEL: {}", del.stderr);
}

#[test]
fn nftables_status_says_it_cannot_translate() {
    let Some(w) = nat64_world("clat_nft") else {
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
