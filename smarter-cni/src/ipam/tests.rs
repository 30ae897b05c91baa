//! Behaviour of [`Ipam`] against a real directory (no root needed).

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::store::{LAST_RESERVED_FILE, LOCK_FILE};
use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ipam(data_dir: &Path, cidr: &str, gw: &str) -> Ipam {
    Ipam::new(data_dir, "smarter", cidr.parse().unwrap(), ip(gw)).unwrap()
}

#[test]
fn files_are_byte_compatible_with_host_local() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("var/lib/cni/networks");
    let ipam = ipam(&data_dir, "172.39.0.0/24", "172.39.0.1");
    let dir = data_dir.join("smarter");
    assert_eq!(ipam.dir(), dir);
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);

    assert_eq!(
        ipam.allocate(" c0ffee ", "eth0", None).unwrap(),
        ip("172.39.0.2")
    );
    let file = dir.join("172.39.0.2");
    assert_eq!(fs::read(&file).unwrap(), b"c0ffee\r\neth0");
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o644);
    assert_eq!(
        fs::read(dir.join(LAST_RESERVED_FILE)).unwrap(),
        b"172.39.0.2"
    );
    assert!(dir.join(LOCK_FILE).is_file());
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["172.39.0.2", "last_reserved_ip.0", "lock"]);
}

#[test]
fn adopts_a_host_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smarter");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("lock"), b"").unwrap();
    fs::write(dir.join("172.39.0.2"), b"new\r\neth0").unwrap();
    fs::write(dir.join("172.39.0.3"), b"legacy").unwrap();
    fs::write(dir.join("172.39.0.4"), b"").unwrap(); // host-local crashed mid-reserve
    fs::write(dir.join("10.1.0.9"), b"old-subnet\r\neth0").unwrap();
    fs::write(dir.join(LAST_RESERVED_FILE), b"172.39.0.7").unwrap();
    let ipam = ipam(tmp.path(), "172.39.0.0/24", "172.39.0.1");

    let all = ipam.allocations().unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|a| (a.ip, a.container_id.as_str(), a.ifname.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (ip("10.1.0.9"), "old-subnet", Some("eth0")),
            (ip("172.39.0.2"), "new", Some("eth0")),
            (ip("172.39.0.3"), "legacy", None),
            (ip("172.39.0.4"), "", None),
        ]
    );
    assert_eq!(ipam.lookup("new", "eth0").unwrap(), Some(ip("172.39.0.2")));
    assert_eq!(ipam.lookup("new", "net1").unwrap(), None);
    // A legacy file matches every interface of its container.
    assert_eq!(
        ipam.lookup("legacy", "net1").unwrap(),
        Some(ip("172.39.0.3"))
    );
    assert!(matches!(
        ipam.allocate("legacy", "eth0", None),
        Err(IpamError::AlreadyAllocated { .. })
    ));
    // Round robin continues after host-local's cursor.
    assert_eq!(
        ipam.allocate("next", "eth0", None).unwrap(),
        ip("172.39.0.8")
    );
    assert_eq!(
        ipam.release("legacy", "eth0").unwrap(),
        Some(ip("172.39.0.3"))
    );
    assert!(!dir.join("172.39.0.3").exists());
    // A stale file of an earlier subnet does not block a new allocation.
    assert_eq!(
        ipam.allocate("old-subnet", "eth0", None).unwrap(),
        ip("172.39.0.9")
    );
    assert_eq!(
        ipam.lookup("old-subnet", "eth0").unwrap(),
        Some(ip("172.39.0.9"))
    );
}

#[test]
fn round_robin_does_not_reuse_a_released_address_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    let a = ipam.allocate("a", "eth0", None).unwrap();
    let b = ipam.allocate("b", "eth0", None).unwrap();
    assert_eq!((a, b), (ip("10.0.0.2"), ip("10.0.0.3")));
    assert_eq!(ipam.release("a", "eth0").unwrap(), Some(a));
    assert_eq!(ipam.allocate("c", "eth0", None).unwrap(), ip("10.0.0.4"));
    assert_eq!(ipam.allocate("a", "eth0", None).unwrap(), ip("10.0.0.5"));
}

#[test]
fn wraps_around_to_free_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    assert_eq!(ipam.allocate("a", "eth0", None).unwrap(), ip("10.0.0.2"));
    assert_eq!(
        ipam.allocate("b", "eth0", Some(ip("10.0.0.253"))).unwrap(),
        ip("10.0.0.253")
    );
    assert_eq!(ipam.allocate("c", "eth0", None).unwrap(), ip("10.0.0.254"));
    // .1 is the gateway and .2 is taken.
    assert_eq!(ipam.allocate("d", "eth0", None).unwrap(), ip("10.0.0.3"));
}

#[test]
fn exhaustion_names_the_subnet() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.9.0.0/29", "10.9.0.1");
    let got: HashSet<_> = (0..5)
        .map(|i| ipam.allocate(&format!("c{i}"), "eth0", None).unwrap())
        .collect();
    let want: HashSet<_> = (2..=6).map(|h| Ipv4Addr::new(10, 9, 0, h)).collect();
    assert_eq!(got, want);
    let err = ipam.allocate("c5", "eth0", None).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("10.9.0.0/29"), "{err}");
    assert!(err.is_transient());
    ipam.release("c3", "eth0").unwrap();
    assert_eq!(ipam.allocate("c5", "eth0", None).unwrap(), ip("10.9.0.5"));
}

#[test]
fn requested_address_is_honoured_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    assert_eq!(
        ipam.allocate("a", "eth0", Some(ip("10.0.0.77"))).unwrap(),
        ip("10.0.0.77")
    );
    let err = ipam
        .allocate("b", "eth0", Some(ip("10.0.0.77")))
        .unwrap_err();
    let IpamError::Unavailable { ip: taken, holder } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (*taken, holder.as_str()),
        (ip("10.0.0.77").into(), "a/eth0")
    );
    for bad in ["10.0.0.0", "10.0.0.1", "10.0.0.255", "10.0.1.5"] {
        let err = ipam.allocate("b", "eth0", Some(ip(bad))).unwrap_err();
        assert!(
            matches!(err, IpamError::RequestedNotUsable { .. }),
            "{bad}: {err}"
        );
    }
    // Refusals leave nothing behind; the next automatic pick follows the cursor.
    assert_eq!(ipam.lookup("b", "eth0").unwrap(), None);
    assert_eq!(ipam.allocate("b", "eth0", None).unwrap(), ip("10.0.0.78"));
}

#[test]
fn second_allocation_of_an_attachment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    let held = ipam.allocate("a", "eth0", None).unwrap();
    for requested in [None, Some(held), Some(ip("10.0.0.50"))] {
        let err = ipam.allocate("a", "eth0", requested).unwrap_err();
        assert!(
            matches!(err, IpamError::AlreadyAllocated { ip, .. } if ip == held),
            "{err}"
        );
        assert!(!err.is_transient());
    }
    // Another interface of the same container is another attachment.
    assert_eq!(ipam.allocate("a", "net1", None).unwrap(), ip("10.0.0.3"));
    assert_eq!(ipam.allocations().unwrap().len(), 2);
}

#[test]
fn release_is_idempotent_and_precise() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    let a = ipam.allocate("a", "eth0", None).unwrap();
    let a1 = ipam.allocate("a", "net1", None).unwrap();
    assert_eq!(ipam.release("a", "eth0").unwrap(), Some(a));
    assert_eq!(ipam.release("a", "eth0").unwrap(), None);
    assert_eq!(ipam.release("never", "eth0").unwrap(), None);
    assert_eq!(ipam.lookup("a", "net1").unwrap(), Some(a1));
}

#[test]
fn release_allocation_skips_reallocated_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    let ip = ipam.allocate("a", "eth0", Some(ip("10.0.0.9"))).unwrap();
    let census = ipam.allocations().unwrap();
    ipam.release("a", "eth0").unwrap();
    ipam.allocate("b", "eth0", Some(ip)).unwrap();
    assert!(!ipam.release_allocation(&census[0]).unwrap());
    let current = ipam.allocations().unwrap();
    assert!(ipam.release_allocation(&current[0]).unwrap());
    assert!(ipam.allocations().unwrap().is_empty());
}

#[test]
fn refuses_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b"] {
        let err = Ipam::new(
            tmp.path(),
            name,
            "10.0.0.0/24".parse().unwrap(),
            ip("10.0.0.1"),
        );
        assert!(
            matches!(err, Err(IpamError::InvalidNetworkName { .. })),
            "{name:?}"
        );
    }
    let ipam = ipam(tmp.path(), "10.0.0.0/24", "10.0.0.1");
    for (id, ifname) in [(" ", "eth0"), ("a\r\nb", "eth0"), ("a", ""), ("a", "et h0")] {
        let err = ipam.allocate(id, ifname, None).unwrap_err();
        assert!(
            matches!(err, IpamError::InvalidArgument { .. }),
            "{id:?} {ifname:?}"
        );
    }
    assert!(ipam.allocations().unwrap().is_empty());
}

#[test]
fn threads_with_separate_instances_never_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path();
    thread::scope(|s| {
        for t in 0..16 {
            s.spawn(move || {
                let ipam = ipam(data_dir, "10.8.0.0/22", "10.8.0.1");
                for i in 0..20 {
                    ipam.allocate(&format!("t{t}-{i}"), "eth0", None).unwrap();
                }
            });
        }
    });
    let ipam = ipam(data_dir, "10.8.0.0/22", "10.8.0.1");
    let all = ipam.allocations().unwrap();
    assert_eq!(all.len(), 320);
    let distinct: HashSet<_> = all.iter().map(|a| a.ip).collect();
    assert_eq!(distinct.len(), 320);
    for t in 0..16 {
        for i in 0..20 {
            let ip = ipam.lookup(&format!("t{t}-{i}"), "eth0").unwrap().unwrap();
            assert!(ipam.dir().join(ip.to_string()).is_file());
        }
    }
}

/// Set in child processes spawned by [`processes_never_collide`].
const CHILD_DIR_ENV: &str = "SMARTER_CNI_IPAM_TEST_CHILD_DIR";
const CHILD_ID_ENV: &str = "SMARTER_CNI_IPAM_TEST_CHILD_ID";

/// The body of a child process; a no-op when run as an ordinary test.
#[test]
fn child_process_worker() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR_ENV), std::env::var(CHILD_ID_ENV)) else {
        return;
    };
    let ipam = ipam(Path::new(&dir), "10.8.0.0/22", "10.8.0.1");
    for i in 0..25 {
        ipam.allocate(&format!("p{id}-{i}"), "eth0", None).unwrap();
        if i % 5 == 4 {
            ipam.release(&format!("p{id}-{}", i - 1), "eth0").unwrap();
        }
    }
}

#[test]
fn processes_never_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "ipam::tests::child_process_worker",
                    "--test-threads=1",
                    "-q",
                ])
                .env(CHILD_DIR_ENV, tmp.path())
                .env(CHILD_ID_ENV, id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ipam = ipam(tmp.path(), "10.8.0.0/22", "10.8.0.1");
    let all = ipam.allocations().unwrap();
    assert_eq!(all.len(), 8 * 20);
    let distinct: HashSet<_> = all.iter().map(|a| a.ip).collect();
    assert_eq!(distinct.len(), all.len());
}
