//! The object loaded into the kernel with a small network configured in its maps, the verdict
//! counters, and a private network namespace (a `smarter_testbed` world's node) for the tests
//! whose programs look up the FIB.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::SchedClassifier,
};
use smarter_cni::datapath::ebpf::EBPF_OBJECT;
use smarter_common::{
    EndpointKey, EndpointValue, NetConfig, UplinkValue, Verdict, VerdictStats, maps,
};

use crate::{PEER, PEER_MAC, POD, POD_MAC, REMOTE, REMOTE_MAC, UPLINK, UPLINK_IF};

/// An IPv4 address as the maps hold it (network order in a native `u32`).
fn ne(o: [u8; 4]) -> u32 {
    u32::from_ne_bytes(o)
}

/// The object loaded (its maps created, no program verified yet: [`classifier`] loads each on
/// first use), endpoints [`POD`] (ifindex 1) and [`PEER`] (ifindex
/// 4242) with their ports' `ep_ifaces` entries, the 172.39.0.0/16 network and a deny range
/// 10.0.0.0/8, the uplink address 198.51.100.2 and the gateway as node addresses;
/// `uplink_ifindex` 0 = no external interface (no SNAT).
///
/// # Panics
/// When the kernel refuses the object or a program, or a map update fails.
#[must_use]
pub fn world_with_uplink(uplink_ifindex: u32) -> Ebpf {
    let mut ebpf = Ebpf::load(EBPF_OBJECT).expect("the kernel accepts the object");
    let mut eps: HashMap<_, EndpointKey, EndpointValue> =
        HashMap::try_from(ebpf.map_mut(maps::ENDPOINTS).unwrap()).unwrap();
    for (ip, ifindex, mac) in [(POD, 1, POD_MAC), (PEER, 4242, PEER_MAC)] {
        let value = EndpointValue {
            ifindex,
            mac,
            ..EndpointValue::default()
        };
        eps.insert(EndpointKey::from_octets(ip), value, 0).unwrap();
    }
    let mut ifaces: HashMap<_, u32, EndpointKey> =
        HashMap::try_from(ebpf.map_mut(maps::EP_IFACES).unwrap()).unwrap();
    for (ip, ifindex) in [(POD, 1), (PEER, 4242)] {
        ifaces
            .insert(ifindex, EndpointKey::from_octets(ip), 0)
            .unwrap();
    }
    let mut cfg: Array<_, NetConfig> =
        Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
    let net = NetConfig {
        gateway: ne([172, 39, 0, 1]),
        subnet: ne([172, 39, 0, 0]),
        prefix_len: 16,
        uplink_addr: ne(UPLINK),
        uplink_ifindex,
        ..NetConfig::default()
    };
    cfg.set(maps::CONFIG_INDEX, net, 0).unwrap();
    // The uplink is an external interface pods leave by; its address and the gateway are the
    // node's (hostPorts answer on them).
    if uplink_ifindex != 0 {
        let mut uplinks: HashMap<_, u32, UplinkValue> =
            HashMap::try_from(ebpf.map_mut(maps::UPLINKS).unwrap()).unwrap();
        let up = UplinkValue {
            addr: ne(UPLINK),
            mtu: 1500,
            ..UplinkValue::default()
        };
        uplinks.insert(uplink_ifindex, up, 0).unwrap();
    }
    let mut node_addrs: HashMap<_, u32, u32> =
        HashMap::try_from(ebpf.map_mut(maps::NODE_ADDRS).unwrap()).unwrap();
    node_addrs.insert(ne(UPLINK), uplink_ifindex, 0).unwrap();
    node_addrs.insert(ne([172, 39, 0, 1]), 0, 0).unwrap();
    let mut deny: LpmTrie<_, u32, u8> =
        LpmTrie::try_from(ebpf.map_mut(maps::DENY).unwrap()).unwrap();
    deny.insert(&Key::new(8, ne([10, 0, 0, 0])), 1, 0).unwrap();
    ebpf
}

/// Program `name` of `ebpf`, verified and loaded on its first use: a test pays the verifier for
/// the programs it runs only. In the TCG guests of `cargo xtask vm-test` the whole object
/// costs seconds a test; every program's acceptance has its own tests (`ebpf_programs`, the
/// fuzz tables over `progs::ALL`).
///
/// # Panics
/// When `ebpf` has no classifier `name` or the verifier refuses it.
pub fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("program {name} missing"))
        .try_into()
        .unwrap();
    if prog.fd().is_err() {
        prog.load()
            .unwrap_or_else(|e| panic!("the verifier accepts {name}: {e:?}"));
    }
    prog
}

/// The packets counted under `v` (summed over the CPUs).
///
/// # Panics
/// When the verdict map cannot be read.
#[must_use]
pub fn count(ebpf: &Ebpf, v: Verdict) -> u64 {
    let m: PerCpuArray<_, VerdictStats> =
        PerCpuArray::try_from(ebpf.map(maps::VERDICTS).unwrap()).unwrap();
    m.get(&(v as u32), 0)
        .unwrap()
        .iter()
        .map(|s| s.packets)
        .sum()
}

/// Runs `f` on a thread inside the node namespace of a fresh [`smarter_testbed::World`], whose
/// uplink [`crate::UPLINK_IF`] holds [`crate::UPLINK`]/24, with a static neighbour for
/// [`crate::REMOTE`] and forwarding on, so the programs' FIB lookup succeeds; the world and
/// everything in it is removed afterwards, also when `f` panics.
///
/// # Panics
/// When the world cannot be built, `ip` or `sysctl` fails, or `f` panics.
pub fn in_private_netns(f: impl FnOnce() + Send) {
    let w = smarter_testbed::World::new("ebpf_tests").expect("namespace world");
    let node = w.node();
    node.ip(&format!(
        "neigh replace {} lladdr {} dev {UPLINK_IF}",
        Ipv4Addr::from(REMOTE),
        smarter_testbed::mac_text(REMOTE_MAC)
    ));
    node.exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])
        .expect("forwarding");
    node.run(f);
}
