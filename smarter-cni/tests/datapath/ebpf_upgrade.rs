//! Program upgrade within one map layout: when the pinned programs come from another build
//! (here: the recorded object id is changed, as an older release would have left it), the next
//! opener swaps the program pins and re-attaches every endpoint (TCX and netlink) and the
//! uplink, keeping the maps — a TCP stream through the NAT runs on without a break.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use smarter_cni::datapath::ebpf::EbpfDatapath;
use smarter_testbed::{CniCall, EchoServer, WAN_SERVER_IP, spawn_in};

fn program_id(w: &smarter_testbed::World) -> u32 {
    EbpfDatapath::open_existing(w.bpffs_dir(), "smartnet")
        .unwrap()
        .unwrap()
        .program_id()
        .unwrap()
}

#[test]
fn upgraded_programs_take_over_every_attachment_without_a_break() {
    let Some(mut w) = world("ebpf_upgrade") else {
        return;
    };
    let mut conf = w.netconf("1.1.0");
    conf["datapath"] = json!("ebpf");
    let mut netlink = conf.clone();
    netlink["tcAttach"] = json!("netlink");
    let ns0 = w.add_pod_ns("pod0").unwrap().path().to_path_buf();
    let ns1 = w.add_pod_ns("pod1").unwrap().path().to_path_buf();
    let ns2 = w.add_pod_ns("pod2").unwrap().path().to_path_buf();
    let r0 = add_ok(&w, &conf, "tcx", &ns0);
    let r1 = add_ok(&w, &netlink, "netlink", &ns1);
    let ip1 = result_ip(&r1);

    let _srv = EchoServer::tcp(w.wan(), WAN_SERVER_IP, 8000);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (s, r) = (stop.clone(), rounds.clone());
    let stream = spawn_in(w.pod("pod0").unwrap(), move || -> Result<(), String> {
        let to = SocketAddr::from((WAN_SERVER_IP, 8000));
        let mut c =
            TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        while !s.load(Ordering::Relaxed) {
            c.write_all(&[7; 512]).map_err(|e| e.to_string())?;
            c.read_exact(&mut buf).map_err(|e| e.to_string())?;
            r.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    });
    let wait_rounds = |more: u64| {
        let (start, end) = (
            rounds.load(Ordering::Relaxed),
            Instant::now() + Duration::from_secs(10),
        );
        while rounds.load(Ordering::Relaxed) < start + more {
            assert!(Instant::now() < end, "the stream stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_rounds(20);

    let old = program_id(&w);
    let marker = w.state_dir().join("smartnet/ebpf-smartnet.object");
    assert!(marker.exists(), "the loader records the pinned object");
    std::fs::write(&marker, "0000000000000000").unwrap();
    add_ok(&w, &conf, "trigger", &ns2);
    let new = program_id(&w);
    assert_ne!(new, old, "the pod program was replaced");
    assert_ne!(
        std::fs::read_to_string(&marker).unwrap(),
        "0000000000000000"
    );

    wait_rounds(20);
    for (id, ns, r, c) in [("tcx", &ns0, &r0, &conf), ("netlink", &ns1, &r1, &netlink)] {
        let mut check = c.clone();
        check["prevResult"] = r.clone();
        let out = call(&w, &CniCall::new("CHECK", &check).pod(id, ns));
        assert_eq!(
            out.status, 0,
            "{id} attached to the new program: {}",
            out.stdout
        );
    }
    assert!(
        ping(w.pod("pod0").unwrap(), ip1),
        "pod → pod after the upgrade"
    );
    assert!(
        ping(w.pod("pod1").unwrap(), WAN_SERVER_IP),
        "NAT after the upgrade"
    );
    let gone = w
        .node()
        .exec(&["bpftool", "prog", "show", "id", &old.to_string()]);
    assert!(
        gone.is_err() || !gone.unwrap().status.success(),
        "the old program is released"
    );
    stop.store(true, Ordering::Relaxed);
    stream
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the stream broke across the upgrade: {e}"));
}
