//! A container in a pod: Debian's static busybox `httpd` started with CreateContainer and
//! StartContainer in a sandbox with a hostPort, reached from the wan through that hostPort
//! (the page is the container's, and its CGI sees the wan client's own address: DNAT, no
//! SNAT) and from another pod directly; both datapaths; nothing left afterwards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smarter_testbed::containerd::image::WEB_MARKER;
use smarter_testbed::{NODE_UPLINK_IP, WAN_ROUTER_IP};

use crate::*;

/// `GET path` over HTTP/1.0 from the namespace `from` to `to`; the body.
fn http_get(from: &Path, to: SocketAddr, path: &str) -> Result<String, String> {
    let reply = tcp_exchange(from, to, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(format!("not a 200 answer: {reply:?}")),
    }
}

/// The client address busybox `httpd` hands its CGI (`REMOTE_ADDR`: it listens dual-stack,
/// so IPv4 clients appear as `[::ffff:a.b.c.d]`), as IPv4 text.
fn remote_addr(cgi: &str) -> String {
    let a = cgi.trim().trim_start_matches('[').trim_end_matches(']');
    a.strip_prefix("::ffff:").unwrap_or(a).to_owned()
}

#[test]
fn container_reached_from_the_wan_through_its_host_port() {
    let Some(w) = setup("containerd_container_hostport") else {
        return;
    };
    for dp in datapaths(&w) {
        let c = containerd(&w, &conflist(&w, dp));
        let config = c.config("web", "web", &[(8080, 80)]);
        let web = c.run(config.clone());
        let client = c.run(c.config("client", "client", &[]));
        let via_host_port = SocketAddr::from((NODE_UPLINK_IP, 8080));
        // Nothing listens in the sandbox yet: the hostPort leads nowhere.
        assert!(
            http_get(w.wan().path(), via_host_port, "/index.html").is_err(),
            "{dp}: an answer before the container started"
        );
        let ctr = c
            .start_busybox(
                &web.id,
                "httpd",
                config,
                &["httpd", "-f", "-p", "80", "-h", "/www"],
            )
            .unwrap_or_else(|e| panic!("{dp}: {e}"));
        // A readiness wait (the container's start), not a measurement.
        let deadline = Instant::now() + Duration::from_secs(20);
        let page = loop {
            match http_get(w.wan().path(), via_host_port, "/index.html") {
                Ok(page) => break page,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{dp}: the container never answered through its hostPort: {e}\n{}",
                    c.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(page.trim(), WEB_MARKER, "{dp}: the container's page");
        let peer = http_get(w.wan().path(), via_host_port, "/cgi-bin/peer")
            .unwrap_or_else(|e| panic!("{dp}: CGI through the hostPort: {e}"));
        assert_eq!(
            remote_addr(&peer),
            WAN_ROUTER_IP.to_string(),
            "{dp}: the container sees the wan client's address"
        );
        let peer = http_get(
            &client.netns,
            SocketAddr::from((web.ip, 80)),
            "/cgi-bin/peer",
        )
        .unwrap_or_else(|e| panic!("{dp}: client → web:80: {e}"));
        assert_eq!(remote_addr(&peer), client.ip.to_string(), "{dp}: pod → pod");
        c.rt.block_on(c.cri.stop_container(&ctr, 2))
            .unwrap_or_else(|e| panic!("{dp}: StopContainer: {e}"));
        c.rt.block_on(c.cri.remove_container(&ctr))
            .unwrap_or_else(|e| panic!("{dp}: RemoveContainer: {e}"));
        for id in c.sandboxes() {
            c.stop(&id);
            c.remove(&id);
        }
        assert_census_empty(&w, dp);
        assert!(
            http_get(w.wan().path(), via_host_port, "/index.html").is_err(),
            "{dp}: the hostPort still answers after the pod is gone"
        );
    }
}
