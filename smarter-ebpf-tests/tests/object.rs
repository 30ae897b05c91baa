//! Tests of the embedded object against the running kernel (root only, nothing pinned, no
//! interface touched): it loads, has the maps `smarter_common` describes, and the pod program
//! gives the expected verdict and counts on crafted packets (`BPF_PROG_TEST_RUN`).

use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuHashMap},
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use smarter_cni::datapath::ebpf::EBPF_OBJECT;
use smarter_common::{EndpointKey, EndpointStats, EndpointValue, maps, progs};
use smarter_ebpf_tests::{GW_MAC, POD, POD_MAC, REMOTE, root_or_skip};
use smarter_testbed::packet::{Ipv4, udp};

const TC_ACT_OK: u32 = 0;

/// A 60-byte Ethernet/IPv4/UDP packet from a pod (172.39.0.3) to 198.51.100.7:53.
fn udp_packet() -> Vec<u8> {
    Ipv4::new(POD, REMOTE, 17)
        .frag(Ipv4::DF)
        .frame(GW_MAC, POD_MAC, &udp(40000, 53, &[0; 18]))
}

fn loaded() -> Ebpf {
    assert!(!EBPF_OBJECT.is_empty(), "built with AYA_BUILD_SKIP");
    Ebpf::load(EBPF_OBJECT).expect("the kernel accepts the object")
}

#[test]
fn object_has_the_maps_smarter_common_describes() {
    if !root_or_skip("object_has_the_maps_smarter_common_describes") {
        return;
    }
    let mut ebpf = loaded();
    for spec in &maps::ALL {
        let map = ebpf
            .take_map(spec.name)
            .unwrap_or_else(|| panic!("{} missing", spec.name));
        let data: MapData = match map {
            Map::HashMap(d)
            | Map::PerCpuHashMap(d)
            | Map::Array(d)
            | Map::PerCpuArray(d)
            | Map::LpmTrie(d)
            | Map::LruHashMap(d)
            | Map::RingBuf(d)
            | Map::ProgramArray(d) => d,
            other => panic!("{}: unexpected kind {other:?}", spec.name),
        };
        let info = data.info().unwrap();
        assert_eq!(
            info.map_type().unwrap() as u32,
            spec.kind as u32,
            "{}",
            spec.name
        );
        assert_eq!(info.key_size(), spec.key_size, "{}", spec.name);
        assert_eq!(info.value_size(), spec.value_size, "{}", spec.name);
        assert_eq!(info.max_entries(), spec.max_entries, "{}", spec.name);
    }
    for name in progs::ALL {
        assert!(ebpf.program(name).is_some(), "program {name} missing");
    }
}

#[test]
fn pod_program_passes_and_counts_crafted_packets() {
    if !root_or_skip("pod_program_passes_and_counts_crafted_packets") {
        return;
    }
    let mut ebpf = loaded();
    let prog: &mut SchedClassifier = ebpf.program_mut(progs::POD).unwrap().try_into().unwrap();
    prog.load().expect("the verifier accepts smarter_pod");
    // The sender must be the endpoint of the test run's device (loopback, ifindex 1).
    let mut eps: aya::maps::HashMap<_, EndpointKey, EndpointValue> =
        aya::maps::HashMap::try_from(ebpf.map_mut(maps::ENDPOINTS).unwrap()).unwrap();
    let pod = EndpointValue {
        ifindex: 1,
        mac: [0x02, 0, 0, 0, 0, 0x03],
        ..EndpointValue::default()
    };
    eps.insert(EndpointKey::from_octets([172, 39, 0, 3]), pod, 0)
        .unwrap();
    let prog: &mut SchedClassifier = ebpf.program_mut(progs::POD).unwrap().try_into().unwrap();

    let packet = udp_packet();
    let mut out = vec![0u8; packet.len() + 64];
    let repeat = 3;
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(&packet),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, TC_ACT_OK);
    assert_eq!(result.data_size_out as usize, packet.len());
    assert_eq!(
        &out[..packet.len()],
        &packet[..],
        "the packet is not modified"
    );

    let stats: PerCpuHashMap<_, u32, EndpointStats> =
        PerCpuHashMap::try_from(ebpf.map(maps::EP_STATS).unwrap()).unwrap();
    let entries: Vec<_> = stats.iter().map(Result::unwrap).collect();
    assert_eq!(
        entries.len(),
        1,
        "one interface (the test run's device) was counted"
    );
    let (packets, bytes) = entries[0]
        .1
        .iter()
        .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
    assert_eq!(packets, u64::from(repeat));
    assert_eq!(bytes, u64::from(repeat) * packet.len() as u64);
}
