//! Every conflist example of the README through containerd: ADD (RunPodSandbox with a
//! hostPort), traffic (gateway, NAT to the wan, the hostPort from the wan when the example
//! declares the capability), DEL (Stop/Remove) and an empty census. The examples are read
//! from the README's code blocks, so the test follows the docs.

use std::net::SocketAddr;

use smarter_testbed::NODE_UPLINK_IP;

use crate::*;

#[test]
fn readme_conflists_through_containerd() {
    let Some(w) = setup("containerd_readme_conflists") else {
        return;
    };
    for (i, example) in readme_conflists().iter().enumerate() {
        let list = with_world_dirs(&w, example);
        let c = containerd(&w, &list);
        let ports = example["plugins"][0]["capabilities"]["portMappings"] == true;
        let web = c
            .try_run(c.config("web", "web", &[(8080, 80)]))
            .unwrap_or_else(|e| panic!("example {i} ({example}): {e}"));
        assert!(in_pod_subnet(web.ip), "example {i}: {}", web.ip);
        assert!(ping_from(&web.netns, GATEWAY), "example {i}: gateway");
        assert_eq!(
            wan_source(&w, &web.netns),
            NODE_UPLINK_IP,
            "example {i}: NAT"
        );
        if ports {
            let _srv = PeerServer::start(&web.netns, 80);
            let seen = peer_seen(w.wan().path(), SocketAddr::from((NODE_UPLINK_IP, 8080)))
                .unwrap_or_else(|e| panic!("example {i}: hostPort from the wan: {e}"));
            assert!(seen.starts_with("198.51.100.1:"), "example {i}: {seen}");
        }
        c.stop(&web.id);
        c.remove(&web.id);
        assert_census_empty(&w, &format!("example {i}"));
    }
}
