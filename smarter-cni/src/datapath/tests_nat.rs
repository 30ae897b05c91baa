//! `BPF_PROG_TEST_RUN` tests of SNAT and reverse NAT. Each runs on a thread in a private network
//! namespace (`unshare`), where a veth `up0` is the "uplink" 198.51.100.2/24 with a static
//! neighbour for the remote, so the program's FIB lookup succeeds; nothing outside that namespace
//! is touched (it disappears with the thread's namespace).

use std::process::Command;

use aya::{
    Ebpf,
    maps::{Array, HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions},
};
use smarter_common::{CtKey, CtValue, NetConfig, Verdict, VerdictStats, maps, progs};

use super::tests_verdicts::{POD, POD_MAC, csum, world_with_uplink};

pub(super) const REDIRECT: u32 = 7;
pub(super) const UPLINK: [u8; 4] = [198, 51, 100, 2];
pub(super) const REMOTE: [u8; 4] = [198, 51, 100, 7];

pub(super) fn run(ebpf: &mut Ebpf, prog: &str, packet: &[u8]) -> (u32, Vec<u8>) {
    let prog: &mut SchedClassifier = ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let mut out = vec![0u8; packet.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Runs `f` on a thread inside a fresh network namespace whose `lo` holds the uplink address.
pub(super) fn in_private_netns(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            for args in [
                &["ip", "link", "set", "lo", "up"][..],
                &[
                    "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1",
                ],
                &["ip", "addr", "add", "198.51.100.2/24", "dev", "up0"],
                &["ip", "link", "set", "up0", "up"],
                &["ip", "link", "set", "up1", "up"],
                &[
                    "ip",
                    "neigh",
                    "replace",
                    "198.51.100.7",
                    "lladdr",
                    "02:00:00:00:00:77",
                    "dev",
                    "up0",
                ],
                &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"],
            ] {
                let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
                assert!(st.success(), "{args:?}");
            }
            f();
        })
        .join()
        .unwrap();
    });
}

/// Ethernet + IPv4 (ttl 64) + `l4` from `src` to `dst`, with the L4 checksum at `csum_at`
/// (offset inside `l4`) computed (`pseudo`: over the pseudo header) unless `csum_at` is None.
fn packet(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    mut l4: Vec<u8>,
    csum_at: Option<usize>,
) -> Vec<u8> {
    if let Some(at) = csum_at {
        let mut sum_over = Vec::new();
        if proto != 1 {
            sum_over.extend_from_slice(&src);
            sum_over.extend_from_slice(&dst);
            sum_over.extend_from_slice(&[0, proto]);
            sum_over.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        }
        sum_over.extend_from_slice(&l4);
        let c = csum(&sum_over);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = vec![0x02, 0, 0, 0, 0, 0x01];
    p.extend_from_slice(&POD_MAC);
    p.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&l4);
    p
}

/// Whether the IPv4 header and the L4 checksum of `p` are valid (UDP 0 = none counts as valid).
fn checksums_ok(p: &[u8]) -> bool {
    let ip = &p[14..34];
    if csum(ip) != 0 {
        return false;
    }
    let proto = ip[9];
    let l4 = &p[34..];
    if proto == 17 && l4[6..8] == [0, 0] {
        return true;
    }
    let mut sum_over = Vec::new();
    if proto != 1 {
        sum_over.extend_from_slice(&ip[12..20]);
        sum_over.extend_from_slice(&[0, proto]);
        sum_over.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    }
    sum_over.extend_from_slice(l4);
    csum(&sum_over) == 0
}

pub(super) fn udp_l4(sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&27u16.to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(b"hello through the NAT");
    l4
}

pub(super) fn tcp_l4(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
    l4.extend_from_slice(b"data!");
    l4
}

pub(super) fn icmp_l4(kind: u8, id: u16) -> Vec<u8> {
    let mut l4 = vec![kind, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&1u16.to_be_bytes());
    l4.extend_from_slice(b"ping payload");
    l4
}

pub(super) fn port(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

pub(super) fn count(ebpf: &Ebpf, v: Verdict) -> u64 {
    let m: PerCpuArray<_, VerdictStats> =
        PerCpuArray::try_from(ebpf.map(maps::VERDICTS).unwrap()).unwrap();
    m.get(&(v as u32), 0)
        .unwrap()
        .iter()
        .map(|s| s.packets)
        .sum()
}

/// SNAT out, then the reply reverse-NATed, for one flow. Returns the NAT port.
fn roundtrip(ebpf: &mut Ebpf, name: &str, out: Vec<u8>, reply: impl Fn(u16) -> Vec<u8>) -> u16 {
    let (v, natted) = run(ebpf, progs::POD, &out);
    let all: Vec<_> = Verdict::ALL
        .iter()
        .map(|&x| (x.name(), count(ebpf, x)))
        .collect();
    assert_eq!(v, REDIRECT, "{name}: SNAT redirects to the uplink: {all:?}");
    assert_eq!(
        &natted[26..30],
        &UPLINK,
        "{name}: source is the uplink address"
    );
    assert_eq!(&natted[30..34], &out[30..34], "{name}: destination kept");
    assert_eq!(natted[22], 63, "{name}: TTL decremented");
    assert!(checksums_ok(&natted), "{name}: checksums after SNAT");
    assert_eq!(
        &natted[0..6],
        &[2, 0, 0, 0, 0, 0x77],
        "{name}: eth dst from the FIB"
    );
    let proto = out[23];
    let nat_port = if proto == 1 {
        port(&natted, 38)
    } else {
        port(&natted, 34)
    };
    assert!(
        nat_port >= smarter_common::ct::NAT_PORT_MIN,
        "{name}: port {nat_port}"
    );
    // The same flow keeps its port.
    let (_, again) = run(ebpf, progs::POD, &out);
    assert_eq!(
        &again[34..],
        &natted[34..],
        "{name}: conntrack reuses the mapping"
    );

    let reply = reply(nat_port);
    assert!(checksums_ok(&reply), "{name}: the crafted reply is valid");
    let (v, back) = run(ebpf, progs::UPLINK, &reply);
    assert_eq!(v, REDIRECT, "{name}: reply redirected into the pod");
    assert_eq!(&back[30..34], &POD, "{name}: destination is the pod again");
    assert_eq!(&back[0..6], &POD_MAC, "{name}: eth dst is the pod MAC");
    assert!(checksums_ok(&back), "{name}: checksums after reverse NAT");
    nat_port
}

#[test]
fn snat_and_reverse_nat_rewrite_with_valid_checksums() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    in_private_netns(|| {
        let up0 = nix::net::if_::if_nametoindex("up0").unwrap();
        let mut ebpf = world_with_uplink(up0);

        let udp_out = packet(POD, REMOTE, 17, udp_l4(40000, 53), Some(6));
        roundtrip(&mut ebpf, "udp", udp_out.clone(), |nat| {
            packet(REMOTE, UPLINK, 17, udp_l4(53, nat), Some(6))
        });

        // A router's "fragmentation needed" about that flow reaches the pod translated.
        let (_, natted) = run(&mut ebpf, progs::POD, &udp_out);
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00]; // MTU 1280
        icmp.extend_from_slice(&natted[14..14 + 28]);
        let error = packet([198, 51, 100, 1], UPLINK, 1, icmp, Some(2));
        assert!(checksums_ok(&error));
        let (v, back) = run(&mut ebpf, progs::UPLINK, &error);
        assert_eq!(v, REDIRECT, "ICMP error delivered into the pod");
        assert_eq!(&back[30..34], &POD, "outer destination is the pod");
        let inner = &back[42..];
        assert_eq!(&inner[12..16], &POD, "inner source is the pod");
        assert_eq!(port(inner, 20), 40000, "inner source port is the pod's");
        assert_eq!(&inner[16..20], &REMOTE);
        assert_eq!(csum(&inner[..20]), 0, "inner IPv4 checksum");
        assert!(checksums_ok(&back), "outer IPv4 and ICMP checksums");
        assert_eq!(count(&ebpf, Verdict::IcmpErrorIn), 1);
        let (_, back) = run(
            &mut ebpf,
            progs::UPLINK,
            &packet(REMOTE, UPLINK, 17, udp_l4(53, 1), Some(6)),
        );
        assert_eq!(
            &back[30..34],
            &UPLINK,
            "no conntrack entry: host traffic untouched"
        );

        // UDP without checksum: it stays 0.
        let zero = packet(POD, REMOTE, 17, udp_l4(40001, 53), None);
        let (v, natted) = run(&mut ebpf, progs::POD, &zero);
        assert_eq!(v, REDIRECT);
        assert_eq!(&natted[40..42], &[0, 0], "UDP zero checksum preserved");
        assert!(checksums_ok(&natted));

        let syn = packet(POD, REMOTE, 6, tcp_l4(40002, 80, 0x02), Some(16));
        let nat_tcp = roundtrip(&mut ebpf, "tcp", syn, |nat| {
            packet(REMOTE, UPLINK, 6, tcp_l4(80, nat, 0x12), Some(16))
        });
        let echo = packet(POD, REMOTE, 1, icmp_l4(8, 0x4242), Some(2));
        roundtrip(&mut ebpf, "icmp echo", echo, |nat| {
            packet(REMOTE, UPLINK, 1, icmp_l4(0, nat), Some(2))
        });

        let ct: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map(maps::CT_OUT).unwrap()).unwrap();
        let entries: Vec<_> = ct.iter().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 4, "udp, udp (no csum), tcp, icmp");
        let tcp = entries.iter().find(|(k, _)| k.proto == 6).unwrap();
        assert_eq!(u16::from_be(tcp.1.port), nat_tcp);
        assert_eq!(
            tcp.1.state,
            smarter_common::ct::CT_ESTABLISHED,
            "SYN then SYN-ACK"
        );
        assert!(tcp.1.last_seen > 0);
        assert_eq!(
            count(&ebpf, Verdict::NatOut),
            8,
            "3 udp + 1 udp + 2 tcp + 2 icmp"
        );

        // Cost of an established flow's SNAT (kernel-measured average, reported, not asserted).
        let est = packet(POD, REMOTE, 17, udp_l4(40000, 53), Some(6));
        let prog: &mut SchedClassifier = ebpf.program_mut(progs::POD).unwrap().try_into().unwrap();
        let mut out = vec![0u8; est.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&est),
                data_out: Some(&mut out),
                repeat: 100_000,
                ..TestRunOptions::default()
            })
            .unwrap();
        eprintln!(
            "smarter_pod SNAT (established UDP flow): {:?} per packet",
            r.duration
        );
        assert_eq!(count(&ebpf, Verdict::NatIn), 3);
    });
}

#[test]
fn mutated_nat_packets_get_defined_verdicts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    in_private_netns(|| {
        let up0 = nix::net::if_::if_nametoindex("up0").unwrap();
        let mut ebpf = world_with_uplink(up0);
        let udp_out = packet(POD, REMOTE, 17, udp_l4(40000, 53), Some(6));
        let (_, natted) = run(&mut ebpf, progs::POD, &udp_out);
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
        icmp.extend_from_slice(&natted[14..14 + 28]);
        let seeds = [
            udp_out,
            packet(POD, REMOTE, 6, tcp_l4(40002, 80, 0x02), Some(16)),
            packet(POD, REMOTE, 1, icmp_l4(8, 7), Some(2)),
            packet(REMOTE, UPLINK, 17, udp_l4(53, 61000), Some(6)),
            packet([198, 51, 100, 1], UPLINK, 1, icmp, Some(2)),
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut ran, mut refused) = (0u32, 0u32);
        for i in 0..2500 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + next() % 4) {
                let at = 14 + (next() as usize) % (p.len() - 14);
                p[at] = next() as u8;
            }
            if next() % 4 == 0 {
                p.truncate(14 + (next() as usize) % (p.len() - 14));
            }
            for prog in progs::ALL {
                let prog_ref: &mut SchedClassifier =
                    ebpf.program_mut(prog).unwrap().try_into().unwrap();
                let mut out = vec![0u8; p.len() + 256];
                let Ok(r) = prog_ref.test_run(TestRunOptions {
                    data_in: Some(&p),
                    data_out: Some(&mut out),
                    ..TestRunOptions::default()
                }) else {
                    refused += 1;
                    continue;
                };
                ran += 1;
                assert!(
                    [0, 2, 7].contains(&r.return_value),
                    "{prog}: {} for {p:02x?}",
                    r.return_value
                );
            }
        }
        eprintln!("mutation fuzz: {ran} runs, {refused} refused by the kernel");
        assert!(ran > 4000);
    });
}

#[test]
fn port_range_expiry_and_bridge_mac_come_from_the_config() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    in_private_netns(|| {
        let up0 = nix::net::if_::if_nametoindex("up0").unwrap();
        let mut ebpf = world_with_uplink(up0);
        let bridge_mac = [0x02, 0xbb, 0, 0, 0, 0x01];
        {
            let mut cfg: Array<_, NetConfig> =
                Array::try_from(ebpf.map_mut(maps::CONFIG).unwrap()).unwrap();
            let mut c = cfg.get(&maps::CONFIG_INDEX, 0).unwrap();
            c.nat_port_min = 50000;
            c.nat_port_max = 50001;
            c.ct_timeout_s = [0, 0, 1, 0]; // UDP: 1 s
            c.bridge_mac = bridge_mac;
            cfg.set(maps::CONFIG_INDEX, c, 0).unwrap();
        }
        let mut ports = Vec::new();
        for sport in [40000, 40001, 40002] {
            let (v, out) = run(
                &mut ebpf,
                progs::POD,
                &packet(POD, REMOTE, 17, udp_l4(sport, 53), Some(6)),
            );
            ports.push((v, port(&out, 34)));
        }
        assert_eq!(ports[0].0, REDIRECT);
        assert_eq!(ports[1].0, REDIRECT);
        let mut used = [ports[0].1, ports[1].1];
        used.sort_unstable();
        assert_eq!(
            used,
            [50000, 50001],
            "both ports of the range, no collision"
        );
        assert_eq!(ports[2].0, 2, "range exhausted for this remote: dropped");
        assert_eq!(count(&ebpf, Verdict::DropNatPorts), 1);

        // Reverse NAT uses the bridge MAC as source.
        let nat = ports[0].1;
        let (v, back) = run(
            &mut ebpf,
            progs::UPLINK,
            &packet(REMOTE, UPLINK, 17, udp_l4(53, nat), Some(6)),
        );
        assert_eq!(v, REDIRECT);
        assert_eq!(&back[6..12], &bridge_mac);

        // An expired flow is treated as new: its reverse entry is recreated (fresh last_seen).
        let mut ct_out: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map_mut(maps::CT_OUT).unwrap()).unwrap();
        let stale: Vec<_> = ct_out.iter().map(Result::unwrap).collect();
        for (k, mut v) in stale {
            v.last_seen = 1;
            ct_out.insert(k, v, 0).unwrap();
        }
        let mut ct_in: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map_mut(maps::CT_IN).unwrap()).unwrap();
        let stale: Vec<_> = ct_in.iter().map(Result::unwrap).collect();
        for (k, mut v) in stale {
            v.last_seen = 1;
            ct_in.insert(k, v, 0).unwrap();
        }
        let (v, _) = run(
            &mut ebpf,
            progs::POD,
            &packet(POD, REMOTE, 17, udp_l4(40000, 53), Some(6)),
        );
        assert_eq!(v, REDIRECT);
        let ct_in: HashMap<_, CtKey, CtValue> =
            HashMap::try_from(ebpf.map(maps::CT_IN).unwrap()).unwrap();
        let pod_port = 40000u16.to_be();
        let fresh = ct_in
            .iter()
            .map(Result::unwrap)
            .find(|(_, v)| v.port == pod_port)
            .expect("reverse entry of the renewed flow");
        assert!(fresh.1.last_seen > 1, "recreated, not the stale one");
    });
}
