//! `BPF_PROG_TEST_RUN` test of the pod side of the CLAT: with no IPv4 route off the node and an
//! IPv6-only uplink with the CLAT (the test run's device, the loopback, ifindex 1, plays it),
//! `smarter_pod` tail-calls `smarter_podclat`, which NATs the pod's packet to 192.0.0.1 and
//! redirects it to the uplink; with that slot empty (mid-upgrade) the packet is dropped as
//! `drop_no_route`, never passed un-NATed.

use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap};
use smarter_common::{
    NetConfig, UplinkValue, Verdict, clat::CLAT_V4, maps, progs, uplink::UPLINK_F_CLAT,
};
use smarter_ebpf_tests::run::run;
use smarter_ebpf_tests::world::{count, in_private_netns, world_with_uplink};
use smarter_ebpf_tests::world6::fill_tails;
use smarter_ebpf_tests::{GW_MAC, HELLO, POD, POD_MAC, REDIRECT, SHOT, root_or_skip};
use smarter_testbed::packet::{Ipv4, be16, ipv4_ok, l4_ok, udp, with_l4_csum};

/// An IPv4 server no IPv4 route reaches.
const SERVER: [u8; 4] = [203, 0, 113, 1];
/// The test run's device, the loopback: the IPv6-only uplink.
const DEV: u32 = 1;

/// The object with the CLAT on the test device: `clat_ifindex` set, the device an external
/// interface with the CLAT's address.
fn clat_world() -> aya::Ebpf {
    let mut ebpf = world_with_uplink(0);
    let mut cfg: Array<_, NetConfig> =
        Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
    let mut net = cfg.get(&maps::CONFIG_INDEX, 0).unwrap();
    net.clat_ifindex = DEV;
    cfg.set(maps::CONFIG_INDEX, net, 0).unwrap();
    let mut uplinks: HashMap<_, u32, UplinkValue> =
        HashMap::try_from(ebpf.map_mut(maps::UPLINKS).unwrap()).unwrap();
    let up = UplinkValue {
        addr: CLAT_V4,
        flags: UPLINK_F_CLAT,
        mtu: 1500,
        ..UplinkValue::default()
    };
    uplinks.insert(DEV, up, 0).unwrap();
    ebpf
}

/// A UDP frame from the pod to [`SERVER`], checksums valid.
fn from_pod(sport: u16) -> Vec<u8> {
    let l4 = with_l4_csum(
        Ipv4Addr::from(POD),
        Ipv4Addr::from(SERVER),
        17,
        udp(sport, 53, HELLO),
        6,
    );
    Ipv4::new(POD, SERVER, 17).frame(GW_MAC, POD_MAC, &l4)
}

/// Deletes the node's IPv4 default route: nothing routes [`SERVER`] (the FIB says "not
/// forwarded"), as on a node whose only uplink is IPv6-only.
fn no_ipv4_route() {
    let st = std::process::Command::new("ip")
        .args(["-4", "route", "del", "default"])
        .status()
        .expect("ip");
    assert!(st.success(), "ip route del default");
}

#[test]
fn unrouted_ipv4_is_natted_to_the_clat_by_tail_call_and_dropped_without_it() {
    if !root_or_skip("unrouted_ipv4_is_natted_to_the_clat_by_tail_call_and_dropped_without_it") {
        return;
    }
    in_private_netns(|| {
        no_ipv4_route();
        let mut ebpf = clat_world();

        // The slot empty (tails not filled yet, as mid-upgrade): dropped, never passed.
        let frame = from_pod(40000);
        let (v, out) = run(&mut ebpf, progs::POD, &frame);
        assert_eq!(v, SHOT, "no CLAT program: dropped");
        assert_eq!(out, frame, "nothing rewritten");
        assert_eq!(count(&ebpf, Verdict::DropNoRoute), 1);
        assert_eq!(count(&ebpf, Verdict::NatOut), 0);

        fill_tails(&mut ebpf);
        let (v, out) = run(&mut ebpf, progs::POD, &from_pod(40000));
        assert_eq!(v, REDIRECT, "redirected to the CLAT's uplink");
        assert_eq!(be16(&out, 12), 0x0800, "still IPv4: the egress translates");
        assert_eq!(&out[26..30], &CLAT_V4.to_ne_bytes(), "NATed to 192.0.0.1");
        assert_eq!(&out[30..34], &SERVER, "destination kept");
        assert_eq!(out[22], 63, "TTL decremented");
        assert!(ipv4_ok(&out).1 && l4_ok(&out, 6), "checksums after NAT");
        assert_eq!(count(&ebpf, Verdict::NatOut), 1, "counted once");
        assert_eq!(count(&ebpf, Verdict::DropNoRoute), 1, "no new drop");

        // Without the CLAT (clat_ifindex 0), an unrouted destination is the host's, as before.
        let mut cfg: Array<_, NetConfig> =
            Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
        let mut net = cfg.get(&maps::CONFIG_INDEX, 0).unwrap();
        net.clat_ifindex = 0;
        cfg.set(maps::CONFIG_INDEX, net, 0).unwrap();
        let frame = from_pod(40001);
        let (v, out) = run(&mut ebpf, progs::POD, &frame);
        assert_eq!(
            (v, out),
            (smarter_ebpf_tests::OK, frame),
            "to the host stack"
        );
        assert_eq!(count(&ebpf, Verdict::PassHost), 1);
    });
}
