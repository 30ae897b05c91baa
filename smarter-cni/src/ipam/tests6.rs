//! Behaviour of [`Ipam6`] against a real directory (no root needed), beside the IPv4 IPAM.

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::thread;

use super::super::Ipam;
use super::*;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ipam6(data_dir: &Path, cidr: &str) -> Ipam6 {
    let net: Ipv6Network = cidr.parse().unwrap();
    Ipam6::new(
        data_dir,
        "smarter",
        net,
        Ipv6Addr::from(u128::from(net.network()) + 1),
    )
    .unwrap()
}

fn ipam4(data_dir: &Path) -> Ipam {
    Ipam::new(
        data_dir,
        "smarter",
        "172.39.0.0/24".parse().unwrap(),
        Ipv4Addr::new(172, 39, 0, 1),
    )
    .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn files_sit_beside_the_ipv4_ones_in_host_local_format() {
    let tmp = tempfile::tempdir().unwrap();
    let v4 = ipam4(tmp.path());
    let v6 = ipam6(tmp.path(), "fd00:ac27::/64");
    assert_eq!(v4.dir(), v6.dir());
    assert_eq!(
        v4.allocate("c0ffee", "eth0", None).unwrap().to_string(),
        "172.39.0.2"
    );
    // ::0 (first) and ::1 (the gateway) are never handed out.
    assert_eq!(
        v6.allocate(" c0ffee ", "eth0", None).unwrap(),
        ip6("fd00:ac27::2")
    );
    let dir = v6.dir();
    assert_eq!(
        fs::read(dir.join("fd00:ac27::2")).unwrap(),
        b"c0ffee\r\neth0"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.1")).unwrap(),
        b"fd00:ac27::2"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"172.39.0.2"
    );
    assert_eq!(
        names(dir),
        [
            "172.39.0.2",
            "fd00:ac27::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    // Each family sees its own files only.
    assert_eq!(v4.allocations().unwrap().len(), 1);
    assert_eq!(v6.allocations().unwrap().len(), 1);
    assert_eq!(
        v6.lookup("c0ffee", "eth0").unwrap(),
        Some(ip6("fd00:ac27::2"))
    );
    assert_eq!(
        v6.release("c0ffee", "eth0").unwrap(),
        Some(ip6("fd00:ac27::2"))
    );
    assert_eq!(v6.release("c0ffee", "eth0").unwrap(), None);
    assert_eq!(
        v4.lookup("c0ffee", "eth0").unwrap().map(|i| i.to_string()),
        Some("172.39.0.2".into())
    );
    assert_eq!(
        v4.release("c0ffee", "eth0").unwrap().map(|i| i.to_string()),
        Some("172.39.0.2".into())
    );
    assert_eq!(
        names(dir),
        ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    );
}

#[test]
fn adopts_host_local_ipv6_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smarter");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("fd00:ac27::2"), b"other\r\neth0").unwrap();
    fs::write(dir.join("fd00:ac27::3"), b"legacy").unwrap();
    fs::write(dir.join("last_reserved_ip.1"), b"fd00:ac27::3").unwrap();
    let v6 = ipam6(tmp.path(), "fd00:ac27::/64");
    assert_eq!(
        v6.allocate("new", "eth0", None).unwrap(),
        ip6("fd00:ac27::4")
    );
    assert_eq!(
        v6.lookup("legacy", "net1").unwrap(),
        Some(ip6("fd00:ac27::3"))
    );
    assert_eq!(
        v6.release("legacy", "net1").unwrap(),
        Some(ip6("fd00:ac27::3"))
    );
}

#[test]
fn round_robin_wraps_and_exhausts_a_small_subnet() {
    let tmp = tempfile::tempdir().unwrap();
    // A /126: ::0 first, ::3 last, ::1 gateway: only ::2 is usable.
    let err = Ipam6::new(
        tmp.path(),
        "n",
        "fd00::/126".parse().unwrap(),
        ip6("fd00::1"),
    );
    assert!(matches!(err, Err(IpamError::SubnetTooSmall { .. })));
    let v6 = ipam6(tmp.path(), "fd00:1::/120");
    let mut got = HashSet::new();
    for i in 0..253 {
        assert!(got.insert(v6.allocate(&format!("c{i}"), "eth0", None).unwrap()));
    }
    assert!(!got.contains(&ip6("fd00:1::")));
    assert!(!got.contains(&ip6("fd00:1::1")));
    assert!(!got.contains(&ip6("fd00:1::ff")));
    let err = v6.allocate("one-too-many", "eth0", None).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("fd00:1::/120"), "{err}");
    v6.release("c7", "eth0").unwrap();
    assert_eq!(
        v6.allocate("again", "eth0", None).unwrap(),
        ip6("fd00:1::9")
    );
}

#[test]
fn requested_addresses_are_honoured_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v6 = ipam6(tmp.path(), "fd00:ac27::/64");
    let want = ip6("fd00:ac27::abcd");
    assert_eq!(v6.allocate("a", "eth0", Some(want)).unwrap(), want);
    let err = v6.allocate("b", "eth0", Some(want)).unwrap_err();
    assert!(matches!(err, IpamError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("a/eth0"), "{err}");
    for (ip, why) in [
        ("fd00:ac28::5", "outside"),
        ("fd00:ac27::", "first"),
        ("fd00:ac27::1", "gateway"),
        ("fd00:ac27::ffff:ffff:ffff:ffff", "last"),
    ] {
        let err = v6.allocate("c", "eth0", Some(ip6(ip))).unwrap_err();
        assert!(matches!(err, IpamError::RequestedNotUsable { .. }), "{ip}");
        assert!(
            err.to_string().contains(why) && err.to_string().contains(ip),
            "{err}"
        );
    }
    let err = v6.allocate("a", "eth0", None).unwrap_err();
    assert!(matches!(err, IpamError::AlreadyAllocated { .. }), "{err}");
}

#[test]
fn refuses_bad_subnets() {
    let tmp = tempfile::tempdir().unwrap();
    let new = |cidr: &str, gw: &str| Ipam6::new(tmp.path(), "n", cidr.parse().unwrap(), ip6(gw));
    assert!(matches!(
        new("fd00::/48", "fd00::1"),
        Err(IpamError::SubnetTooSmall { .. })
    ));
    assert!(matches!(
        new("fd00::1/64", "fd00::1"),
        Err(IpamError::HostBitsSet { .. })
    ));
    assert!(matches!(
        new("fd00::/64", "fd01::1"),
        Err(IpamError::InvalidGateway { .. })
    ));
    assert!(matches!(
        new("fd00::/64", "fd00::"),
        Err(IpamError::InvalidGateway { .. })
    ));
    let err = Ipam6::new(
        tmp.path(),
        "a/b",
        "fd00::/64".parse().unwrap(),
        ip6("fd00::1"),
    );
    assert!(matches!(err, Err(IpamError::InvalidNetworkName { .. })));
}

#[test]
fn both_families_from_many_threads_never_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path();
    thread::scope(|s| {
        for t in 0..20 {
            s.spawn(move || {
                let (v4, v6) = (ipam4(data_dir), ipam6(data_dir, "fd00:ac27::/64"));
                for i in 0..5 {
                    let id = format!("t{t}-{i}");
                    v4.allocate(&id, "eth0", None).unwrap();
                    v6.allocate(&id, "eth0", None).unwrap();
                }
            });
        }
    });
    let v6 = ipam6(data_dir, "fd00:ac27::/64");
    let all = v6.allocations().unwrap();
    assert_eq!(all.len(), 100);
    let distinct: HashSet<_> = all.iter().map(|a| a.ip).collect();
    assert_eq!(distinct.len(), 100);
    assert_eq!(ipam4(data_dir).allocations().unwrap().len(), 100);
    let a = &all[0];
    assert!(v6.release_allocation(a).unwrap());
    assert!(!v6.release_allocation(a).unwrap());
}
