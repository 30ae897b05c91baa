//! Sandboxes through containerd's CRI: addresses, networking, Stop/Remove, a vanished
//! namespace, containerd restarted under running pods, 20 in parallel; both datapaths.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use serde_json::Value;
use smarter_testbed::NODE_UPLINK_IP;
use smarter_testbed::containerd::Sandbox;
use smarter_testbed::load::CpuLoad;

use crate::common::*;
use crate::*;

/// RunPodSandbox for three pods with metadata, hostnames and port mappings: each is ready
/// with a distinct address in 172.39.0.0/16 that PodSandboxStatus reports, the plugin's
/// record names the pod (containerd's K8S_POD_* args), and the port mappings containerd
/// sent (Go field names) are in the datapath.
#[test]
fn run_pod_sandbox_gets_addresses() {
    let Some(w) = setup("containerd_run_pod_sandbox") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let mut ips = Vec::new();
        for (i, name) in ["web", "db", "cache"].into_iter().enumerate() {
            let port = 8080 + u16::try_from(i).unwrap();
            let sb = c.run(c.config(name, &format!("{name}-host"), &[(port, 80)]));
            assert!(in_pod_subnet(sb.ip), "{dp}: {name} got {}", sb.ip);
            assert_eq!(sb.info["config"]["hostname"], format!("{name}-host"));
            assert_eq!(sb.info["config"]["metadata"]["name"], name);
            ips.push(sb.ip);
        }
        let mut sorted = ips.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{dp}: distinct addresses {ips:?}");
        assert_eq!(allocations(&w).len(), 3, "{dp}");
        assert_eq!(records(&w).len(), 3, "{dp}");
        // The records carry containerd's pod identity.
        let dir = w.state_dir().join("smartnet");
        let mut names: Vec<String> = records(&w)
            .iter()
            .map(|r| {
                let v: Value =
                    serde_json::from_slice(&std::fs::read(dir.join(r)).unwrap()).unwrap();
                v.to_string()
            })
            .collect();
        names.sort();
        for name in ["web", "db", "cache"] {
            assert!(
                names.iter().any(|r| r.contains(&format!("\"{name}\""))),
                "{dp}: a record names pod {name}: {names:?}"
            );
        }
        // hostPorts arrived (containerd sends HostPort/ContainerPort): one per pod.
        let ports = host_ports(&w, dp);
        assert_eq!(ports, 3, "{dp}: hostPorts in the datapath");
        // What containerd 1.6 sent: Go field names in portMappings (the fault this suite
        // guards against), the pod's identity in CNI_ARGS-derived records.
        let calls = c.calls();
        let adds: Vec<_> = calls.iter().filter(|c| c.0 == "ADD").collect();
        assert_eq!(adds.len(), 3, "{dp}: {calls:?}");
        for (_, _, _, stdin) in &adds {
            let pm = &stdin["runtimeConfig"]["portMappings"][0];
            assert!(
                pm.get("HostPort").is_some() && pm.get("hostPort").is_none(),
                "{pm}"
            );
        }
        for id in c.sandboxes() {
            c.stop(&id);
            c.remove(&id);
        }
        assert_census_empty(&w, dp);
        // containerd 1.6 calls DEL twice per sandbox: at StopPodSandbox with the namespace
        // and its cached result as prevResult, at RemovePodSandbox again with an empty
        // CNI_NETNS and no prevResult (the cache is gone). Both succeeded (the census is
        // empty and Remove did not fail).
        let calls = c.calls();
        for (_, id, _, _) in &adds {
            let dels: Vec<_> = calls
                .iter()
                .filter(|c| c.0 == "DEL" && &c.1 == id)
                .collect();
            assert_eq!(dels.len(), 2, "{dp}: {dels:?}");
            assert!(
                !dels[0].2.is_empty() && dels[0].3.get("prevResult").is_some(),
                "{dp}: {:?}",
                dels[0]
            );
            assert!(
                dels[1].2.is_empty() && dels[1].3.get("prevResult").is_none(),
                "{dp}: {:?}",
                dels[1]
            );
        }
        // containerd 1.6 never calls CHECK, STATUS or GC (the README's cniVersion table).
        assert!(
            calls.iter().all(|c| c.0 == "ADD" || c.0 == "DEL"),
            "{dp}: {calls:?}"
        );
    }
}

/// Through containerd's sandboxes: pod ↔ pod, pod → gateway, pod → wan through the NAT
/// (the wan sees the uplink address), and a server in a pod reached from the wan through
/// its hostPort.
#[test]
fn sandboxes_have_networking() {
    let Some(w) = setup("containerd_networking") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let web = c.run(c.config("web", "web", &[(8080, 80)]));
        let client = c.run(c.config("client", "client", &[]));
        assert!(ping_from(&client.netns, web.ip), "{dp}: client → web");
        assert!(ping_from(&web.netns, client.ip), "{dp}: web → client");
        assert!(ping_from(&web.netns, GATEWAY), "{dp}: web → gateway");
        assert_eq!(
            wan_source(&w, &client.netns),
            NODE_UPLINK_IP,
            "{dp}: the wan sees the uplink address"
        );
        let _srv = PeerServer::start(&web.netns, 80);
        let from_wan = peer_seen(w.wan().path(), SocketAddr::from((NODE_UPLINK_IP, 8080)))
            .unwrap_or_else(|e| panic!("{dp}: hostPort from the wan: {e}"));
        assert!(
            from_wan.starts_with("198.51.100.1:"),
            "{dp}: the pod sees the wan client: {from_wan}"
        );
        let pod_to_pod = peer_seen(&client.netns, SocketAddr::from((web.ip, 80)))
            .unwrap_or_else(|e| panic!("{dp}: client → web:80: {e}"));
        assert!(
            pod_to_pod.starts_with(&format!("{}:", client.ip)),
            "{pod_to_pod}"
        );
    }
}

/// StopPodSandbox tears the network down (containerd's CNI DEL) and RemovePodSandbox
/// forgets the sandbox: nothing is left — allocations, veths, records, endpoints, hostPorts,
/// nftables elements, the sandbox's namespace.
#[test]
fn stop_and_remove_leave_nothing() {
    let Some(w) = setup("containerd_stop_remove") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let a = c.run(c.config("a", "a", &[(9090, 90)]));
        let b = c.run(c.config("b", "b", &[]));
        assert_eq!(node_veths(&w).len(), 2, "{dp}");
        c.stop(&a.id);
        assert_eq!(node_veths(&w).len(), 1, "{dp}: a's veth gone at stop");
        assert_eq!(
            allocations(&w).len(),
            1,
            "{dp}: a's address released at stop"
        );
        // Stopping twice is fine (the kubelet retries).
        c.stop(&a.id);
        c.remove(&a.id);
        c.stop(&b.id);
        c.remove(&b.id);
        assert_eq!(c.sandboxes(), Vec::<String>::new(), "{dp}: sandboxes left");
        assert_census_empty(&w, dp);
        for sb in [&a, &b] {
            assert!(!sb.netns.exists(), "{dp}: {} left", sb.netns.display());
        }
    }
}

/// A sandbox whose network namespace is already gone when the kubelet stops it (the pause
/// process died, the namespace was unmounted): containerd calls DEL with an empty
/// `CNI_NETNS`, which must still release everything, and the sandbox can be removed.
#[test]
fn sandbox_whose_netns_was_removed() {
    let Some(w) = setup("containerd_netns_gone") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let gone = c.run(c.config("gone", "gone", &[(7070, 70)]));
        let kept = c.run(c.config("kept", "kept", &[]));
        // Kill the pause process and unmount its namespace, as a crashed node would.
        let pid = gone.info["pid"].as_i64().expect("sandbox pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
        run_ok(Command::new("umount").arg(&gone.netns));
        std::fs::remove_file(&gone.netns).unwrap();
        c.wait_not_ready(&gone.id);
        c.stop(&gone.id);
        c.remove(&gone.id);
        let dels: Vec<_> = c
            .calls()
            .into_iter()
            .filter(|call| call.0 == "DEL" && call.1 == gone.id)
            .collect();
        assert!(!dels.is_empty(), "{dp}: containerd called DEL");
        assert!(
            dels.iter().all(|d| d.2.is_empty()),
            "{dp}: DEL without a namespace (CNI_NETNS empty): {dels:?}"
        );
        assert_eq!(node_veths(&w).len(), 1, "{dp}: only kept's veth");
        assert_eq!(allocations(&w).len(), 1, "{dp}");
        assert_eq!(records(&w).len(), 1, "{dp}");
        // The other pod is unaffected.
        assert_eq!(wan_source(&w, &kept.netns), NODE_UPLINK_IP, "{dp}");
        c.stop(&kept.id);
        c.remove(&kept.id);
        assert_census_empty(&w, dp);
    }
}

/// containerd restarted under running pods: the pods keep their sandboxes and their
/// networking, a later pod works, and nothing is duplicated (one allocation, record and
/// veth per pod; no extra ADD for the running ones).
#[test]
fn containerd_restart_under_running_pods() {
    let Some(w) = setup("containerd_restart") else {
        return;
    };
    for dp in datapaths(&w) {
        let mut c = containerd(&w, &conflist(&w, dp));
        let a = c.run(c.config("a", "a", &[(8080, 80)]));
        let b = c.run(c.config("b", "b", &[]));
        let adds_before = c.calls().iter().filter(|c| c.0 == "ADD").count();
        c.restart().expect("containerd restarted");
        // Same sandboxes, same addresses, still ready.
        for sb in [&a, &b] {
            let again = c.status(&sb.id);
            assert_eq!(again.ip, sb.ip, "{dp}: {} keeps its address", sb.id);
        }
        assert_eq!(
            c.calls().iter().filter(|c| c.0 == "ADD").count(),
            adds_before,
            "{dp}: no ADD for running pods after the restart"
        );
        assert!(ping_from(&a.netns, b.ip), "{dp}: a → b after the restart");
        assert_eq!(
            wan_source(&w, &b.netns),
            NODE_UPLINK_IP,
            "{dp}: NAT after the restart"
        );
        let _srv = PeerServer::start(&a.netns, 80);
        peer_seen(w.wan().path(), SocketAddr::from((NODE_UPLINK_IP, 8080)))
            .unwrap_or_else(|e| panic!("{dp}: hostPort after the restart: {e}"));
        // A later pod.
        let later = c.run(c.config("later", "later", &[]));
        assert!(
            in_pod_subnet(later.ip) && later.ip != a.ip && later.ip != b.ip,
            "{dp}"
        );
        assert!(ping_from(&later.netns, a.ip), "{dp}: later → a");
        assert_eq!(allocations(&w).len(), 3, "{dp}: no duplicate allocation");
        assert_eq!(records(&w).len(), 3, "{dp}: no duplicate record");
        assert_eq!(node_veths(&w).len(), 3, "{dp}: no duplicate veth");
        for id in c.sandboxes() {
            c.stop(&id);
            c.remove(&id);
        }
        assert_census_empty(&w, dp);
    }
}

/// 20 sandboxes started in parallel and then stopped and removed in parallel, with every CPU
/// also busy ([`CpuLoad::busy_all`]): 20 distinct addresses, each reaching the gateway, and
/// an empty census afterwards.
#[test]
fn twenty_sandboxes_in_parallel() {
    let Some(w) = setup("containerd_parallel") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let _load = CpuLoad::busy_all();
        let ids: Vec<String> = c.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..20 {
                let cri = c.cri.clone();
                let config = c.config(&format!("p{i}"), &format!("p{i}"), &[]);
                set.spawn(async move { cri.run_pod_sandbox(config).await });
            }
            let mut ids = Vec::new();
            while let Some(r) = set.join_next().await {
                ids.push(
                    r.unwrap()
                        .unwrap_or_else(|e| panic!("{dp}: RunPodSandbox: {e}")),
                );
            }
            ids
        });
        let sandboxes: Vec<Sandbox> = ids.iter().map(|id| c.status(id)).collect();
        let mut ips: Vec<Ipv4Addr> = sandboxes.iter().map(|s| s.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 20, "{dp}: distinct addresses");
        assert!(ips.iter().all(|ip| in_pod_subnet(*ip)), "{dp}: {ips:?}");
        for sb in &sandboxes {
            assert!(ping_from(&sb.netns, GATEWAY), "{dp}: {} → gateway", sb.ip);
        }
        assert_eq!(allocations(&w).len(), 20, "{dp}");
        c.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for id in ids {
                let cri = c.cri.clone();
                set.spawn(async move {
                    cri.stop_pod_sandbox(&id).await?;
                    cri.remove_pod_sandbox(&id).await
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap()
                    .unwrap_or_else(|e| panic!("{dp}: stop/remove: {e}"));
            }
        });
        assert_eq!(c.sandboxes(), Vec::<String>::new(), "{dp}");
        assert_census_empty(&w, dp);
    }
}
