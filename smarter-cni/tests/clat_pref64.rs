//! The CLAT's NAT64 prefix discovered by the agent (`nat64Prefix` absent, i.e. `auto`) in the
//! world of [`World::add_nat64`], whose tayga translates the network-specific prefix
//! [`TAYGA_PREFIX`] itself:
//!
//! - RFC 7050: a resolver in the wan answers `ipv4only.arpa` `AAAA` with
//!   `2001:db8:64:64::c000:aa`; the agent records `2001:db8:64:64::/96 dns`, tells the datapath,
//!   and pods reach the wan's IPv4 server through that prefix (the wan's `64:ff9b::/96` route is
//!   removed, so nothing else could carry it); an ADD after that takes the recorded prefix;
//! - RFC 8781: a router advertisement from the wan with a PREF64 option wins over the
//!   resolvers' answer, and withdrawing it (lifetime 0) gives the resolvers' prefix back.

mod common;
#[path = "dns/support.rs"]
mod support;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::AAAA;
use serde_json::Value;
use smarter_testbed::nat64::{NAT64_IF, TAYGA_PREFIX};
use smarter_testbed::topology::WAN_UPLINK_IF;
use smarter_testbed::{
    EchoServer, NAT64_PREFIX, Netns, UPLINK, WAN_ROUTER_IP6, WAN_SERVER_IP, World, skipped,
    spawn_in, tcp_roundtrip,
};

/// The wan router's link-local address (the source of its router advertisements).
const WAN_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x64, 1);

/// A world with the NAT64 uplink, or `None` (skipped) without tayga or TUN.
fn nat64_world(label: &str) -> Option<World> {
    let mut w = world(label)?;
    if let Err(e) = w.add_nat64() {
        skipped(&format!("{label}: skipped, no NAT64 world: {e}"));
        return None;
    }
    Some(w)
}

/// A resolver on the wan router's IPv6 address answering `ipv4only.arpa` with `192.0.0.170` in
/// `prefix`, and a resolv.conf in `dir` naming it.
fn dns64(w: &World, dir: &Path, prefix: Ipv6Addr) -> (support::FakeUpstream, String) {
    let answer = Ipv6Addr::from_bits(prefix.to_bits() | 0xc000_00aa);
    let upstream = support::FakeUpstream::start_records(
        w.wan(),
        WAN_ROUTER_IP6,
        "ipv4only.arpa.",
        vec![RData::AAAA(AAAA(answer))],
    );
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {WAN_ROUTER_IP6}\n")).expect("resolv.conf");
    (upstream, resolv.to_string_lossy().into_owned())
}

/// Waits (15 s at most) until the agent's record reads `want`; panics with what it read.
fn await_record(w: &World, want: &str) {
    let path = w.state_dir().join("smartnet/pref64");
    let end = Instant::now() + Duration::from_secs(15);
    let mut got = String::new();
    while Instant::now() < end {
        got = std::fs::read_to_string(&path).unwrap_or_default();
        if got.trim_end() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{}: {got:?}, expected {want:?}", path.display());
}

/// The `clat` field of the uplink row bpfctl shows for `uplink0` (empty when none).
fn bpfctl_clat(w: &World) -> String {
    let status = bpfctl_status(w, w.bpffs_dir());
    let rows = status[0]["uplinks"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .find(|r| r["ifname"] == UPLINK)
        .and_then(|r| r["clat"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits (10 s at most) until bpfctl shows the CLAT translating to `prefix`/96.
fn await_clat(w: &World, prefix: Ipv6Addr) {
    let want = format!("{prefix}/96");
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = String::new();
    while Instant::now() < end {
        got = bpfctl_clat(w);
        if got.contains(&want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the CLAT row {got:?} does not name {want}");
}

/// A TCP round trip from `pod` to the wan's IPv4 server (retried for a few seconds).
fn reaches_the_server(pod: &Netns) {
    let end = Instant::now() + Duration::from_secs(10);
    let to = SocketAddr::from((WAN_SERVER_IP, 8000));
    loop {
        match tcp_roundtrip(pod, to, b"through the CLAT", Duration::from_secs(2)) {
            Ok(()) => return,
            Err(e) if Instant::now() > end => panic!("TCP through the CLAT: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Only [`TAYGA_PREFIX`] reaches the NAT64 from now on: the wan forgets `64:ff9b::/96`.
fn only_the_tayga_prefix(w: &World) {
    let wkp = format!("{NAT64_PREFIX}/96");
    w.wan()
        .exec(&["ip", "-6", "route", "del", &wkp, "dev", NAT64_IF])
        .expect("remove the wan's route of the well-known prefix");
}

/// Sends a router advertisement from the wan router's link-local address to all nodes on the
/// uplink: router lifetime 0 (not a default router), no prefix information, one PREF64 option
/// for `prefix`/96 valid `lifetime` seconds.
fn send_ra(w: &World, prefix: Ipv6Addr, lifetime: u16) {
    let mut ra = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    ra.extend_from_slice(&[38, 2]);
    ra.extend_from_slice(&((lifetime / 8) << 3).to_be_bytes());
    ra.extend_from_slice(&prefix.octets()[..12]);
    spawn_in(w.wan(), move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let ifindex = nix::net::if_::if_nametoindex(WAN_UPLINK_IF).expect("wan0");
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).expect("raw ICMPv6");
        s.set_multicast_hops_v6(255).unwrap();
        s.set_unicast_hops_v6(255).unwrap();
        s.set_multicast_if_v6(ifindex).unwrap();
        s.bind(&SocketAddrV6::new(WAN_LL, 0, 0, ifindex).into())
            .expect("bind the link-local address");
        let all_nodes = SocketAddrV6::new("ff02::1".parse().unwrap(), 0, 0, ifindex);
        // The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
        s.send_to(&ra, &all_nodes.into()).expect("send the RA");
    })
    .join()
    .expect("RA sender");
}

/// The world of both tests: the NAT64, a pod added before the agent runs, the agent asking
/// the wan's resolver, which answers with `dns_prefix`. Fields drop in order: the agent and
/// the servers before the world.
struct Setup {
    _agent: Agent,
    _server: EchoServer,
    _upstream: support::FakeUpstream,
    _dir: tempfile::TempDir,
    conf: Value,
    w: World,
}

fn setup(label: &str, dns_prefix: Ipv6Addr) -> Option<Setup> {
    let mut w = nat64_world(label)?;
    let conf = w.netconf("1.1.0");
    let ns = w.add_pod_ns("p").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "p", &ns);
    assert!(ebpf(&w).is_some(), "the eBPF datapath serves the network");
    // Before any discovery the plugin decided with the well-known prefix.
    assert!(bpfctl_clat(&w).contains(&format!("{NAT64_PREFIX}/96")));
    let dir = tempfile::tempdir().expect("tempdir");
    let (upstream, resolv) = dns64(&w, dir.path(), dns_prefix);
    let agent = Agent::start(
        &w,
        &conf,
        dir.path(),
        &["--log", "info", "--resolv-conf", &resolv],
    );
    let server = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    Some(Setup {
        w,
        conf,
        _dir: dir,
        _upstream: upstream,
        _agent: agent,
        _server: server,
    })
}

#[test]
fn the_agent_discovers_the_prefix_from_ipv4only_arpa() {
    let Some(mut s) = setup("pref64_dns", TAYGA_PREFIX) else {
        return;
    };
    let w = &s.w;
    await_record(w, &format!("{TAYGA_PREFIX}/96 dns"));
    await_clat(w, TAYGA_PREFIX);
    only_the_tayga_prefix(w);
    reaches_the_server(w.pod("p").unwrap());
    // A pod added now: ADD reads the agent's record (no network I/O) and keeps the prefix.
    let ns = s.w.add_pod_ns("q").unwrap().path().to_path_buf();
    let w = &s.w;
    add_ok(w, &s.conf, "q", &ns);
    assert!(bpfctl_clat(w).contains(&format!("{TAYGA_PREFIX}/96")));
    reaches_the_server(w.pod("q").unwrap());
    reaches_the_server(w.pod("p").unwrap());
}

#[test]
fn a_router_advertised_prefix_wins_over_the_resolvers() {
    let Some(s) = setup("pref64_ra", NAT64_PREFIX) else {
        return;
    };
    let w = &s.w;
    await_record(w, &format!("{NAT64_PREFIX}/96 dns"));
    // The uplink takes router advertisements (2: also while the node forwards); the RA carries
    // no prefix information and router lifetime 0, so addresses and routes stay as they are.
    w.node()
        .exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{UPLINK}.accept_ra=2"),
        ])
        .expect("accept_ra");
    w.wan()
        .exec(&[
            "ip",
            "addr",
            "add",
            &format!("{WAN_LL}/64"),
            "dev",
            WAN_UPLINK_IF,
            "nodad",
        ])
        .expect("the wan router's link-local address");
    // RAs are sent until the agent has taken one (the first may race the link-local address).
    let path = w.state_dir().join("smartnet/pref64");
    let want = format!("{TAYGA_PREFIX}/96 ra");
    let end = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&path)
        .unwrap_or_default()
        .trim_end()
        != want
    {
        assert!(
            Instant::now() < end,
            "the agent never took the RA's PREF64: {:?}",
            std::fs::read_to_string(&path)
        );
        send_ra(w, TAYGA_PREFIX, 600);
        std::thread::sleep(Duration::from_millis(300));
    }
    await_clat(w, TAYGA_PREFIX);
    only_the_tayga_prefix(w);
    reaches_the_server(w.pod("p").unwrap());
    // Withdrawn (lifetime 0): the resolvers' prefix is back.
    send_ra(w, TAYGA_PREFIX, 0);
    await_record(w, &format!("{NAT64_PREFIX}/96 dns"));
    await_clat(w, NAT64_PREFIX);
}
