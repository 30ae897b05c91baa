//! Stress and faults with the real plugin binary: hundreds of ADD/DEL cycles at concurrency 20,
//! the plugin SIGKILLed at random points of ADD and DEL followed by the runtime's retry or GC,
//! and full or read-only directories. After each, a leak census must come back empty:
//! allocation files, veths, records, endpoint, hostPort and conntrack entries, nftables
//! elements. The concurrency and SIGKILL tests run with every CPU also busy
//! ([`CpuLoad::busy_all`]), so that races show up here rather than on a loaded machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use smarter_testbed::load::CpuLoad;
use smarter_testbed::{CniCall, WAN_SERVER_IP, World, spawn_in, spawn_plugin};

/// Everything of every attachment is gone, in both datapaths.
fn census(w: &World, context: &str) {
    assert_no_leaks(w, context);
    if let Some(dp) = ebpf(w) {
        assert_eq!(
            dp.flows().unwrap(),
            Some(vec![]),
            "{context}: conntrack left"
        );
        assert_eq!(
            dp.host_ports().unwrap(),
            vec![],
            "{context}: hostPorts left"
        );
        let ports = dp.fill().unwrap();
        let ifaces = ports
            .iter()
            .find(|m| m.map == "ep_ifaces")
            .expect("ep_ifaces");
        assert_eq!(ifaces.entries, 0, "{context}: ep_ifaces entries left");
    }
    // The bridge table's per-port sets (absent with the table).
    for set in ["macs", "link_locals"] {
        if let Ok(out) = w.node().exec(&[
            "nft",
            "-j",
            "list",
            "set",
            "bridge",
            "smarter_smartnet",
            set,
        ]) {
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            let elems = doc["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["set"]["elem"].as_array())
                .map(Vec::len)
                .sum::<usize>();
            assert_eq!(elems, 0, "{context}: nftables {set} elements left");
        }
    }
    let nft = with_datapath(w, "nftables", |d| {
        (d.endpoints().unwrap(), d.host_ports().unwrap())
    });
    if let Ok(Some((eps, ports))) = nft {
        assert_eq!(eps, vec![], "{context}: nftables endpoints left");
        assert_eq!(ports, vec![], "{context}: nftables hostPorts left");
    }
}

fn conf_for(w: &World, dp: &str) -> Value {
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!(dp);
    conf
}

/// `threads` workers, each ADD → one UDP datagram to the wan (a conntrack entry) → DEL,
/// `rounds` times, with a hostPort per worker, on a machine whose CPUs are all busy.
fn cycles(test: &str, dp: &str, threads: usize, rounds: usize) {
    let Some(mut w) = world(test) else { return };
    let conf = conf_for(&w, dp);
    let nss: Vec<PathBuf> = (0..threads)
        .map(|i| w.add_pod_ns(&format!("p{i}")).unwrap().path().to_path_buf())
        .collect();
    let w = Arc::new(w);
    let load = CpuLoad::busy_all();
    let workers: Vec<_> = nss
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            let (w, mut conf) = (w.clone(), conf.clone());
            conf["runtimeConfig"] = json!({"portMappings": [
                {"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}
            ]});
            std::thread::spawn(move || {
                for r in 0..rounds {
                    let id = format!("c{i}-{r}");
                    add_ok(&w, &conf, &id, &ns);
                    spawn_in(w.pod(&format!("p{i}")).unwrap(), || {
                        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                        let _ = s.send_to(b"x", (WAN_SERVER_IP, 9));
                    })
                    .join()
                    .unwrap();
                    let out = call(&w, &CniCall::new("DEL", &conf).pod(&id, &ns));
                    assert_eq!(out.status, 0, "DEL {id}: {}\n{}", out.stdout, out.stderr);
                }
            })
        })
        .collect();
    for h in workers {
        h.join().expect("worker");
    }
    drop(load);
    census(&w, &format!("{dp}: after {} cycles", threads * rounds));
}

#[test]
fn five_hundred_cycles_at_concurrency_20_ebpf() {
    cycles("stress_ebpf", "ebpf", 20, 25);
}

#[test]
fn hundred_cycles_at_concurrency_20_nftables() {
    cycles("stress_nft", "nftables", 20, 5);
}

/// A tiny deterministic generator, so a failure names a reproducible iteration.
fn delays(seed: u64, n: usize, max_ms: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Duration::from_micros((x >> 33) % (max_ms * 1000))
        })
        .collect()
}

/// Starts `call`, kills it with SIGKILL after `after`; true when it was still running.
fn kill_midway(w: &World, c: &CniCall, after: Duration) -> bool {
    let mut child = spawn_plugin(w.node(), &bin(), c).unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn sigkill(dp: &str) {
    let Some(mut w) = world(&format!("sigkill_{dp}")) else {
        return;
    };
    let mut conf = conf_for(&w, dp);
    conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    // Load the datapath once so the kills land in the per-pod work, not the first load.
    add_ok(&w, &conf, "warm", &ns);
    assert_eq!(
        call(&w, &CniCall::new("DEL", &conf).pod("warm", &ns)).status,
        0
    );
    let (mut killed_add, mut killed_del) = (0, 0);
    // The kills land wherever the plugin was preempted, as on a busy node.
    let _load = CpuLoad::busy_all();
    for (i, after) in delays(7, 30, 60).into_iter().enumerate() {
        let id = format!("k{i}");
        let add = CniCall::new("ADD", &conf).pod(&id, &ns);
        let del = CniCall::new("DEL", &conf).pod(&id, &ns);
        match i % 3 {
            // Killed ADD, then the runtime's DEL.
            0 => {
                killed_add += usize::from(kill_midway(&w, &add, after));
                let out = call(&w, &del);
                assert_eq!(
                    out.status, 0,
                    "iteration {i}: DEL after killed ADD: {}",
                    out.stdout
                );
            }
            // Killed ADD, then GC with no valid attachment.
            1 => {
                killed_add += usize::from(kill_midway(&w, &add, after));
                let mut gc = conf.clone();
                gc["cni.dev/valid-attachments"] = json!([]);
                let out = call(&w, &CniCall::new("GC", &gc));
                assert_eq!(
                    out.status, 0,
                    "iteration {i}: GC after killed ADD: {}",
                    out.stdout
                );
            }
            // Completed ADD, killed DEL, then the runtime's DEL retry.
            _ => {
                add_ok(&w, &conf, &id, &ns);
                killed_del += usize::from(kill_midway(&w, &del, after / 4));
                let out = call(&w, &del);
                assert_eq!(out.status, 0, "iteration {i}: DEL retry: {}", out.stdout);
            }
        }
        census(&w, &format!("{dp}: iteration {i} (killed after {after:?})"));
        assert!(
            pod_links(w.pod("pod").unwrap()).is_empty(),
            "{dp}: iteration {i}: pod interface left"
        );
    }
    // The pod still works afterwards.
    add_ok(&w, &conf, "after", &ns);
    assert!(ping(w.pod("pod").unwrap(), "172.39.0.1".parse().unwrap()));
    eprintln!(
        "{dp}: {killed_add} ADDs and {killed_del} DELs killed mid-flight out of 30 iterations"
    );
}

#[test]
fn sigkill_during_add_and_del_ebpf() {
    sigkill("ebpf");
}

#[test]
fn sigkill_during_add_and_del_nftables() {
    sigkill("nftables");
}

/// A small tmpfs mounted for one test and unmounted on drop (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "smarter-test"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs {opts} on {}", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_or_read_only_directories_fail_cleanly() {
    let Some(mut w) = world("fullfs") else { return };
    let ns = w.add_pod_ns("pod").unwrap().path().to_path_buf();
    let scratch = tempfile::tempdir().unwrap();

    // A read-only dataDir.
    let ro = Tmpfs::mount(&scratch.path().join("ro"), "ro,size=64k,mode=0755");
    let mut conf = w.netconf("1.1.0");
    conf["dataDir"] = json!(ro.0);
    let out = call(&w, &CniCall::new("ADD", &conf).pod("c1", &ns));
    assert_eq!(out.code(), Some(5), "read-only dataDir: {}", out.stdout);
    assert!(
        out.msg().contains("Read-only"),
        "names the cause: {}",
        out.msg()
    );
    census(&w, "read-only dataDir");
    assert!(pod_links(w.pod("pod").unwrap()).is_empty());

    // A full stateDir: the record cannot be written after everything else was set up.
    let full = Tmpfs::mount(&scratch.path().join("full"), "size=16k,mode=0755");
    let filler = full.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let mut conf = w.netconf("1.1.0");
    conf["stateDir"] = json!(full.0);
    let out = call(&w, &CniCall::new("ADD", &conf).pod("c2", &ns));
    assert_ne!(
        out.status, 0,
        "ADD with a full stateDir must fail: {}",
        out.stdout
    );
    assert!(
        out.msg().contains("No space left"),
        "names the cause: {}",
        out.msg()
    );
    census(&w, "full stateDir");
    assert!(pod_links(w.pod("pod").unwrap()).is_empty());
    // Room again: the same pod can be added.
    std::fs::remove_file(&filler).unwrap();
    add_ok(&w, &conf, "c2", &ns);
    drop(w);
}

#[test]
fn full_endpoint_map_gives_a_clear_error_and_spares_existing_pods() {
    use aya::maps::{HashMap, Map, MapData};
    use smarter_common::{EndpointKey, EndpointValue, LAYOUT_VERSION, maps};

    let Some(mut w) = world("mapfull") else {
        return;
    };
    let conf = conf_for(&w, "ebpf");
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    add_ok(&w, &conf, "c0", &ns0);
    let pin = w.bpffs_dir().join(format!(
        "smartnet/v{LAYOUT_VERSION}/maps/{}",
        maps::ENDPOINTS
    ));
    let map = Map::from_map_data(MapData::from_pin(&pin).unwrap()).unwrap();
    let mut endpoints: HashMap<MapData, EndpointKey, EndpointValue> = map.try_into().unwrap();
    // Fill the table with stand-ins (10.x addresses nobody routes to).
    let mut fake = Vec::new();
    for i in 1..maps::ENDPOINTS_MAX {
        let key = EndpointKey::from_octets([10, 99, (i >> 8) as u8, i as u8]);
        let value = EndpointValue {
            ifindex: 1,
            flags: 0,
            mac: [2, 0, 0, 0, 0, 1],
            pad: [0; 2],
        };
        endpoints.insert(key, value, 0).unwrap();
        fake.push(key);
    }
    let out = call(&w, &CniCall::new("ADD", &conf).pod("c1", &ns1));
    assert_eq!(out.code(), Some(103), "{}", out.stdout);
    assert!(
        out.msg().contains("is full") && out.msg().contains("1024"),
        "names the limit: {}",
        out.msg()
    );
    assert!(pod_links(w.pod("pod1").unwrap()).is_empty(), "rolled back");
    assert_eq!(node_veths(&w).len(), 1, "only the existing pod's veth");
    assert!(
        ping(w.pod("pod0").unwrap(), "172.39.0.1".parse().unwrap()),
        "pod0 unaffected"
    );
    for key in fake {
        endpoints.remove(&key).unwrap();
    }
    add_ok(&w, &conf, "c1", &ns1);
}
