//! The node-local DNS answering a pod's real CRI hostname: `smarter-agent --dns
//! --cri-socket` pointed at this containerd (no stub). The hostname differs from the pod
//! name, so an answer for it can only come from the sandbox config read over CRI; both
//! datapaths; the name goes when the pod does.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Child;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use smarter_cni::dns::DEFAULT_LISTEN_IP;
use smarter_cni::dns::query::make_query;
use smarter_testbed::containerd::stop_child;

use crate::*;

/// Stops the child (SIGTERM, then SIGKILL) on drop.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// One A query over UDP from the namespace at `from`; the addresses, or `None` without an
/// answer (or NXDOMAIN: no addresses).
pub fn resolve(from: &Path, server: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let q = make_query(name, RecordType::A);
    let id = q.metadata.id;
    let bytes = q.to_vec().expect("encode");
    in_netns(from, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.send_to(&bytes, SocketAddr::from((server, 53))).ok()?;
        let mut buf = vec![0u8; 4096];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let m = Message::from_vec(&buf[..n]).ok()?;
        (m.metadata.id == id).then(|| {
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()
        })
    })
}

/// Asks until the answer is `want` (a readiness wait of at most `within`); the last answer.
pub fn wait_answer(
    from: &Path,
    name: &str,
    want: &[Ipv4Addr],
    within: Duration,
) -> Option<Vec<Ipv4Addr>> {
    let deadline = Instant::now() + within;
    loop {
        let got = resolve(from, DEFAULT_LISTEN_IP, name);
        if got.as_deref() == Some(want) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn node_dns_answers_the_cri_hostname() {
    let Some(w) = setup("containerd_dns") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 203.0.113.53\n").unwrap();
    for dp in datapaths(&w) {
        let list = conflist(&w, dp);
        let conf = dir.path().join(format!("{dp}.conflist"));
        std::fs::write(&conf, list.to_string()).unwrap();
        let c = containerd(&w, &list);
        let agent = Stopped(
            agent_command(&w, &conf, &dir.path().join(format!("{dp}.health")))
                .arg("--dns")
                .arg("--cri-socket")
                .arg(c.socket())
                .arg("--resolv-conf")
                .arg(&resolv)
                .args(["--metrics-addr", "127.0.0.1:19412", "--log", "warn"])
                .stdin(Stdio::null())
                .spawn()
                .expect("start smarter-agent"),
        );
        let web = c.run(c.config("web-0", "frontend", &[]));
        let client = c.run(c.config("client", "client", &[]));
        for name in [
            "frontend.",
            "frontend.default.svc.cluster.local.",
            "frontend.cluster.local.",
        ] {
            let got = wait_answer(&client.netns, name, &[web.ip], Duration::from_secs(15));
            assert_eq!(
                got,
                Some(vec![web.ip]),
                "{dp}: {name} from a pod (the CRI hostname)\n{}",
                c.log()
            );
        }
        // The asking pod resolves its own CRI hostname too.
        assert_eq!(
            resolve(&client.netns, DEFAULT_LISTEN_IP, "client."),
            Some(vec![client.ip]),
            "{dp}: the asking pod's own hostname"
        );
        c.stop(&web.id);
        c.remove(&web.id);
        let got = wait_answer(&client.netns, "frontend.", &[], Duration::from_secs(15));
        assert_eq!(got, Some(vec![]), "{dp}: the name goes with the pod");
        c.stop(&client.id);
        c.remove(&client.id);
        drop(agent);
        drop(c);
        assert_census_empty(&w, dp);
    }
}
